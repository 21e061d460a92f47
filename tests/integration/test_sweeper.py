"""The sweeper handler on moto: lost async invokes, records gone from the stream, exhausted re-drives."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline import composition
from pipeline.adapters.kinesis_publisher import KinesisPublisher, OutgoingRecord
from pipeline.handlers import fan_out, sweeper
from pipeline.local.aws import LocalAws
from pipeline.local.kinesis import EventSourceMapping
from pipeline.models import BatchRecord, BatchStatus, SubTaskStatus
from pipeline.ports import FunctionInvoker
from tests import factories as f
from tests.faults import ClientProxy, throttled
from tests.harness import Harness, harness, lambda_context

ACME, GLOBEX = "111122223333", "777788889999"
PARSER = "logfan-parser"
CONSOLIDATOR = "logfan-consolidator"
NEVER = 2**62
"""`created_before_ms` that lists every open batch."""


class SwallowingInvoker:
    """Lambda accepting an `Event` invoke and then never running it: the caller sees success.

    Swallows the first `times` invokes of `function_name` whose payload `when` accepts (None: all).
    """

    def __init__(
        self,
        inner: FunctionInvoker,
        function_name: str,
        *,
        times: int | None,
        when: Callable[[dict[str, Any]], bool] = lambda payload: True,
    ) -> None:
        self._inner = inner
        self._function_name = function_name
        self._times = times
        self._when = when
        self._lock = threading.Lock()
        self.swallowed: list[dict[str, Any]] = []

    def invoke_async(self, function_name: str, payload: bytes) -> None:
        document = json.loads(payload)
        if function_name == self._function_name and self._when(document):
            with self._lock:
                swallow = self._times is None or len(self.swallowed) < self._times
                if swallow:
                    self.swallowed.append(document)
            if swallow:
                return
        self._inner.invoke_async(function_name, payload)


def _globex(payload: dict[str, Any]) -> bool:
    return str(payload.get("customer_id")) == "globex"


@contextmanager
def _swallowing(
    aws: LocalAws, tmp_path: Path, function_name: str, *, times: int | None, when: Callable[[dict[str, Any]], bool]
) -> Iterator[tuple[Harness, SwallowingInvoker]]:
    wrappers: list[SwallowingInvoker] = []

    def wrap(inner: FunctionInvoker) -> FunctionInvoker:
        wrappers.append(SwallowingInvoker(inner, function_name, times=times, when=when))
        return wrappers[0]

    with harness(aws, tmp_path, wrap_invoker=wrap) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_customer(f.customer("globex", [GLOBEX]))
        h.config.put_rule(f.rule("acme", "errors", "ERROR"))
        h.config.put_rule(f.rule("globex", "panics", "panic"))
        yield h, wrappers[0]


def _messages() -> tuple[list[dict[str, Any]], set[tuple[str, str, str]]]:
    """Two customers' CloudWatch Logs messages, and the (customer, rule, event id) matches they give."""
    acme = [f.event("ERROR payment declined"), f.event("INFO ok"), f.event("ERROR db timeout")]
    globex = [f.event("kernel panic: out of memory"), f.event("all good")]
    expected = {
        ("acme", "errors", acme[0]["id"]),
        ("acme", "errors", acme[2]["id"]),
        ("globex", "panics", globex[0]["id"]),
    }
    return [f.logs_message(ACME, events=acme), f.logs_message(GLOBEX, events=globex)], expected


def _through_the_stream(h: Harness, messages: list[dict[str, Any]]) -> None:
    """Put the messages into the (moto) stream and deliver them to the fan-out as Lambda's mapping does."""
    aws = h.aws
    KinesisPublisher(aws.kinesis, aws.names.stream).publish(
        [OutgoingRecord(message["owner"], base64.b64decode(f.encode(message))) for message in messages]
    )
    mapping = EventSourceMapping(
        kinesis=aws.kinesis,
        stream_name=aws.names.stream,
        stream_arn=aws.stream_arn,
        handler=fan_out.handler,
        function_name=aws.names.fan_out_function,
        batch_size=10,
    )
    mapping.drain()
    assert mapping.discarded == []


