"""The batch / sub-task state machine over an in-memory `TrackingStore` with the port's semantics."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline import fanin
from pipeline.errors import BatchConflictError
from pipeline.fanin import BatchCounts, consolidate, finish_subtask, start_batch, summarise
from pipeline.models import BatchRecord, BatchStatus, BatchSummary, RuleStats, SubTaskRecord, SubTaskStatus
from pipeline.ports import TrackingStore
from pipeline.routing import BatchPlan, plan_batch
from tests import factories as f

NOW = 1_764_380_000_000
EXPIRES = 1_764_466_400
COUNTS = BatchCounts(records=4, rejected_records=1, control_records=1)
OWNERS = {"111122223333": "acme", "777788889999": "globex", "123456789012": "initech"}


class InMemoryTrackingStore:
    """The `TrackingStore` port in a dict, with the conditional writes the DynamoDB store makes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches: dict[str, BatchRecord] = {}
        self.subtasks: dict[tuple[str, str], SubTaskRecord] = {}
        self.claimed_by: dict[str, str] = {}
        self.subtask_writes = 0

    def create_batch(self, batch: BatchRecord, expires_at: int) -> bool:
        with self._lock:
            if batch.batch_id in self.batches:
                return False
            self.batches[batch.batch_id] = batch
            return True

    def put_subtasks(self, subtasks: Sequence[SubTaskRecord], expires_at: int) -> None:
        with self._lock:
            for record in subtasks:
                key = (record.batch_id, record.subtask_id)
                assert key not in self.subtasks, f"sub-task {key} written twice"
                self.subtasks[key] = record
                self.subtask_writes += 1

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        return self.batches.get(batch_id)

    def get_subtask(self, batch_id: str, subtask_id: str) -> SubTaskRecord | None:
        return self.subtasks.get((batch_id, subtask_id))

    def list_subtasks(self, batch_id: str) -> list[SubTaskRecord]:
        return [record for (batch, _), record in sorted(self.subtasks.items()) if batch == batch_id]

    def finish_subtask(self, record: SubTaskRecord, status: SubTaskStatus, finished_at: int) -> bool:
        with self._lock:
            key = (record.batch_id, record.subtask_id)
            stored = self.subtasks.get(key)
            if stored is None or stored.status is not SubTaskStatus.PENDING:
                return False
            batch = self.batches[record.batch_id]
            if batch.status is not BatchStatus.OPEN:
                raise BatchConflictError(f"batch {record.batch_id} is not open")
            self.subtasks[key] = stored.model_copy(
                update={
                    "status": status,
                    "matches": record.matches,
                    "notified": record.notified,
                    "rule_stats": record.rule_stats,
                }
            )
            self.batches[record.batch_id] = batch.model_copy(update={"finished_tasks": batch.finished_tasks + 1})
            return True

    def claim_consolidation(self, batch_id: str, claimant: str) -> bool:
        with self._lock:
            batch = self.batches[batch_id]
            ready = batch.finished_tasks == batch.total_tasks and batch.status is BatchStatus.OPEN
            if not ready or batch_id in self.claimed_by:
                return False
            self.claimed_by[batch_id] = claimant
            return True

    def complete_batch(self, summary: BatchSummary) -> bool:
        with self._lock:
            batch = self.batches[summary.batch_id]
            if batch.status is not BatchStatus.OPEN:
                return False
            self.batches[summary.batch_id] = batch.model_copy(
                update={"status": BatchStatus.COMPLETE, "finished_at": summary.finished_at, "summary": summary}
            )
            return True

    def iter_batches(self) -> Iterator[BatchRecord]:
        return iter(list(self.batches.values()))


@pytest.fixture
def store() -> InMemoryTrackingStore:
    return InMemoryTrackingStore()


def _plan(*owners: str, batch_id: str = "b-1") -> BatchPlan:
    records = [f.decoded_record(f.logs_message(owner, ["ERROR a", "ok"])) for owner in owners]
    return plan_batch(batch_id, records, OWNERS, max_payload_bytes=256 * 1024)


