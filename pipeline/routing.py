"""Group decoded log events by owner -> customer and cut them into sub-tasks (pure).

A sub-task's payload must fit the asynchronous invoke payload limit, so the planner measures
the exact bytes of the JSON the invoker will send (`encode_payload`) while it fills each chunk.
A record's events usually all fit the chunk being filled: they are then sized in one go, and one
by one only where a chunk boundary falls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core

from pipeline.models import LogEvent, LogsMessage, StreamEvents, SubTask, SubTaskPayload

__all__ = [
    "BatchPlan",
    "DecodedRecord",
    "OversizedEvent",
    "compute_batch_id",
    "encode_payload",
    "plan_batch",
    "subtask_id_for",
]


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """A Kinesis record that decoded into a data message."""

    sequence_number: str
    message: LogsMessage


@dataclass(frozen=True, slots=True)
class OversizedEvent:
    """A single log event too large to travel in any sub-task payload."""

    customer_id: str
    owner: str
    log_group: str
    log_stream: str
    event_id: str
    size: int
    sequence_number: str


@dataclass(frozen=True, slots=True)
class BatchPlan:
    batch_id: str
    subtasks: list[SubTask]
    events: int
    unclaimed_events: int
    unclaimed_owners: frozenset[str]
    oversized: list[OversizedEvent] = field(default_factory=list)

    @property
    def claimed_events(self) -> int:
        return self.events - self.unclaimed_events


def compute_batch_id(record_event_ids: Iterable[str]) -> str:
    """A batch id that is the same for the same set of Kinesis records, in any order."""
    digest = hashlib.sha256("\n".join(sorted(record_event_ids)).encode()).hexdigest()
    return f"b-{digest[:32]}"


def subtask_id_for(customer_id: str, chunk: int) -> str:
    """Sub-task ids are deterministic within a batch: customer and chunk number."""
    return f"{customer_id}#{chunk:04d}"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def encode_payload(payload: SubTaskPayload) -> bytes:
    """The exact bytes sent to the parser; the planner sizes chunks with the same encoder.

    pydantic's serializer writes what `json.dumps(..., ensure_ascii=False, separators=(",", ":"))`
    writes (a unit test holds it to that), several times faster.
    """
    return pydantic_core.to_json(payload)


def _event_size(event: LogEvent) -> int:
    return len(pydantic_core.to_json(event))


def _events_size(events: Sequence[LogEvent]) -> int:
    """Bytes of `events` in a payload's event list: their sizes plus the commas between them."""
    return len(pydantic_core.to_json(events)) - 2


@dataclass(slots=True)
class _ChunkBuilder:
    """Accumulates streams for one sub-task while tracking its encoded size exactly."""

    batch_id: str
    customer_id: str
    chunk: int
    size: int = 0
    streams: list[tuple[tuple[str, str, str], list[LogEvent]]] = field(default_factory=list)
    sequence_numbers: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.size = len(encode_payload(self._payload([])))

    def _payload(self, streams: list[StreamEvents]) -> SubTaskPayload:
        return SubTaskPayload(
            batch_id=self.batch_id,
            subtask_id=subtask_id_for(self.customer_id, self.chunk),
            customer_id=self.customer_id,
            streams=streams,
        )

    @staticmethod
    def stream_overhead(key: tuple[str, str, str]) -> int:
        owner, log_group, log_stream = key
        return len(_dumps({"owner": owner, "log_group": log_group, "log_stream": log_stream, "events": []}))

    def cost(self, key: tuple[str, str, str], event_size: int) -> int:
        """Bytes this event adds to the encoded payload (with the commas and stream header)."""
        if self.streams and self.streams[-1][0] == key:
            return event_size + 1
        separator = 1 if self.streams else 0
        return separator + self.stream_overhead(key) + event_size

    def add(self, key: tuple[str, str, str], event: LogEvent, cost: int, sequence_number: str) -> None:
        if not self.streams or self.streams[-1][0] != key:
            self.streams.append((key, []))
        self.streams[-1][1].append(event)
        self.sequence_numbers.add(sequence_number)
        self.size += cost

    def add_all(self, key: tuple[str, str, str], events: Sequence[LogEvent], cost: int, sequence_number: str) -> None:
        """Add a whole record's events; `cost` is `self.cost(key, <their joint size>)`."""
        if not self.streams or self.streams[-1][0] != key:
            self.streams.append((key, []))
        self.streams[-1][1].extend(events)
        self.sequence_numbers.add(sequence_number)
        self.size += cost

    def build(self) -> SubTask:
        streams = [
            StreamEvents(owner=owner, log_group=group, log_stream=stream, events=events)
            for (owner, group, stream), events in self.streams
        ]
        return SubTask(payload=self._payload(streams), sequence_numbers=frozenset(self.sequence_numbers))


