"""Group decoded log events by owner -> customer and cut them into sub-tasks (pure).

A sub-task's payload must fit the asynchronous invoke payload limit, so the planner counts the
exact bytes of the JSON the invoker will send (`encode_payload`) while it fills each chunk. Events
arrive already encoded (`DecodedMessage.events_json`) and are never turned into objects here: a
record's events usually all fit the chunk being filled and go in as one slice of those bytes; only
the record a chunk boundary falls in is split into its events. A planned sub-task keeps its
payload in pieces and writes the bytes only when it is invoked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import pydantic_core
from pydantic import BaseModel

from pipeline.decoding import DecodedMessage
from pipeline.models import StreamEvents, SubTaskPayload

__all__ = [
    "BatchPlan",
    "DecodedRecord",
    "OversizedEvent",
    "PlannedStream",
    "PlannedSubTask",
    "compute_batch_id",
    "encode_payload",
    "plan_batch",
    "subtask_id_for",
]

StreamKey = tuple[str, str, str]
"""(owner, log group, log stream)"""

_STREAMS_FIELD = b'"streams":[]'
_EVENTS_FIELD = b'"events":[]'
_BETWEEN_EVENTS = b'"},{"id":"'

_json_string = msgspec.json.Encoder().encode
"""A string as JSON, byte for byte as pydantic writes it (`ensure_ascii=False`, the same escapes)."""


class _EventId(msgspec.Struct):
    """Just the id of an encoded event, to name one that fits no payload."""

    id: str


class DecodedRecord(msgspec.Struct, frozen=True, gc=False):
    """A Kinesis record that decoded into a data message (a struct, like `DecodedMessage`: one per record)."""

    sequence_number: str
    message: DecodedMessage


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


class PlannedStream(msgspec.Struct, frozen=True, gc=False):
    """One stream of a planned payload: its JSON up to the events, the encoded events, and the rest.

    A struct, like `DecodedRecord`: a plan makes one per stream of every sub-task.
    """

    head: bytes
    pieces: tuple[memoryview, ...]
    """Encoded events: one each, or a whole record's as a slice of its `events_json`; joined by commas."""
    tail: bytes


@dataclass(frozen=True, slots=True)
class PlannedSubTask:
    """A planned sub-task: whom it is for, the Kinesis records whose events it carries, its payload in pieces."""

    batch_id: str
    subtask_id: str
    customer_id: str
    event_count: int
    sequence_numbers: frozenset[str]
    size: int
    """Exactly `len(self.encode())`."""
    envelope: tuple[bytes, bytes]
    """The payload's JSON with its streams left out: what goes before them and what after."""
    streams: tuple[PlannedStream, ...]

    def encode(self) -> bytes:
        """The bytes sent to the parser: byte for byte `encode_payload` of the payload they hold."""
        before, after = self.envelope
        parts: list[bytes | memoryview] = [before]
        for index, stream in enumerate(self.streams):
            if index:
                parts.append(b",")
            parts.append(stream.head)
            for position, piece in enumerate(stream.pieces):
                if position:
                    parts.append(b",")
                parts.append(piece)
            parts.append(stream.tail)
        parts.append(after)
        return b"".join(parts)

    def payload(self) -> SubTaskPayload:
        """The payload as the parser reads it (parses `encode()`: for tests and diagnosis)."""
        return SubTaskPayload.model_validate_json(self.encode())


@dataclass(frozen=True, slots=True)
class BatchPlan:
    batch_id: str
    subtasks: list[PlannedSubTask]
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


def encode_payload(payload: SubTaskPayload) -> bytes:
    """The exact bytes of a sub-task payload; the planner counts and writes the same bytes.

    pydantic's serializer writes what `json.dumps(..., ensure_ascii=False, separators=(",", ":"))`
    writes (a unit test holds it to that), several times faster.
    """
    return pydantic_core.to_json(payload)


