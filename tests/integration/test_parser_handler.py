"""The parser handler behind the real fan-out, on moto: duplicates, hostile rules, failing channels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.local.aws import LocalAws
from pipeline.models import BatchStatus, SubTaskStatus
from pipeline.ports import FunctionInvoker, NotificationStatus, Notifier
from pipeline.routing import compute_batch_id
from tests import factories as f
from tests.faults import ClientProxy, FlakyInvoker, FlakyNotifier, RecordingInvoker, throttled
from tests.harness import Harness, harness

ACME, GLOBEX = "111122223333", "777788889999"
PARSER = "logfan-parser"
CONSOLIDATOR = "logfan-consolidator"


def _configure(h: Harness) -> None:
    h.config.put_customer(f.customer("acme", [ACME]))
    h.config.put_customer(f.customer("globex", [GLOBEX]))
    h.config.put_rule(f.rule("acme", "errors", "ERROR"))
    h.config.put_rule(f.rule("globex", "panics", "panic"))


def _event() -> tuple[dict[str, Any], set[tuple[str, str, str]]]:
    """Two customers' records, and the (customer, rule, event id) matches they must give."""
    acme = [f.event("ERROR payment declined"), f.event("INFO ok"), f.event("ERROR db timeout")]
    globex = [f.event("kernel panic: out of memory"), f.event("all good")]
    event = f.kinesis_event(
        [f.encode(f.logs_message(ACME, events=acme)), f.encode(f.logs_message(GLOBEX, events=globex))]
    )
    expected = {
        ("acme", "errors", acme[0]["id"]),
        ("acme", "errors", acme[2]["id"]),
        ("globex", "panics", globex[0]["id"]),
    }
    return event, expected


def _batch_id(event: dict[str, Any]) -> str:
    return compute_batch_id(record["eventID"] for record in event["Records"])


def _match_keys(h: Harness) -> Counter[tuple[str, str, str]]:
    return Counter((m.customer_id, m.rule_id, m.event_id) for m in h.matches.iter_matches())


def _assert_complete_once(h: Harness, batch_id: str, total_tasks: int) -> None:
    batch = h.tracking.get_batch(batch_id)
    assert batch is not None and batch.status is BatchStatus.COMPLETE
    assert (batch.total_tasks, batch.finished_tasks) == (total_tasks, total_tasks)
    assert h.invocations(CONSOLIDATOR) == 1
    assert h.metrics.snapshot().get("BatchesCompleted") == 1


def test_a_duplicate_invocation_after_the_first_finished_changes_nothing(aws: LocalAws, tmp_path: Path) -> None:
    recorder: list[RecordingInvoker] = []

    def record(inner: FunctionInvoker) -> FunctionInvoker:
        recorder.append(RecordingInvoker(inner, PARSER))
        return recorder[0]

    with harness(aws, tmp_path, wrap_invoker=record) as h:
        _configure(h)
        event, expected = _event()
        h.fan_out(event)
        h.settle()
        notifications = h.notification_lines()

        # When Lambda delivers every sub-task a second time
        for payload in recorder[0].payloads:
            h.invoker.invoke_async(PARSER, payload)
        h.settle()

        # Then
        assert _match_keys(h) == Counter(expected)
        assert h.notification_lines() == notifications
        assert h.metrics.snapshot()["DuplicateInvocations"] == 2
        _assert_complete_once(h, _batch_id(event), total_tasks=2)


def test_concurrent_duplicate_invocations_notify_each_notification_once(aws: LocalAws, tmp_path: Path) -> None:
    # Given Lambda delivering every parser invocation twice, run side by side on two workers
    with harness(aws, tmp_path, wrap_invoker=lambda inner: RecordingInvoker(inner, PARSER, copies=2)) as h:
        _configure(h)
        event, expected = _event()

        # When
        h.fan_out(event)
        h.settle()

        # Then
        assert h.invocations(PARSER) == 4
        assert _match_keys(h) == Counter(expected)
        notification_ids = Counter(n["notification_id"] for n in h.notification_lines())
        assert len(notification_ids) == 2 and set(notification_ids.values()) == {1}
        assert not h.invoker.dead_letters
        _assert_complete_once(h, _batch_id(event), total_tasks=2)


def test_a_catastrophic_pattern_times_out_without_stopping_the_other_rules(aws: LocalAws, tmp_path: Path) -> None:
    # Given a rule whose pattern backtracks exponentially on a long comma-separated line
    with harness(aws, tmp_path) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_rule(f.rule("acme", "csv", r"^(.*?,){11}P"))
        h.config.put_rule(f.rule("acme", "errors", "ERROR"))
        line = f.event("ERROR " + "x," * 40 + "end")
        event = f.kinesis_event([f.encode(f.logs_message(ACME, events=[line]))])

        # When
        response = h.fan_out(event)
        h.settle()

        # Then the parser finished, reported the timeout, and the other rule matched that line
        assert response == {"batchItemFailures": []}
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE and batch.summary is not None
        assert batch.summary.rule_timeouts == {"acme/csv": 1}
        assert batch.summary.matches_by_rule == {"acme/errors": 1}
        assert _match_keys(h) == Counter({("acme", "errors", line["id"]): 1})
        assert not h.invoker.dead_letters


