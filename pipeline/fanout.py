"""The fan-out's work for one Kinesis batch: decode -> set poison aside -> route -> record -> invoke.

Reads as the pipeline it is. Every step is a pure module; this one only sequences them over the
ports and decides which Kinesis records must come back (reported as batch item failures).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline import fanin
from pipeline.decoding import decode_record_data
from pipeline.errors import InvokeError, LogfanError, PoisonRecordError, TimeBudgetError
from pipeline.faults import NO_FAULTS, FaultPoints
from pipeline.invoking import invoke_subtasks, trigger_consolidator
from pipeline.models import PoisonRecord
from pipeline.ports import Clock, FunctionInvoker, MetricsSink, RejectSink, TrackingStore
from pipeline.routing import BatchPlan, DecodedRecord, compute_batch_id, plan_batch
from pipeline.rules_cache import OwnerCache

__all__ = ["FanOutDeps", "FanOutResult", "KinesisRecordRef", "decode_batch", "process_batch"]

_log = logging.getLogger("logfan.fanout")

DAY_S = 86_400
_DATA_PREFIX_CHARS = 120


@dataclass(frozen=True, slots=True)
class KinesisRecordRef:
    """The parts of a Lambda Kinesis record the fan-out needs."""

    event_id: str
    shard_id: str
    sequence_number: str
    data: str


@dataclass(frozen=True, slots=True)
class FanOutDeps:
    tracking: TrackingStore
    owners: OwnerCache
    invoker: FunctionInvoker
    rejects: RejectSink
    metrics: MetricsSink
    clock: Clock
    parser_function: str
    consolidator_function: str
    payload_budget_bytes: int
    max_decompressed_bytes: int
    invoke_concurrency: int
    invoke_max_attempts: int
    invoke_backoff_s: float
    tracking_ttl_days: int
    time_reserve_ms: int = 10_000
    faults: FaultPoints = NO_FAULTS


@dataclass(slots=True)
class FanOutResult:
    batch_id: str
    records: int = 0
    control_records: int = 0
    poison_records: int = 0
    events: int = 0
    unclaimed_events: int = 0
    subtasks: int = 0
    invoked: int = 0
    resumed: bool = False
    failed_sequence_numbers: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    decoded: list[DecodedRecord]
    poison: list[PoisonRecord]
    control_records: int


def decode_batch(records: Sequence[KinesisRecordRef], batch_id: str, *, max_decompressed_bytes: int) -> DecodedBatch:
    """Decode every record; undecodable ones become poison records, control messages are dropped."""
    decoded: list[DecodedRecord] = []
    poison: list[PoisonRecord] = []
    control = 0
    for record in records:
        try:
            message = decode_record_data(record.data, max_decompressed_bytes=max_decompressed_bytes)
        except PoisonRecordError as exc:
            poison.append(
                PoisonRecord(
                    event_id=record.event_id,
                    sequence_number=record.sequence_number,
                    shard_id=record.shard_id,
                    reason=exc.reason,
                    data_prefix=record.data[:_DATA_PREFIX_CHARS],
                    batch_id=batch_id,
                )
            )
            continue
        if message.is_control:
            control += 1
            continue
        decoded.append(DecodedRecord(sequence_number=record.sequence_number, message=message))
    return DecodedBatch(decoded=decoded, poison=poison, control_records=control)


def _oversized_as_poison(plan: BatchPlan, records: Sequence[KinesisRecordRef], budget: int) -> list[PoisonRecord]:
    by_sequence = {record.sequence_number: record for record in records}
    return [
        PoisonRecord(
            event_id=by_sequence[event.sequence_number].event_id,
            sequence_number=event.sequence_number,
            shard_id=by_sequence[event.sequence_number].shard_id,
            reason=(
                f"log event {event.event_id} of {event.log_group} ({event.log_stream}) is {event.size} bytes, "
                f"over the {budget}-byte invoke payload budget"
            ),
            data_prefix="",
            batch_id=plan.batch_id,
        )
        for event in plan.oversized
    ]


def _counts(records: Sequence[KinesisRecordRef], *, rejected: int, control: int) -> fanin.BatchCounts:
    """Counts plus where the records sit in the stream, when they are one shard's run (as Lambda delivers)."""
    shards = {record.shard_id for record in records}
    if len(shards) != 1:
        return fanin.BatchCounts(records=len(records), rejected_records=rejected, control_records=control)
    sequences = sorted((record.sequence_number for record in records), key=int)
    return fanin.BatchCounts(
        records=len(records),
        rejected_records=rejected,
        control_records=control,
        shard_id=shards.pop(),
        first_sequence=sequences[0],
        last_sequence=sequences[-1],
    )


def _unbounded() -> int:
    return 2**31