class _Template:
    """A model's JSON, written by the model once, with holes for some of its strings, cut inside one empty list.

    Filling the holes writes each string where the model wrote a marker, as the model would
    (msgspec writes a JSON string byte for byte as pydantic does): a stream's or a sub-task's JSON
    then costs a few string writes instead of a model built and serialised. The tests hold every
    payload to `encode_payload`, which would also catch a model field that came to depend on them.
    """

    def __init__(self, model: BaseModel, markers: Sequence[str], empty_list: bytes) -> None:
        encoded = pydantic_core.to_json(model)
        # The cut is inside `empty_list`, a key and its `[]`: a key, so it cannot occur inside a string.
        cut = encoded.index(empty_list) + len(empty_list) - 1
        holes = sorted((encoded.index(_json_string(marker)), index) for index, marker in enumerate(markers))
        before: list[bytes | int] = []
        after: list[bytes | int] = []
        start = 0
        for at, index in [*holes, (len(encoded), -1)]:
            if start <= cut <= at:
                before.append(encoded[start:cut])
                after.append(encoded[cut:at])
            else:
                (before if at < cut else after).append(encoded[start:at])
            if index >= 0:
                (before if at < cut else after).append(index)
                start = at + len(_json_string(markers[index]))
        self._before = _Side(before)
        self._after = _Side(after)

    def fill(self, values: Sequence[str]) -> tuple[bytes, bytes]:
        """The JSON before and after the cut, `values[i]` written in the i-th marker's place."""
        return self._before.fill(values), self._after.fill(values)


class _Side:
    """Literal bytes and holes (indexes into the values) in order; the bytes alone when there is no hole."""

    def __init__(self, parts: list[bytes | int]) -> None:
        self._parts = parts
        self._constant = b"".join(part for part in parts if isinstance(part, bytes))
        self._has_holes = any(isinstance(part, int) for part in parts)

    def fill(self, values: Sequence[str]) -> bytes:
        if not self._has_holes:
            return self._constant
        return b"".join([part if isinstance(part, bytes) else _json_string(values[part]) for part in self._parts])


class _PayloadParts:
    """The JSON a plan writes around encoded events: each stream's (once per stream) and each sub-task's."""

    def __init__(self) -> None:
        markers = ("\x00owner\x00", "\x00log_group\x00", "\x00log_stream\x00")
        owner, log_group, log_stream = markers
        self._streams = _Template(
            StreamEvents(owner=owner, log_group=log_group, log_stream=log_stream, events=[]), markers, _EVENTS_FIELD
        )
        markers = ("\x00batch_id\x00", "\x00subtask_id\x00", "\x00customer_id\x00")
        batch_id, subtask_id, customer_id = markers
        self._envelopes = _Template(
            SubTaskPayload(batch_id=batch_id, subtask_id=subtask_id, customer_id=customer_id, streams=[]),
            markers,
            _STREAMS_FIELD,
        )
        self._known: dict[StreamKey, tuple[bytes, bytes]] = {}

    def stream(self, key: StreamKey) -> tuple[bytes, bytes]:
        """A stream's JSON before and after its events."""
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = self._streams.fill(key)
        return known

    def envelope(self, batch_id: str, subtask_id: str, customer_id: str) -> tuple[bytes, bytes]:
        """A sub-task payload's JSON before and after its streams."""
        return self._envelopes.fill((batch_id, subtask_id, customer_id))