def _sweep() -> dict[str, Any]:
    """One scheduled run of the sweeper Lambda."""
    return sweeper.handler({"time": "2026-11-29T12:00:00Z"}, lambda_context("logfan-sweeper"))


def _only_open_batch(h: Harness) -> BatchRecord:
    (batch,) = h.tracking.open_batches(created_before_ms=NEVER)
    return batch


def _match_keys(h: Harness) -> Counter[tuple[str, str, str]]:
    return Counter((m.customer_id, m.rule_id, m.event_id) for m in h.matches.iter_matches())


def _assert_complete_once(h: Harness, batch_id: str) -> BatchRecord:
    batch = h.tracking.get_batch(batch_id)
    assert batch is not None and batch.status is BatchStatus.COMPLETE
    assert batch.summary is not None and batch.finished_tasks == batch.total_tasks
    assert h.invocations(CONSOLIDATOR) == 1
    assert h.metrics.snapshot().get("BatchesCompleted") == 1
    assert list(h.tracking.open_batches(created_before_ms=NEVER)) == []
    return batch


def test_a_lost_parser_invoke_is_redriven_from_the_stream_and_the_batch_completes_once(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given a batch delivered through the stream whose globex parser invoke Lambda lost
    with _swallowing(aws, tmp_path, PARSER, times=1, when=_globex) as (h, lost):
        messages, expected = _messages()
        _through_the_stream(h, messages)
        h.settle()
        batch = _only_open_batch(h)
        assert batch.shard_id and batch.first_sequence and batch.last_sequence
        statuses = {s.customer_id: s.status for s in h.tracking.list_subtasks(batch.batch_id)}
        assert statuses == {"acme": SubTaskStatus.FINISHED, "globex": SubTaskStatus.PENDING}
        assert len(lost.swallowed) == 1

        # When the scheduled sweeper runs
        result = _sweep()
        h.settle()

        # Then it re-drove exactly that sub-task, and the batch completed once
        assert result == {
            "stuck_batches": 1,
            "consolidations": 0,
            "redriven": 1,
            "abandoned": 0,
            "notifications_sent": 0,
            "digests": 0,
        }
        assert h.metrics.snapshot().get("SubTasksRedriven") == 1
        _assert_complete_once(h, batch.batch_id)
        (globex,) = [s for s in h.tracking.list_subtasks(batch.batch_id) if s.customer_id == "globex"]
        assert (globex.status, globex.redrives, globex.matches) == (SubTaskStatus.FINISHED, 1, 1)
        keys = _match_keys(h)
        assert set(keys) == expected and set(keys.values()) == {1}
        notification_ids = Counter(n["notification_id"] for n in h.notification_lines())
        assert len(notification_ids) == 2 and set(notification_ids.values()) == {1}

        # And a later sweep finds nothing to do
        assert _sweep() == {
            "stuck_batches": 0,
            "consolidations": 0,
            "redriven": 0,
            "abandoned": 0,
            "notifications_sent": 0,
            "digests": 0,
        }


def test_a_lost_consolidator_trigger_is_reissued_by_the_sweeper_and_completes_the_batch_once(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given a batch whose sub-tasks all finished but whose consolidator invoke was lost
    with _swallowing(aws, tmp_path, CONSOLIDATOR, times=1, when=lambda payload: True) as (h, lost):
        messages, expected = _messages()
        h.fan_out(f.kinesis_event([f.encode(m) for m in messages]))
        h.settle()
        batch = _only_open_batch(h)
        assert batch.finished_tasks == batch.total_tasks == 2
        assert batch.consolidation_claimed_by is not None
        assert len(lost.swallowed) == 1 and h.invocations(CONSOLIDATOR) == 0

        # When
        result = _sweep()
        h.settle()

        # Then the sweeper triggered the consolidator, which wrote the summary once
        assert result == {
            "stuck_batches": 1,
            "consolidations": 1,
            "redriven": 0,
            "abandoned": 0,
            "notifications_sent": 0,
            "digests": 0,
        }
        completed = _assert_complete_once(h, batch.batch_id)
        assert completed.summary is not None and completed.summary.matches == len(expected)
        assert set(_match_keys(h)) == expected
        assert _sweep()["stuck_batches"] == 0
        h.settle()
        assert h.invocations(CONSOLIDATOR) == 1


def test_a_sub_task_whose_records_left_the_stream_is_abandoned_and_the_batch_completes(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given a batch whose records are not in the stream (aged out), with the globex parser invoke lost
    with _swallowing(aws, tmp_path, PARSER, times=1, when=_globex) as (h, _):
        messages, expected = _messages()
        h.fan_out(f.kinesis_event([f.encode(m) for m in messages]))
        h.settle()
        batch = _only_open_batch(h)

        # When
        result = _sweep()
        h.settle()

        # Then the sub-task is abandoned (with a metric to alarm on) and the batch says so
        assert result == {
            "stuck_batches": 1,
            "consolidations": 1,
            "redriven": 0,
            "abandoned": 1,
            "notifications_sent": 0,
            "digests": 0,
        }
        assert h.metrics.snapshot().get("AbandonedSubTasks") == 1
        statuses = {s.customer_id: s.status for s in h.tracking.list_subtasks(batch.batch_id)}
        assert statuses == {"acme": SubTaskStatus.FINISHED, "globex": SubTaskStatus.ABANDONED}
        completed = _assert_complete_once(h, batch.batch_id)
        assert completed.summary is not None
        assert (completed.summary.abandoned_tasks, completed.summary.finished_tasks) == (1, 2)
        assert set(_match_keys(h)) == {key for key in expected if key[0] == "acme"}


def test_a_sub_task_that_never_finishes_is_abandoned_once_its_redrives_are_exhausted(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given a batch in the stream whose globex parser invokes are all lost
    with _swallowing(aws, tmp_path, PARSER, times=None, when=_globex) as (h, lost):
        messages, _ = _messages()
        _through_the_stream(h, messages)
        h.settle()
        batch = _only_open_batch(h)
        max_redrives = composition.sweeper_deps().max_redrives

        # When the sweeper runs max_redrives times, then once more
        redriving = [_sweep() for _ in range(max_redrives)]
        h.settle()
        still_open = _only_open_batch(h)
        last = _sweep()
        h.settle()

        # Then each of the first runs re-drove it, the next one abandoned it, and the batch completed
        assert [r["redriven"] for r in redriving] == [1] * max_redrives
        assert still_open.batch_id == batch.batch_id
        assert last == {
            "stuck_batches": 1,
            "consolidations": 1,
            "redriven": 0,
            "abandoned": 1,
            "notifications_sent": 0,
            "digests": 0,
        }
        assert len(lost.swallowed) == 1 + max_redrives
        (globex,) = [s for s in h.tracking.list_subtasks(batch.batch_id) if s.customer_id == "globex"]
        assert globex.status is SubTaskStatus.ABANDONED
        completed = _assert_complete_once(h, batch.batch_id)
        assert completed.summary is not None and completed.summary.abandoned_tasks == 1
        assert h.metrics.snapshot().get("SubTasksRedriven") == max_redrives


def test_a_sub_task_with_a_live_lease_is_left_to_its_holder(aws: LocalAws, tmp_path: Path) -> None:
    # Given a pending sub-task that a parser run holds a live lease on
    with _swallowing(aws, tmp_path, PARSER, times=1, when=_globex) as (h, _):
        messages, expected = _messages()
        _through_the_stream(h, messages)
        h.settle()
        batch = _only_open_batch(h)
        (globex,) = [s for s in h.tracking.list_subtasks(batch.batch_id) if s.customer_id == "globex"]
        now_ms = composition.SystemClock().now_ms()
        assert h.tracking.lease_subtask(
            batch.batch_id, globex.subtask_id, "busy-run", now_ms=now_ms, until_ms=now_ms + 600_000
        )
        parser_runs = h.invocations(PARSER)

        # When
        result = _sweep()
        h.settle()

        # Then the sweeper leaves it alone
        assert result == {
            "stuck_batches": 1,
            "consolidations": 0,
            "redriven": 0,
            "abandoned": 0,
            "notifications_sent": 0,
            "digests": 0,
        }
        assert h.invocations(PARSER) == parser_runs
        leased = h.tracking.get_subtask(batch.batch_id, globex.subtask_id)
        assert leased is not None and (leased.status, leased.redrives) == (SubTaskStatus.PENDING, 0)

        # And once the holder gives the sub-task up, the next sweep re-drives it
        h.tracking.release_subtask(batch.batch_id, globex.subtask_id, "busy-run")
        assert _sweep()["redriven"] == 1
        h.settle()
        _assert_complete_once(h, batch.batch_id)
        assert set(_match_keys(h)) == expected


def test_open_batches_lists_only_the_batches_still_open(aws: LocalAws, tmp_path: Path) -> None:
    # Given one batch that completes (acme only) and one left open (its globex invoke lost)
    with _swallowing(aws, tmp_path, PARSER, times=1, when=_globex) as (h, _):
        acme_only = f.kinesis_event([f.encode(f.logs_message(ACME, ["ERROR one"]))])
        both = f.kinesis_event([f.encode(m) for m in _messages()[0]])
        h.fan_out(acme_only)
        h.fan_out(both)
        h.settle()
        batches = {b.batch_id: b for b in h.tracking.iter_batches()}
        complete = [b for b in batches.values() if b.status is BatchStatus.COMPLETE]
        still_open = [b for b in batches.values() if b.status is BatchStatus.OPEN]
        assert len(complete) == len(still_open) == 1

        # When / Then only the open one is listed, and only once it is older than the cut-off
        listed = list(h.tracking.open_batches(created_before_ms=NEVER))
        assert [b.batch_id for b in listed] == [still_open[0].batch_id]
        assert list(h.tracking.open_batches(created_before_ms=still_open[0].created_at)) == []

        # And once the sweeper has it completed, it drops out of the index
        _sweep()
        h.settle()
        assert list(h.tracking.open_batches(created_before_ms=NEVER)) == []
        assert {b.status for b in h.tracking.iter_batches()} == {BatchStatus.COMPLETE}


def test_a_store_error_on_one_batch_does_not_stop_the_sweep_of_the_others(aws: LocalAws, tmp_path: Path) -> None:
    # Given two stuck batches (globex invokes lost, records not in the stream), and DynamoDB
    # throttling the first sub-task listing the sweeper makes
    proxies: list[ClientProxy] = []

    def throttle_one_listing(client: Any) -> Any:
        listing = throttled(calls=1, when=lambda request: "IndexName" not in request and "pk = :pk" in str(request))
        proxies.append(ClientProxy(client, query=listing))
        return proxies[-1]

    wrappers: list[SwallowingInvoker] = []

    def wrap(inner: FunctionInvoker) -> FunctionInvoker:
        wrappers.append(SwallowingInvoker(inner, PARSER, times=None, when=_globex))
        return wrappers[-1]

    with harness(aws, tmp_path, wrap_invoker=wrap) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_customer(f.customer("globex", [GLOBEX]))
        h.config.put_rule(f.rule("globex", "panics", "panic"))
        for _ in range(2):
            h.fan_out(f.kinesis_event([f.encode(f.logs_message(GLOBEX, ["kernel panic"]))]))
        h.settle()
        assert len(list(h.tracking.open_batches(created_before_ms=NEVER))) == 2

    with harness(aws, tmp_path, wrap_invoker=wrap, wrap_dynamodb=throttle_one_listing) as h:
        # When
        result = _sweep()
        h.settle()

        # Then the other batch was still swept (its sub-task abandoned, the batch completed)
        assert result["stuck_batches"] == 2 and result["abandoned"] == 1
        assert len(list(h.tracking.open_batches(created_before_ms=NEVER))) == 1