def process_batch(
    deps: FanOutDeps, records: Sequence[KinesisRecordRef], remaining_ms: Callable[[], int] = _unbounded
) -> FanOutResult:
    """Fan one Kinesis batch out to per-customer parser invocations.

    Returns the sequence numbers Kinesis must deliver again: records whose sub-task could not be
    invoked, and poison records that could not be set aside. Everything else is done for good.
    Raises `TimeBudgetError` before recording anything when decoding left too little time.
    """
    batch_id = compute_batch_id(record.event_id for record in records)
    result = FanOutResult(batch_id=batch_id, records=len(records))
    decoded = decode_batch(records, batch_id, max_decompressed_bytes=deps.max_decompressed_bytes)
    result.control_records = decoded.control_records

    owners = {record.message.owner for record in decoded.decoded}
    plan = plan_batch(
        batch_id,
        decoded.decoded,
        deps.owners.customers_for_owners(owners) if owners else {},
        max_payload_bytes=deps.payload_budget_bytes,
    )
    left = remaining_ms()
    if left < deps.time_reserve_ms:
        deps.metrics.count("TimeBudgetExceeded")
        raise TimeBudgetError(
            f"{left} ms left after decoding {len(records)} records, under the {deps.time_reserve_ms} ms reserve"
        )
    poison = decoded.poison + _oversized_as_poison(plan, records, deps.payload_budget_bytes)
    result.poison_records = len(poison)
    failed: set[str] = set()
    if poison:
        for item in poison:
            _log.error(
                "poison record set aside",
                extra={"sequence_number": item.sequence_number, "reason": item.reason},
            )
        deps.metrics.count("PoisonRecords", len(poison))
        try:
            deps.rejects.reject(poison)
        except LogfanError as exc:
            # Not set aside yet: Kinesis brings these back (bounded by the mapping's retry limit).
            _log.error("could not set poison records aside", extra={"error": str(exc)})
            failed.update(item.sequence_number for item in poison)
    result.events = plan.events
    result.unclaimed_events = plan.unclaimed_events
    result.subtasks = len(plan.subtasks)
    deps.metrics.count("Records", len(records))
    deps.metrics.count("ControlRecords", decoded.control_records)
    deps.metrics.count("Events", plan.events)
    if plan.unclaimed_events:
        deps.metrics.count("UnclaimedEvents", plan.unclaimed_events)
        _log.warning(
            "events of owners no customer claims were dropped",
            extra={"owners": sorted(plan.unclaimed_owners), "events": plan.unclaimed_events},
        )

    now_ms = deps.clock.now_ms()
    started = fanin.start_batch(
        deps.tracking,
        plan,
        _counts(records, rejected=len(poison), control=decoded.control_records),
        now_ms=now_ms,
        expires_at=now_ms // 1000 + deps.tracking_ttl_days * DAY_S,
    )
    result.resumed = not started.created
    deps.faults.reached("fan_out.after_start_batch", batch_id)
    if started.unplanned_subtasks:
        deps.metrics.count("UnplannedSubTasks", len(started.unplanned_subtasks))
        _log.error(
            "stored sub-tasks missing from the recomputed plan",
            extra={"subtasks": started.unplanned_subtasks},
        )

    failures = invoke_subtasks(
        deps.invoker,
        deps.parser_function,
        started.to_invoke,
        concurrency=deps.invoke_concurrency,
        attempts=deps.invoke_max_attempts,
        backoff_s=deps.invoke_backoff_s,
    )
    deps.faults.reached("fan_out.after_invoke", batch_id)
    result.invoked = len(started.to_invoke) - len(failures)
    deps.metrics.count("SubTasksInvoked", result.invoked)
    for subtask, error in failures:
        # The sub-task stays pending, never closed here: an earlier delivery of this batch may have
        # invoked it already (or a timed-out invoke may have gone through), and that run may hold
        # claimed matches it has yet to notify. The sweeper re-drives it; Kinesis redelivers the
        # records meanwhile, and match keys keep the two from notifying anything twice.
        deps.metrics.count("InvokeFailures")
        _log.error(
            "parser invoke failed; its records go back to Kinesis and the sweeper re-drives the sub-task",
            extra={"subtask_id": subtask.subtask_id, "error": str(error)},
        )
        failed.update(subtask.sequence_numbers)
    consolidate = False
    if not plan.subtasks:
        # Nothing to parse (all poison, control or unclaimed): the batch is complete already.
        consolidate = deps.tracking.claim_consolidation(batch_id, "fan-out")
    if consolidate:
        try:
            trigger_consolidator(
                deps.invoker,
                deps.consolidator_function,
                batch_id,
                attempts=deps.invoke_max_attempts,
                backoff_s=deps.invoke_backoff_s,
            )
        except InvokeError as exc:
            deps.metrics.count("InvokeFailures")
            _log.error("consolidator invoke failed; the sweeper re-triggers it", extra={"error": str(exc)})
    result.failed_sequence_numbers = sorted(failed, key=int)
    return result
