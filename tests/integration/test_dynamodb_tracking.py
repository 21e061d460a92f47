"""DynamoDBTrackingStore on moto: the batch / sub-task items behind the fan-out and fan-in."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pipeline.adapters.dynamodb_common import BATCH_WRITE_LIMIT, UNPROCESSED_ATTEMPTS
from pipeline.adapters.dynamodb_tracking import DynamoDBTrackingStore
from pipeline.errors import BatchConflictError, TransientStoreError
from pipeline.local.aws import LocalAws
from pipeline.models import (
    BatchRecord,
    BatchStatus,
    BatchSummary,
    RuleStats,
    SubTaskRecord,
    SubTaskStatus,
)
from tests.faults import ClientProxy, page_limit, unprocessed_items

EXPIRES_AT = 1_900_000_000
BATCH = "b-0123456789abcdef"


def _store(client: Any) -> DynamoDBTrackingStore:
    return DynamoDBTrackingStore(client, "logfan-batches", sleep=lambda _: None)


def _batch(total_tasks: int, batch_id: str = BATCH) -> BatchRecord:
    return BatchRecord(
        batch_id=batch_id, status=BatchStatus.OPEN, total_tasks=total_tasks, finished_tasks=0, created_at=1, records=3
    )


def _subtasks(count: int, batch_id: str = BATCH) -> list[SubTaskRecord]:
    return [
        SubTaskRecord(
            batch_id=batch_id,
            subtask_id=f"acme#{index:04d}",
            customer_id="acme",
            status=SubTaskStatus.PENDING,
            events=index + 1,
        )
        for index in range(count)
    ]


def _summary(batch: BatchRecord, finished_at: int = 99) -> BatchSummary:
    return BatchSummary(
        batch_id=batch.batch_id,
        status=BatchStatus.COMPLETE,
        total_tasks=batch.total_tasks,
        finished_tasks=batch.total_tasks,
        records=batch.records,
        events=0,
        matches=0,
        notified_matches=0,
        rejected_records=0,
        control_records=0,
        unclaimed_events=0,
        matches_by_rule={},
        rule_timeouts={},
        created_at=batch.created_at,
        finished_at=finished_at,
    )


def _written_ids(requests: list[dict[str, Any]]) -> list[str]:
    return [
        put["PutRequest"]["Item"]["subtask_id"]["S"]
        for request in requests
        for table_requests in request["RequestItems"].values()
        for put in table_requests
    ]


def test_create_batch_is_conditional(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)

    created = store.create_batch(_batch(2), EXPIRES_AT)
    again = store.create_batch(_batch(5), EXPIRES_AT)

    assert (created, again) == (True, False)
    stored = store.get_batch(BATCH)
    assert stored is not None and stored.total_tasks == 2 and stored.status is BatchStatus.OPEN


def test_put_subtasks_writes_every_subtask_in_calls_of_at_most_25(aws: LocalAws) -> None:
    proxy = ClientProxy(aws.dynamodb)
    store = _store(proxy)
    subtasks = _subtasks(60)

    store.put_subtasks(subtasks, EXPIRES_AT)

    sizes = [len(_written_ids([request])) for request in proxy.requests("batch_write_item")]
    assert sizes == [25, 25, 10]
    assert max(sizes) <= BATCH_WRITE_LIMIT
    assert sorted(r.subtask_id for r in store.list_subtasks(BATCH)) == [s.subtask_id for s in subtasks]


def test_put_subtasks_retries_unprocessed_items_until_all_are_written(aws: LocalAws) -> None:
    # Given a table that processes only 10 of the first request's 25 items
    proxy = ClientProxy(aws.dynamodb, batch_write_item=unprocessed_items(calls=1, keep=10))
    store = _store(proxy)
    subtasks = _subtasks(60)

    # When
    store.put_subtasks(subtasks, EXPIRES_AT)

    # Then the 15 left over are sent again on their own, and nothing is lost or written twice
    requests = proxy.requests("batch_write_item")
    assert [len(_written_ids([r])) for r in requests] == [25, 15, 25, 10]
    assert _written_ids(requests[1:2]) == [s.subtask_id for s in subtasks[10:25]]
    assert sorted(r.subtask_id for r in store.list_subtasks(BATCH)) == [s.subtask_id for s in subtasks]


def test_put_subtasks_gives_up_with_a_transient_error_after_bounded_attempts(aws: LocalAws) -> None:
    proxy = ClientProxy(aws.dynamodb, batch_write_item=unprocessed_items(calls=None, keep=0))
    store = _store(proxy)

    with pytest.raises(TransientStoreError, match="unprocessed"):
        store.put_subtasks(_subtasks(3), EXPIRES_AT)

    assert len(proxy.requests("batch_write_item")) == UNPROCESSED_ATTEMPTS
    assert store.list_subtasks(BATCH) == []


def test_finish_subtask_moves_it_and_counts_it_on_the_batch_once(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.create_batch(_batch(2), EXPIRES_AT)
    store.put_subtasks(_subtasks(2), EXPIRES_AT)
    done = _subtasks(1)[0].model_copy(update={"matches": 3, "notified": 2, "rule_stats": {"r1": RuleStats(matches=3)}})

    first = store.finish_subtask(done, SubTaskStatus.FINISHED, 1234)
    second = store.finish_subtask(done, SubTaskStatus.FINISHED, 5678)

    assert (first, second) == (True, False)
    batch = store.get_batch(BATCH)
    assert batch is not None and batch.finished_tasks == 1
    stored = store.get_subtask(BATCH, done.subtask_id)
    assert stored is not None
    assert stored.status is SubTaskStatus.FINISHED
    assert (stored.matches, stored.notified, stored.rule_stats) == (3, 2, {"r1": RuleStats(matches=3)})


def test_finish_subtask_is_one_transaction_the_subtask_stays_pending_when_the_batch_is_closed(
    aws: LocalAws,
) -> None:
    # Given a batch completed (by mistake) while one of its sub-tasks is still pending
    store = _store(aws.dynamodb)
    batch = _batch(1)
    store.create_batch(batch, EXPIRES_AT)
    store.put_subtasks(_subtasks(1), EXPIRES_AT)
    assert store.complete_batch(_summary(batch))

    # When the parser finishes it
    with pytest.raises(BatchConflictError):
        store.finish_subtask(_subtasks(1)[0], SubTaskStatus.FINISHED, 1234)

    # Then neither half of the transaction happened
    stored = store.get_subtask(BATCH, "acme#0000")
    assert stored is not None and stored.status is SubTaskStatus.PENDING
    after = store.get_batch(BATCH)
    assert after is not None and after.finished_tasks == 0


def test_concurrent_finishes_of_one_subtask_count_it_once(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.create_batch(_batch(1), EXPIRES_AT)
    store.put_subtasks(_subtasks(1), EXPIRES_AT)
    record = _subtasks(1)[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: store.finish_subtask(record, SubTaskStatus.FINISHED, 1), range(4)))

    assert sorted(results) == [False, False, False, True]
    batch = store.get_batch(BATCH)
    assert batch is not None and batch.finished_tasks == 1


def test_claim_consolidation_only_once_every_subtask_is_finished(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.create_batch(_batch(2), EXPIRES_AT)
    first, second = _subtasks(2)
    store.put_subtasks([first, second], EXPIRES_AT)

    before = store.claim_consolidation(BATCH, "early")
    store.finish_subtask(first, SubTaskStatus.FINISHED, 1)
    halfway = store.claim_consolidation(BATCH, "halfway")
    store.finish_subtask(second, SubTaskStatus.ABANDONED, 2)
    with ThreadPoolExecutor(max_workers=4) as pool:
        claims = list(pool.map(lambda n: store.claim_consolidation(BATCH, f"claimant-{n}"), range(6)))

    assert (before, halfway) == (False, False)
    assert claims.count(True) == 1


def test_claim_consolidation_of_a_batch_without_subtasks(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.create_batch(_batch(0), EXPIRES_AT)

    assert [store.claim_consolidation(BATCH, "fan-out"), store.claim_consolidation(BATCH, "again")] == [True, False]


def test_complete_batch_only_once(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    batch = _batch(0)
    store.create_batch(batch, EXPIRES_AT)

    first = store.complete_batch(_summary(batch, finished_at=100))
    second = store.complete_batch(_summary(batch, finished_at=200))

    assert (first, second) == (True, False)
    stored = store.get_batch(BATCH)
    assert stored is not None and stored.status is BatchStatus.COMPLETE
    assert stored.summary == _summary(batch, finished_at=100)
    assert stored.finished_at == 100


def test_list_subtasks_follows_every_page(aws: LocalAws) -> None:
    # Given 60 sub-tasks of one batch (and another batch's), and a table serving 25 items a page
    proxy = ClientProxy(aws.dynamodb, query=page_limit(25))
    store = _store(proxy)
    store.create_batch(_batch(60), EXPIRES_AT)
    store.put_subtasks(_subtasks(60), EXPIRES_AT)
    store.put_subtasks(_subtasks(2, batch_id="b-other"), EXPIRES_AT)

    # When
    listed = store.list_subtasks(BATCH)

    # Then every sub-task of this batch comes back once, over several pages
    assert sorted(r.subtask_id for r in listed) == [s.subtask_id for s in _subtasks(60)]
    assert {r.batch_id for r in listed} == {BATCH}
    assert len(proxy.requests("query")) >= 3


def test_iter_batches_follows_every_page(aws: LocalAws) -> None:
    proxy = ClientProxy(aws.dynamodb, scan=page_limit(2))
    store = _store(proxy)
    for index in range(5):
        store.create_batch(_batch(1, batch_id=f"b-{index}"), EXPIRES_AT)
    store.put_subtasks(_subtasks(3, batch_id="b-0"), EXPIRES_AT)

    batches = sorted(batch.batch_id for batch in store.iter_batches())

    assert batches == [f"b-{index}" for index in range(5)]
    assert len(proxy.requests("scan")) >= 3


def test_a_subtask_lease_keeps_other_runs_out_until_it_lapses(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.put_subtasks(_subtasks(1), EXPIRES_AT)

    def lease(holder: str, now_ms: int) -> bool:
        return store.lease_subtask(BATCH, "acme#0000", holder, now_ms=now_ms, until_ms=now_ms + 1000)

    first = lease("run-a", 0)
    duplicate = lease("run-b", 500)
    retry_of_first = lease("run-a", 600)  # Lambda's retry keeps the request id
    after_lapse = lease("run-b", 1601)

    assert (first, duplicate, retry_of_first, after_lapse) == (True, False, True, True)


def test_a_released_lease_frees_the_subtask_only_for_its_holder(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.put_subtasks(_subtasks(1), EXPIRES_AT)
    assert store.lease_subtask(BATCH, "acme#0000", "run-a", now_ms=0, until_ms=10_000)

    store.release_subtask(BATCH, "acme#0000", "run-b")  # not its lease: nothing happens
    blocked = store.lease_subtask(BATCH, "acme#0000", "run-c", now_ms=1, until_ms=10_000)
    store.release_subtask(BATCH, "acme#0000", "run-a")
    freed = store.lease_subtask(BATCH, "acme#0000", "run-c", now_ms=2, until_ms=10_000)

    assert (blocked, freed) == (False, True)


def test_a_finished_subtask_cannot_be_leased(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.create_batch(_batch(1), EXPIRES_AT)
    store.put_subtasks(_subtasks(1), EXPIRES_AT)
    store.finish_subtask(_subtasks(1)[0], SubTaskStatus.FINISHED, 1)

    assert not store.lease_subtask(BATCH, "acme#0000", "late", now_ms=0, until_ms=10_000)
    assert not store.lease_subtask(BATCH, "acme#9999", "unknown", now_ms=0, until_ms=10_000)


def test_a_claim_retried_after_an_ambiguous_failure_recognises_its_own_write(aws: LocalAws) -> None:
    # Given a claim that was applied, but whose answer was lost (DynamoDB can answer 500 to an
    # applied write and the SDK retries it)
    store = DynamoDBTrackingStore(aws.dynamodb, aws.names.batches_table)
    store.create_batch(_batch(0, batch_id="b-amb"), expires_at=0)
    assert store.claim_consolidation("b-amb", "parser-run-1")

    # When the same claimant's retry arrives, Then it is recognised as its own; another's is not
    assert store.claim_consolidation("b-amb", "parser-run-1")
    assert not store.claim_consolidation("b-amb", "parser-run-2")
