"""The sweeper: nothing may leave a batch open forever (pure over ports).

A lost async invoke, a parser that failed every retry, or a consolidator trigger that never
arrived all look the same from outside: a batch still open past its deadline. The sweeper finds
those (a sparse index of open batches), and for each one
- re-triggers the consolidator when every sub-task is done (the consolidator is idempotent);
- re-drives each pending sub-task nobody holds a lease on: it re-reads the batch's records from
  the stream (the batch item keeps their shard and sequence range), re-plans them (planning is
  deterministic, so the same sub-task ids come out) and invokes the parser again;
- abandons a sub-task it cannot re-drive (records aged out of the stream, or re-drives
  exhausted), so the batch completes and says so, with an error log and metric to alarm on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pipeline import fanin
from pipeline.delivery import DispatchDeps
from pipeline.errors import InvokeError, StoreError
from pipeline.fanout import KinesisRecordRef, decode_batch
from pipeline.invoking import invoke_with_retries, trigger_consolidator
from pipeline.models import BatchRecord, SubTaskRecord, SubTaskStatus
from pipeline.ports import Clock, FunctionInvoker, MetricsSink, TrackingStore
from pipeline.routing import compute_batch_id, plan_batch
from pipeline.rules_cache import OwnerCache

__all__ = ["StreamReader", "SweepResult", "SweepStore", "SweeperDeps", "sweep"]

_log = logging.getLogger("logfan.sweeping")


class SweepStore(TrackingStore, Protocol):
    def open_batches(self, created_before_ms: int) -> Iterator[BatchRecord]: ...

    def count_redrive(self, batch_id: str, subtask_id: str) -> int | None: ...


class StreamReader(Protocol):
    def read_range(self, shard_id: str, first_sequence: str, last_sequence: str) -> list[KinesisRecordRef]: ...


@dataclass(frozen=True, slots=True)
class SweeperDeps:
    dispatch: DispatchDeps
    """The outbox the sweeper also dispatches on each run (digests, held and retried notifications)."""
    tracking: SweepStore
    stream: StreamReader
    owners: OwnerCache
    invoker: FunctionInvoker
    metrics: MetricsSink
    clock: Clock
    parser_function: str
    consolidator_function: str
    payload_budget_bytes: int
    max_decompressed_bytes: int
    stuck_after_ms: int
    max_redrives: int
    invoke_max_attempts: int
    invoke_backoff_s: float
    tracking_ttl_days: int


@dataclass(slots=True)
class SweepResult:
    stuck_batches: int = 0
    consolidations: int = 0
    redriven: int = 0
    abandoned: int = 0
    errors: list[str] = field(default_factory=list)


def _abandon(deps: SweeperDeps, subtask: SubTaskRecord, reason: str, result: SweepResult) -> None:
    _log.error(
        "abandoning a sub-task the sweeper cannot re-drive", extra={"subtask_id": subtask.subtask_id, "reason": reason}
    )
    deps.metrics.count("AbandonedSubTasks")
    result.abandoned += 1
    _, consolidate = fanin.finish_subtask(
        deps.tracking, subtask, SubTaskStatus.ABANDONED, now_ms=deps.clock.now_ms(), claimant="sweeper"
    )
    if consolidate:
        _consolidate(deps, subtask.batch_id, result)


def _consolidate(deps: SweeperDeps, batch_id: str, result: SweepResult) -> None:
    trigger_consolidator(
        deps.invoker,
        deps.consolidator_function,
        batch_id,
        attempts=deps.invoke_max_attempts,
        backoff_s=deps.invoke_backoff_s,
    )
    result.consolidations += 1


def _redrive(
    deps: SweeperDeps,
    batch: BatchRecord,
    stored: list[SubTaskRecord],
    pending: list[SubTaskRecord],
    result: SweepResult,
) -> None:
    records = (
        deps.stream.read_range(batch.shard_id, batch.first_sequence, batch.last_sequence) if batch.shard_id else []
    )
    if not records or compute_batch_id(r.event_id for r in records) != batch.batch_id:
        for subtask in pending:
            _abandon(deps, subtask, "the batch's records are no longer in the stream", result)
        return
    decoded = decode_batch(records, batch.batch_id, max_decompressed_bytes=deps.max_decompressed_bytes)
    owners = {record.message.owner for record in decoded.decoded}
    plan = plan_batch(
        batch.batch_id,
        decoded.decoded,
        deps.owners.customers_for_owners(owners) if owners else {},
        max_payload_bytes=deps.payload_budget_bytes,
    )
    planned = {subtask.subtask_id: subtask for subtask in plan.subtasks}
    known = {subtask.subtask_id for subtask in stored}
    never_written = [fanin.pending_record(s) for s in plan.subtasks if s.subtask_id not in known]
    if never_written:
        # The fan-out died between writing the batch and its sub-tasks, and Kinesis moved on.
        # Written late, they expire with the batch's other tracking items.
        deps.tracking.put_subtasks(never_written, expires_at=batch.created_at // 1000 + deps.tracking_ttl_days * 86_400)
        pending = [*pending, *never_written]
    for subtask in pending:
        planned_subtask = planned.get(subtask.subtask_id)
        if planned_subtask is None:
            _abandon(deps, subtask, "the re-planned batch no longer has this sub-task", result)
            continue
        redrives = deps.tracking.count_redrive(batch.batch_id, subtask.subtask_id)
        if redrives is None:
            continue  # finished meanwhile
        if redrives > deps.max_redrives:
            _abandon(deps, subtask, f"re-driven {deps.max_redrives} times without finishing", result)
            continue
        invoke_with_retries(
            deps.invoker,
            deps.parser_function,
            planned_subtask.encode(),
            attempts=deps.invoke_max_attempts,
            backoff_s=deps.invoke_backoff_s,
        )
        deps.metrics.count("SubTasksRedriven")
        result.redriven += 1


def sweep(deps: SweeperDeps) -> SweepResult:
    """One pass over the batches open longer than `stuck_after_ms`."""
    result = SweepResult()
    now_ms = deps.clock.now_ms()
    for batch in deps.tracking.open_batches(now_ms - deps.stuck_after_ms):
        result.stuck_batches += 1
        try:
            subtasks = deps.tracking.list_subtasks(batch.batch_id)
            complete = len(subtasks) >= batch.total_tasks
            if complete and all(s.status is not SubTaskStatus.PENDING for s in subtasks):
                _consolidate(deps, batch.batch_id, result)
                continue
            pending = [s for s in subtasks if s.status is SubTaskStatus.PENDING and not s.leased_at(now_ms)]
            if pending or not complete:
                _redrive(deps, batch, subtasks, pending, result)
        except (InvokeError, StoreError) as exc:
            # Left for the next pass; one stuck batch must not stop the sweep of the others.
            result.errors.append(f"{batch.batch_id}: {exc}")
            deps.metrics.count("SweepErrors")
    deps.metrics.count("StuckBatches", result.stuck_batches)
    return result