def _start(store: TrackingStore, plan: BatchPlan) -> fanin.StartedBatch:
    return start_batch(store, plan, COUNTS, now_ms=NOW, expires_at=EXPIRES)


def _finish(
    store: TrackingStore,
    batch_id: str,
    subtask_id: str,
    status: SubTaskStatus = SubTaskStatus.FINISHED,
    **results: object,
) -> tuple[bool, bool]:
    record = store.get_subtask(batch_id, subtask_id)
    assert record is not None
    return finish_subtask(
        store, record.model_copy(update=results), status, now_ms=NOW + 1, claimant=f"parser:{subtask_id}"
    )


def _pending(batch_id: str, subtask_id: str, customer_id: str) -> SubTaskRecord:
    return SubTaskRecord(
        batch_id=batch_id, subtask_id=subtask_id, customer_id=customer_id, status=SubTaskStatus.PENDING, events=2
    )


def _ids(plan_or_list: BatchPlan | fanin.StartedBatch) -> list[str]:
    subtasks = plan_or_list.subtasks if isinstance(plan_or_list, BatchPlan) else plan_or_list.to_invoke
    return [s.subtask_id for s in subtasks]


def test_the_store_implements_the_port(store: InMemoryTrackingStore) -> None:
    port: TrackingStore = store

    assert port.get_batch("nope") is None


# -- start -----------------------------------------------------------------------------------


def test_start_batch_records_an_open_batch_and_pending_subtasks(store: InMemoryTrackingStore) -> None:
    # Given a plan of three customers' sub-tasks
    plan = _plan("111122223333", "777788889999", "123456789012")

    # When the batch starts
    started = _start(store, plan)

    # Then the batch is open with its counts, and every sub-task is pending and to be invoked
    assert started.created
    assert _ids(started) == _ids(plan) == ["acme#0000", "globex#0000", "initech#0000"]
    assert started.unplanned_subtasks == []
    batch = store.get_batch("b-1")
    assert batch is not None
    assert (batch.status, batch.total_tasks, batch.finished_tasks, batch.created_at) == (BatchStatus.OPEN, 3, 0, NOW)
    assert (batch.records, batch.events, batch.rejected_records, batch.control_records) == (4, 6, 1, 1)
    records = store.list_subtasks("b-1")
    assert [(r.subtask_id, r.customer_id, r.status, r.events) for r in records] == [
        ("acme#0000", "acme", SubTaskStatus.PENDING, 2),
        ("globex#0000", "globex", SubTaskStatus.PENDING, 2),
        ("initech#0000", "initech", SubTaskStatus.PENDING, 2),
    ]


def test_a_retried_batch_resumes_with_only_the_pending_subtasks(store: InMemoryTrackingStore) -> None:
    # Given a batch whose first sub-task already finished
    plan = _plan("111122223333", "777788889999")
    _start(store, plan)
    _finish(store, "b-1", "acme#0000")

    # When Kinesis delivers the same batch again
    started = _start(store, plan)

    # Then only the unfinished sub-task is invoked again, and nothing is written twice
    assert not started.created
    assert _ids(started) == ["globex#0000"]
    assert started.unplanned_subtasks == []
    assert store.subtask_writes == 2


def test_a_resume_writes_the_subtasks_a_crash_left_unwritten(store: InMemoryTrackingStore) -> None:
    # Given a batch item written by a run that crashed before writing its sub-tasks
    plan = _plan("111122223333", "777788889999")
    assert store.create_batch(
        BatchRecord(batch_id="b-1", status=BatchStatus.OPEN, total_tasks=2, finished_tasks=0, created_at=NOW),
        EXPIRES,
    )
    store.put_subtasks([_pending("b-1", "acme#0000", "acme")], EXPIRES)

    # When the retry starts the batch
    started = _start(store, plan)

    # Then the missing sub-task is written and both pending ones are invoked
    assert _ids(started) == ["acme#0000", "globex#0000"]
    assert {r.subtask_id for r in store.list_subtasks("b-1")} == {"acme#0000", "globex#0000"}