def test_a_rule_that_does_not_compile_is_skipped_and_the_others_fire(aws: LocalAws, tmp_path: Path) -> None:
    # Given a broken pattern written straight to the config table (no rules-file validation)
    with harness(aws, tmp_path) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_rule(f.rule("acme", "broken", "([unclosed", "ERROR"))
        h.config.put_rule(f.rule("acme", "errors", "ERROR"))
        line = f.event("ERROR ([unclosed")
        event = f.kinesis_event([f.encode(f.logs_message(ACME, events=[line]))])

        # When
        h.fan_out(event)
        h.settle()

        # Then
        assert _match_keys(h) == Counter({("acme", "errors", line["id"]): 1})
        assert h.metrics.snapshot()["BrokenRules"] == 1
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE
        assert not h.invoker.dead_letters


def test_a_transient_channel_failure_is_held_and_the_dispatcher_sends_it_once(aws: LocalAws, tmp_path: Path) -> None:
    # Given a channel that answers 503 to the first delivery of each notification
    notifiers: list[FlakyNotifier] = []

    def flaky(inner: Notifier) -> Notifier:
        notifiers.append(FlakyNotifier(inner, failures=1))
        return notifiers[0]

    with harness(aws, tmp_path, wrap_notifier=flaky) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_rule(f.rule("acme", "errors", "ERROR"))
        lines = [f.event("ERROR one"), f.event("ERROR two")]
        event = f.kinesis_event([f.encode(f.logs_message(ACME, events=lines))])

        # When the parser's delivery fails transiently
        h.fan_out(event)
        h.settle()

        # Then the sub-task still finishes (its matches are safe) and the alert waits in the outbox
        assert h.invocations(PARSER) == 1
        assert not h.notification_lines()
        (held,) = h.matches.held_notifications(due_before_ms=2**62)
        assert (held.status, held.attempts) == (NotificationStatus.HELD, 1)
        assert "503" in held.error
        subtask = h.tracking.get_subtask(_batch_id(event), "acme#0000")
        assert subtask is not None and (subtask.status, subtask.matches, subtask.notified) == (
            SubTaskStatus.FINISHED,
            2,
            2,
        )
        _assert_complete_once(h, _batch_id(event), total_tasks=1)

        # When the dispatcher runs before the retry is due, it leaves the alert alone
        assert h.dispatch().sent == 0

        # When it runs once the retry is due, the same notification goes out, once
        assert h.dispatch(drain=True).sent == 1
        (notification,) = h.notification_lines()
        assert notification["notification_id"] == held.notification.notification_id
        assert notification["count"] == 2
        assert notifiers[0].attempts == Counter({notification["notification_id"]: 2})
        sent = h.matches.load_notification(notification["notification_id"])
        assert sent is not None and sent.status is NotificationStatus.SENT
        assert h.matches.unnotified() == []
        assert h.dispatch(drain=True).due == 0


def test_a_permanent_channel_failure_finishes_the_subtask_without_retrying(aws: LocalAws, tmp_path: Path) -> None:
    notifiers: list[FlakyNotifier] = []

    def gone(inner: Notifier) -> Notifier:
        notifiers.append(FlakyNotifier(inner, failures=None, permanent=True))
        return notifiers[0]

    with harness(aws, tmp_path, wrap_notifier=gone) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_rule(f.rule("acme", "errors", "ERROR"))
        event = f.kinesis_event([f.encode(f.logs_message(ACME, ["ERROR one"]))])

        h.fan_out(event)
        h.settle()

        assert h.invocations(PARSER) == 1
        assert not h.invoker.dead_letters
        assert h.notification_lines() == []
        ((notification_id, attempts),) = notifiers[0].attempts.items()
        assert attempts == 1
        failed = h.matches.load_notification(notification_id)
        assert failed is not None and failed.status is NotificationStatus.FAILED
        subtask = h.tracking.get_subtask(_batch_id(event), "acme#0000")
        assert subtask is not None and subtask.status is SubTaskStatus.FINISHED
        _assert_complete_once(h, _batch_id(event), total_tasks=1)