def plan_batch(
    batch_id: str,
    records: Sequence[DecodedRecord],
    customers_by_owner: Mapping[str, str],
    *,
    max_payload_bytes: int,
) -> BatchPlan:
    """Group the events of `records` per customer and cut each group into payloads under the limit.

    Events of owners no customer claims are counted, never planned. Event order within a stream
    is kept; customers are planned in id order so the same input always gives the same plan.
    """
    per_customer: dict[str, list[tuple[tuple[str, str, str], Sequence[LogEvent], str]]] = {}
    events = 0
    unclaimed_events = 0
    unclaimed_owners: set[str] = set()
    for record in records:
        message = record.message
        if message.is_control:
            continue
        events += len(message.log_events)
        customer_id = customers_by_owner.get(message.owner)
        if customer_id is None:
            unclaimed_events += len(message.log_events)
            if message.log_events:
                unclaimed_owners.add(message.owner)
            continue
        key = (message.owner, message.log_group, message.log_stream)
        bucket = per_customer.setdefault(customer_id, [])
        if message.log_events:
            bucket.append((key, message.log_events, record.sequence_number))

    subtasks: list[SubTask] = []
    oversized: list[OversizedEvent] = []
    for customer_id in sorted(per_customer):
        builder = _ChunkBuilder(batch_id, customer_id, chunk=0)
        empty_size = builder.size
        for key, record_events, sequence_number in per_customer[customer_id]:
            whole = builder.cost(key, _events_size(record_events))
            if builder.size + whole <= max_payload_bytes:
                builder.add_all(key, record_events, whole, sequence_number)
                continue
            for event in record_events:
                builder = _place_event(
                    builder, key, event, sequence_number, empty_size, max_payload_bytes, subtasks, oversized
                )
        if builder.streams:
            subtasks.append(builder.build())
    return BatchPlan(
        batch_id=batch_id,
        subtasks=subtasks,
        events=events,
        unclaimed_events=unclaimed_events,
        unclaimed_owners=frozenset(unclaimed_owners),
        oversized=oversized,
    )


def _place_event(
    builder: _ChunkBuilder,
    key: tuple[str, str, str],
    event: LogEvent,
    sequence_number: str,
    empty_size: int,
    max_payload_bytes: int,
    subtasks: list[SubTask],
    oversized: list[OversizedEvent],
) -> _ChunkBuilder:
    """Add one event where a chunk boundary may fall; returns the builder now being filled."""
    event_size = _event_size(event)
    if empty_size + builder.stream_overhead(key) + event_size > max_payload_bytes:
        # Fits no payload even alone; set aside without closing the chunk being filled.
        owner, log_group, log_stream = key
        oversized.append(
            OversizedEvent(builder.customer_id, owner, log_group, log_stream, event.id, event_size, sequence_number)
        )
        return builder
    cost = builder.cost(key, event_size)
    if builder.size + cost > max_payload_bytes:
        subtasks.append(builder.build())
        builder = _ChunkBuilder(builder.batch_id, builder.customer_id, chunk=builder.chunk + 1)
        cost = builder.cost(key, event_size)
    builder.add(key, event, cost, sequence_number)
    return builder