def test_a_resume_reports_subtasks_the_new_plan_no_longer_has(store: InMemoryTrackingStore) -> None:
    # Given a batch started while initech still claimed its account
    _start(store, _plan("111122223333", "123456789012"))

    # When the retry's plan no longer routes to initech (its mapping changed in between)
    started = _start(store, _plan("111122223333"))

    # Then the stale sub-task is reported, not invoked
    assert started.unplanned_subtasks == ["initech#0000"]
    assert _ids(started) == ["acme#0000"]


# -- finish ----------------------------------------------------------------------------------


def test_finishing_the_same_subtask_twice_counts_once(store: InMemoryTrackingStore) -> None:
    # Given a batch of two sub-tasks
    _start(store, _plan("111122223333", "777788889999"))

    # When one sub-task's parser runs twice (an async retry)
    first = _finish(store, "b-1", "acme#0000", matches=3)
    second = _finish(store, "b-1", "acme#0000", matches=99)

    # Then only the first run counts, and its results stay
    assert first == (True, False)
    assert second == (False, False)
    batch = store.get_batch("b-1")
    assert batch is not None
    assert batch.finished_tasks == 1
    record = store.get_subtask("b-1", "acme#0000")
    assert record is not None
    assert (record.status, record.matches) == (SubTaskStatus.FINISHED, 3)


def test_the_last_finisher_and_only_it_must_consolidate(store: InMemoryTrackingStore) -> None:
    # Given a batch of three sub-tasks
    _start(store, _plan("111122223333", "777788889999", "123456789012"))

    # When they finish one by one
    outcomes = [_finish(store, "b-1", s) for s in ("acme#0000", "globex#0000", "initech#0000")]

    # Then the last one is told to consolidate
    assert outcomes == [(True, False), (True, False), (True, True)]
    assert store.claimed_by == {"b-1": "parser:initech#0000"}


def test_exactly_one_of_many_concurrent_finishers_consolidates(store: InMemoryTrackingStore) -> None:
    # Given a batch split into many sub-tasks, each finished twice, all at once
    records = [f.decoded_record(f.logs_message("111122223333", [f"line {i}" * 20])) for i in range(24)]
    plan = plan_batch("b-1", records, OWNERS, max_payload_bytes=700)
    assert len(plan.subtasks) > 8
    _start(store, plan)
    ids = _ids(plan) * 2

    # When they race
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda s: _finish(store, "b-1", s), ids))

    # Then each sub-task counted once and exactly one caller consolidates
    assert sum(finished for finished, _ in outcomes) == len(plan.subtasks)
    assert sum(claimed for _, claimed in outcomes) == 1
    batch = store.get_batch("b-1")
    assert batch is not None
    assert batch.finished_tasks == batch.total_tasks == len(plan.subtasks)


def test_an_abandoned_subtask_counts_as_done(store: InMemoryTrackingStore) -> None:
    # Given a batch of two sub-tasks, one finished
    _start(store, _plan("111122223333", "777788889999"))
    _finish(store, "b-1", "acme#0000")

    # When the other's invoke failed for good and its records went back to Kinesis
    outcome = _finish(store, "b-1", "globex#0000", SubTaskStatus.ABANDONED)

    # Then the batch is done and this caller consolidates
    assert outcome == (True, True)
    record = store.get_subtask("b-1", "globex#0000")
    assert record is not None
    assert record.status is SubTaskStatus.ABANDONED


def test_a_subtask_cannot_finish_as_pending(store: InMemoryTrackingStore) -> None:
    _start(store, _plan("111122223333"))

    with pytest.raises(ValueError, match="can only finish as"):
        _finish(store, "b-1", "acme#0000", SubTaskStatus.PENDING)
    batch = store.get_batch("b-1")
    assert batch is not None
    assert batch.finished_tasks == 0


# -- consolidate -----------------------------------------------------------------------------