def test_the_parser_payload_is_the_json_the_fan_out_planned(aws: LocalAws, tmp_path: Path) -> None:
    """The duplicate tests resend recorded payloads; they must be complete parser events."""
    recorded: list[RecordingInvoker] = []

    def record(inner: FunctionInvoker) -> FunctionInvoker:
        recorded.append(RecordingInvoker(inner, PARSER))
        return recorded[0]

    with harness(aws, tmp_path, wrap_invoker=record) as h:
        _configure(h)
        event, _ = _event()
        h.fan_out(event)
        h.settle()

    payloads = sorted((json.loads(p) for p in recorded[0].payloads), key=lambda p: p["subtask_id"])
    assert [(p["subtask_id"], p["customer_id"], p["batch_id"]) for p in payloads] == [
        ("acme#0000", "acme", _batch_id(event)),
        ("globex#0000", "globex", _batch_id(event)),
    ]


def test_a_consolidator_invoke_that_fails_is_retried_with_the_parser(aws: LocalAws, tmp_path: Path) -> None:
    # Given Lambda refusing the consolidator invokes of the parser run that finishes the batch
    def refuse_consolidator(inner: FunctionInvoker) -> FunctionInvoker:
        return FlakyInvoker(inner, CONSOLIDATOR, failures=3)

    with harness(aws, tmp_path, wrap_invoker=refuse_consolidator) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_rule(f.rule("acme", "errors", "ERROR"))
        event = f.kinesis_event([f.encode(f.logs_message(ACME, ["ERROR one"]))])

        # When the parser raises (its bounded invoke retries ran out) and Lambda runs it again
        h.fan_out(event)
        h.settle()

        # Then the retry triggers the consolidator, and nothing else happens twice
        assert h.invocations(PARSER) == 2
        assert not h.invoker.dead_letters
        assert len(h.notification_lines()) == 1
        _assert_complete_once(h, _batch_id(event), total_tasks=1)


def test_a_consolidation_claim_that_failed_is_made_by_the_parser_retry(aws: LocalAws, tmp_path: Path) -> None:
    # Given DynamoDB throttling the claim that follows the batch's last finish
    def is_claim(request: dict[str, Any]) -> bool:
        return str(request.get("UpdateExpression", "")).startswith("SET consolidation_claimed_by")

    def throttle_claim(client: Any) -> Any:
        return ClientProxy(client, update_item=throttled(calls=1, when=is_claim))

    with harness(aws, tmp_path, wrap_dynamodb=throttle_claim) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_rule(f.rule("acme", "errors", "ERROR"))
        event = f.kinesis_event([f.encode(f.logs_message(ACME, ["ERROR one"]))])

        # When the parser raises after finishing its sub-task, and Lambda runs it again
        h.fan_out(event)
        h.settle()

        # Then the retry claims the consolidation and the batch completes
        assert h.invocations(PARSER) == 2
        assert not h.invoker.dead_letters
        assert len(h.notification_lines()) == 1
        _assert_complete_once(h, _batch_id(event), total_tasks=1)


def test_a_run_short_of_time_hands_the_rest_of_its_subtask_to_a_fresh_invocation(aws: LocalAws, tmp_path: Path) -> None:
    # Given parsers that match two events per slice and always believe their time is nearly up
    # (the reserve exceeds any invocation's time), so every part hands over after one slice
    messages = [f"ERROR {n}" if n % 2 == 0 else f"INFO {n}" for n in range(7)]
    events = [f.event(m) for m in messages]
    event = f.kinesis_event(
        [
            f.encode(f.logs_message(ACME, events=events[:4], log_stream="a")),
            f.encode(f.logs_message(ACME, events=events[4:], log_stream="b")),
        ]
    )
    overrides = {"slice_events": 2, "time_reserve_ms": 10**9}
    with harness(aws, tmp_path, parser_overrides=overrides) as h:
        _configure(h)

        # When the batch is fanned out
        h.fan_out(event)
        h.settle()

        # Then the sub-task ran in four parts, each one slice, and finished once with the totals
        assert h.invocations(PARSER) == 4
        assert h.metrics.snapshot()["SubTaskHandOvers"] == 3
        expected = {("acme", "errors", e["id"]) for e in events if e["message"].startswith("ERROR")}
        assert _match_keys(h) == Counter(expected)
        (subtask,) = h.tracking.list_subtasks(_batch_id(event))
        assert subtask.status is SubTaskStatus.FINISHED
        assert (subtask.matches, subtask.notified) == (4, 4)
        assert subtask.rule_stats["errors"].matches == 4
        _assert_complete_once(h, _batch_id(event), total_tasks=1)
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.summary is not None and batch.summary.matches == 4
        # and every match was notified exactly once, across the parts' alerts (the later parts'
        # alerts wait for the rule's digest window; the dispatcher's last run sends them)
        h.dispatch(drain=True)
        assert h.matches.unnotified() == []
        notified = [n for n in h.notification_lines() if n["customer_id"] == "acme"]
        assert sum(n["count"] for n in notified) == 4
        assert len({n["notification_id"] for n in notified}) == len(notified)
