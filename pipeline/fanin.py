"""The batch / sub-task state machine of the fan-out and fan-in (pure rules over a `TrackingStore`).

    batch:    open --(every sub-task finished or abandoned, consolidator wins)--> complete
    sub-task: pending --(parser done)--> finished
              pending --(the sweeper cannot re-drive it)--> abandoned

`finished_tasks` only moves inside the same transaction as a sub-task's own pending -> done
change, so it can never overcount, and `claim_consolidation` lets exactly one caller trigger the
consolidator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.faults import NO_FAULTS, FaultPoints
from pipeline.models import (
    BatchRecord,
    BatchStatus,
    BatchSummary,
    SubTaskRecord,
    SubTaskStatus,
)
from pipeline.ports import MetricsSink, TrackingStore
from pipeline.routing import BatchPlan, PlannedSubTask

__all__ = [
    "BatchCounts",
    "StartedBatch",
    "batch_latency_ms",
    "consolidate",
    "finish_subtask",
    "pending_record",
    "record_completion",
    "start_batch",
    "summarise",
]

_DONE = (SubTaskStatus.FINISHED, SubTaskStatus.ABANDONED)


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """What the fan-out knows about a Kinesis batch beyond its plan."""

    records: int
    rejected_records: int
    control_records: int
    shard_id: str = ""
    first_sequence: str = ""
    last_sequence: str = ""


@dataclass(frozen=True, slots=True)
class StartedBatch:
    created: bool
    to_invoke: list[PlannedSubTask]
    unplanned_subtasks: list[str]
    """Stored sub-tasks the recomputed plan no longer has (the owner mapping changed between tries)."""


def pending_record(subtask: PlannedSubTask) -> SubTaskRecord:
    return SubTaskRecord(
        batch_id=subtask.batch_id,
        subtask_id=subtask.subtask_id,
        customer_id=subtask.customer_id,
        status=SubTaskStatus.PENDING,
        events=subtask.event_count,
    )


def start_batch(
    store: TrackingStore, plan: BatchPlan, counts: BatchCounts, *, now_ms: int, expires_at: int
) -> StartedBatch:
    """Record a new batch and its pending sub-tasks, or resume the one a retried Kinesis batch left.

    The batch item is written first and conditionally: whoever creates it owns writing the
    sub-tasks. A retry finds it, writes only the sub-tasks still missing (a crash may have hit
    between the two writes) and returns the ones that are still pending, so finished work is
    never repeated and nothing is planned twice.
    """
    batch = BatchRecord(
        batch_id=plan.batch_id,
        status=BatchStatus.OPEN,
        total_tasks=len(plan.subtasks),
        finished_tasks=0,
        created_at=now_ms,
        records=counts.records,
        events=plan.events,
        rejected_records=counts.rejected_records,
        control_records=counts.control_records,
        unclaimed_events=plan.unclaimed_events,
        shard_id=counts.shard_id,
        first_sequence=counts.first_sequence,
        last_sequence=counts.last_sequence,
    )
    if store.create_batch(batch, expires_at):
        store.put_subtasks([pending_record(subtask) for subtask in plan.subtasks], expires_at)
        return StartedBatch(created=True, to_invoke=list(plan.subtasks), unplanned_subtasks=[])

    stored = {record.subtask_id: record for record in store.list_subtasks(plan.batch_id)}
    missing = [subtask for subtask in plan.subtasks if subtask.subtask_id not in stored]
    if missing:
        store.put_subtasks([pending_record(subtask) for subtask in missing], expires_at)
    to_invoke = [
        subtask
        for subtask in plan.subtasks
        if subtask.subtask_id not in stored or stored[subtask.subtask_id].status is SubTaskStatus.PENDING
    ]
    planned = {subtask.subtask_id for subtask in plan.subtasks}
    return StartedBatch(created=False, to_invoke=to_invoke, unplanned_subtasks=sorted(set(stored) - planned))


def finish_subtask(
    store: TrackingStore,
    record: SubTaskRecord,
    status: SubTaskStatus,
    *,
    now_ms: int,
    claimant: str,
    faults: FaultPoints = NO_FAULTS,
) -> tuple[bool, bool]:
    """Move a pending sub-task to a done state and count it on its batch.

    Returns `(finished, consolidate)`: whether this call made the change, and whether this caller
    completed the batch and must trigger the consolidator (true for exactly one caller).
    """
    if status not in _DONE:
        raise ValueError(f"a sub-task can only finish as {[s.value for s in _DONE]}, not {status.value}")
    key = f"{record.batch_id}/{record.subtask_id}"
    faults.reached("parser.before_finish", key)
    if not store.finish_subtask(record, status, now_ms):
        return False, False
    faults.reached("parser.after_finish", key)
    return True, store.claim_consolidation(record.batch_id, claimant)


def summarise(batch: BatchRecord, subtasks: Sequence[SubTaskRecord], *, now_ms: int) -> BatchSummary:
    """The fan-in: fold the sub-tasks' results into the batch summary."""
    matches_by_rule: Counter[str] = Counter()
    timeouts_by_rule: Counter[str] = Counter()
    for subtask in subtasks:
        for rule_id, stats in subtask.rule_stats.items():
            key = f"{subtask.customer_id}/{rule_id}"
            if stats.matches:
                matches_by_rule[key] += stats.matches
            if stats.timeouts:
                timeouts_by_rule[key] += stats.timeouts
    finished = sum(1 for subtask in subtasks if subtask.status in _DONE)
    return BatchSummary(
        batch_id=batch.batch_id,
        status=BatchStatus.COMPLETE,
        total_tasks=batch.total_tasks,
        finished_tasks=finished,
        abandoned_tasks=sum(1 for subtask in subtasks if subtask.status is SubTaskStatus.ABANDONED),
        records=batch.records,
        events=batch.events,
        matches=sum(subtask.matches for subtask in subtasks),
        notified_matches=sum(subtask.notified for subtask in subtasks),
        rejected_records=batch.rejected_records,
        control_records=batch.control_records,
        unclaimed_events=batch.unclaimed_events,
        matches_by_rule=dict(sorted(matches_by_rule.items())),
        rule_timeouts=dict(sorted(timeouts_by_rule.items())),
        created_at=batch.created_at,
        finished_at=now_ms,
    )


def consolidate(
    store: TrackingStore, batch_id: str, *, now_ms: int, faults: FaultPoints = NO_FAULTS
) -> BatchSummary | None:
    """Complete a batch exactly once; a second call (or a premature one) changes nothing.

    Returns the summary this call wrote, or None when there was nothing to do.
    """
    batch = store.get_batch(batch_id)
    if batch is None or batch.status is BatchStatus.COMPLETE:
        return None
    if batch.finished_tasks < batch.total_tasks:
        return None
    summary = summarise(batch, store.list_subtasks(batch_id), now_ms=now_ms)
    faults.reached("consolidator.before_complete", batch_id)
    if not store.complete_batch(summary):
        return None
    faults.reached("consolidator.after_complete", batch_id)
    return summary


def batch_latency_ms(summary: BatchSummary) -> int:
    """How long a batch took end to end: from the fan-out recording it to its completion."""
    return max(0, summary.finished_at - summary.created_at)


def record_completion(metrics: MetricsSink, summary: BatchSummary) -> None:
    """The metrics of a batch this call completed: one more batch, and how long it took."""
    metrics.count("BatchesCompleted")
    metrics.timing("BatchLatency", batch_latency_ms(summary))