def test_consolidate_does_nothing_while_subtasks_are_outstanding(store: InMemoryTrackingStore) -> None:
    _start(store, _plan("111122223333", "777788889999"))
    _finish(store, "b-1", "acme#0000")

    assert consolidate(store, "b-1", now_ms=NOW + 5) is None
    batch = store.get_batch("b-1")
    assert batch is not None
    assert batch.status is BatchStatus.OPEN


def test_consolidate_of_an_unknown_batch_does_nothing(store: InMemoryTrackingStore) -> None:
    assert consolidate(store, "b-missing", now_ms=NOW) is None


def test_consolidate_writes_the_summary_exactly_once(store: InMemoryTrackingStore) -> None:
    # Given a batch whose sub-tasks are all done
    _start(store, _plan("111122223333", "777788889999"))
    _finish(store, "b-1", "acme#0000", matches=2, notified=1, rule_stats={"declines": RuleStats(matches=2)})
    _finish(store, "b-1", "globex#0000", SubTaskStatus.ABANDONED)

    # When the consolidator runs twice
    summary = consolidate(store, "b-1", now_ms=NOW + 9)
    again = consolidate(store, "b-1", now_ms=NOW + 10)

    # Then the first run completes the batch with its summary and the second changes nothing
    assert summary is not None
    assert again is None
    batch = store.get_batch("b-1")
    assert batch is not None
    assert (batch.status, batch.finished_at, batch.summary) == (BatchStatus.COMPLETE, NOW + 9, summary)
    assert (summary.total_tasks, summary.finished_tasks, summary.abandoned_tasks) == (2, 2, 1)
    assert (summary.matches, summary.notified_matches, summary.matches_by_rule) == (2, 1, {"acme/declines": 2})


def test_summarise_folds_every_subtasks_results() -> None:
    # Given a finished batch whose sub-tasks matched, timed out and one was abandoned
    batch = BatchRecord(
        batch_id="b-1",
        status=BatchStatus.OPEN,
        total_tasks=3,
        finished_tasks=3,
        created_at=NOW,
        records=10,
        events=100,
        rejected_records=2,
        control_records=1,
        unclaimed_events=7,
    )

    def done(subtask_id: str, customer: str, status: SubTaskStatus, stats: dict[str, RuleStats]) -> SubTaskRecord:
        return SubTaskRecord(
            batch_id="b-1",
            subtask_id=subtask_id,
            customer_id=customer,
            status=status,
            events=10,
            matches=sum(s.matches for s in stats.values()),
            notified=1,
            rule_stats=stats,
        )

    subtasks = [
        done("acme#0000", "acme", SubTaskStatus.FINISHED, {"errors": RuleStats(matches=3, timeouts=1)}),
        done(
            "acme#0001", "acme", SubTaskStatus.FINISHED, {"errors": RuleStats(matches=2), "slow": RuleStats(timeouts=4)}
        ),
        done("globex#0000", "globex", SubTaskStatus.ABANDONED, {"errors": RuleStats(matches=1)}),
    ]

    # When summarised
    summary = summarise(batch, subtasks, now_ms=NOW + 50)

    # Then matches and timeouts are summed per customer/rule, and the counts carry over
    assert summary.matches_by_rule == {"acme/errors": 5, "globex/errors": 1}
    assert summary.rule_timeouts == {"acme/errors": 1, "acme/slow": 4}
    assert (summary.matches, summary.notified_matches) == (6, 3)
    assert (summary.finished_tasks, summary.abandoned_tasks, summary.total_tasks) == (3, 1, 3)
    assert (summary.records, summary.events, summary.rejected_records) == (10, 100, 2)
    assert (summary.control_records, summary.unclaimed_events) == (1, 7)
    assert (summary.status, summary.created_at, summary.finished_at) == (BatchStatus.COMPLETE, NOW, NOW + 50)


def test_a_completed_batch_cannot_be_claimed_again(store: InMemoryTrackingStore) -> None:
    # Given a completed batch
    _start(store, _plan("111122223333"))
    _finish(store, "b-1", "acme#0000")
    assert consolidate(store, "b-1", now_ms=NOW) is not None

    # Then nobody can claim it again
    assert not store.claim_consolidation("b-1", "late")