@dataclass(slots=True)
class _ChunkBuilder:
    """Accumulates streams for one sub-task while tracking its encoded size exactly."""

    batch_id: str
    customer_id: str
    chunk: int
    parts: _PayloadParts
    size: int = 0
    events: int = 0
    envelope: tuple[bytes, bytes] = (b"", b"")
    streams: list[tuple[StreamKey, list[memoryview]]] = field(default_factory=list)
    sequence_numbers: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # The model's template writes the envelope, so every field it has (and any it gains) is in the payload.
        self.envelope = self.parts.envelope(
            self.batch_id, subtask_id_for(self.customer_id, self.chunk), self.customer_id
        )
        self.size = len(self.envelope[0]) + len(self.envelope[1])

    def stream_overhead(self, key: StreamKey) -> int:
        head, tail = self.parts.stream(key)
        return len(head) + len(tail)

    def cost(self, key: StreamKey, events_size: int) -> int:
        """Bytes these encoded events add to the payload (with the commas and stream header)."""
        if self.streams and self.streams[-1][0] == key:
            return events_size + 1
        separator = 1 if self.streams else 0
        return separator + self.stream_overhead(key) + events_size

    def add(self, key: StreamKey, piece: memoryview, count: int, cost: int, sequence_number: str) -> None:
        """Add `count` encoded events (one piece); `cost` is `self.cost(key, len(piece))`."""
        if not self.streams or self.streams[-1][0] != key:
            self.streams.append((key, []))
        self.streams[-1][1].append(piece)
        self.sequence_numbers.add(sequence_number)
        self.events += count
        self.size += cost

    def build(self) -> PlannedSubTask:
        streams = []
        for key, pieces in self.streams:
            head, tail = self.parts.stream(key)
            streams.append(PlannedStream(head=head, pieces=tuple(pieces), tail=tail))
        return PlannedSubTask(
            batch_id=self.batch_id,
            subtask_id=subtask_id_for(self.customer_id, self.chunk),
            customer_id=self.customer_id,
            event_count=self.events,
            sequence_numbers=frozenset(self.sequence_numbers),
            size=self.size,
            envelope=self.envelope,
            streams=tuple(streams),
        )


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
    per_customer: dict[str, list[tuple[StreamKey, DecodedMessage, str]]] = {}
    events = 0
    unclaimed_events = 0
    unclaimed_owners: set[str] = set()
    for record in records:
        message = record.message
        if message.is_control:
            continue
        events += message.event_count
        customer_id = customers_by_owner.get(message.owner)
        if customer_id is None:
            unclaimed_events += message.event_count
            if message.event_count:
                unclaimed_owners.add(message.owner)
            continue
        bucket = per_customer.setdefault(customer_id, [])
        if message.event_count:
            key = (message.owner, message.log_group, message.log_stream)
            bucket.append((key, message, record.sequence_number))

    parts = _PayloadParts()
    subtasks: list[PlannedSubTask] = []
    oversized: list[OversizedEvent] = []
    for customer_id in sorted(per_customer):
        builder = _ChunkBuilder(batch_id, customer_id, chunk=0, parts=parts)
        empty_size = builder.size
        for key, message, sequence_number in per_customer[customer_id]:
            encoded = message.events_json
            whole = builder.cost(key, len(encoded) - 2)
            if builder.size + whole <= max_payload_bytes:
                builder.add(key, encoded[1:-1], message.event_count, whole, sequence_number)
                continue
            for event in _events_of(encoded):
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


def _events_of(events_json: memoryview) -> Iterator[memoryview]:
    """A record's encoded events one by one, as views of a copy of its bytes (only where a chunk boundary falls).

    Every event in `events_json` opens with its string id and closes with its message, and a quote
    inside a string is always escaped, so `"},{"id":"` occurs exactly between two events.
    """
    encoded = events_json.tobytes()
    view = memoryview(encoded)
    start = 1
    while (at := encoded.find(_BETWEEN_EVENTS, start)) >= 0:
        yield view[start : at + 2]
        start = at + 3
    yield view[start:-1]


def _place_event(
    builder: _ChunkBuilder,
    key: StreamKey,
    event: memoryview,
    sequence_number: str,
    empty_size: int,
    max_payload_bytes: int,
    subtasks: list[PlannedSubTask],
    oversized: list[OversizedEvent],
) -> _ChunkBuilder:
    """Add one event where a chunk boundary may fall; returns the builder now being filled."""
    event_size = len(event)
    if empty_size + builder.stream_overhead(key) + event_size > max_payload_bytes:
        # Fits no payload even alone; set aside without closing the chunk being filled.
        owner, log_group, log_stream = key
        event_id = msgspec.json.decode(event, type=_EventId).id
        oversized.append(
            OversizedEvent(builder.customer_id, owner, log_group, log_stream, event_id, event_size, sequence_number)
        )
        return builder
    cost = builder.cost(key, event_size)
    if builder.size + cost > max_payload_bytes:
        subtasks.append(builder.build())
        builder = _ChunkBuilder(builder.batch_id, builder.customer_id, chunk=builder.chunk + 1, parts=builder.parts)
        cost = builder.cost(key, event_size)
    builder.add(key, event, 1, cost, sequence_number)
    return builder
