"""The fan-out handler as Lambda calls it, wired to moto and the local async invoker."""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.adapters.kinesis_publisher import KinesisPublisher, OutgoingRecord
from pipeline.errors import TimeBudgetError
from pipeline.handlers import fan_out, sweeper
from pipeline.local.aws import LocalAws
from pipeline.local.kinesis import EventSourceMapping
from pipeline.local.lambda_runtime import LocalLambdaContext
from pipeline.models import BatchStatus, SubTaskPayload, SubTaskStatus
from pipeline.ports import FunctionInvoker
from pipeline.routing import compute_batch_id, encode_payload
from tests import factories as f
from tests.faults import FlakyInvoker, FlakyRejectSink, RecordingInvoker
from tests.harness import Harness, harness, lambda_context

ACME, GLOBEX, STRANGER = "111122223333", "777788889999", "999900001111"
PARSER = "logfan-parser"
CONSOLIDATOR = "logfan-consolidator"

POISON = {
    "invalid base64": "!!! this is not base64 !!!",
    "not gzip": base64.b64encode(b'{"messageType": "DATA_MESSAGE"}').decode(),
    "truncated gzip": base64.b64encode(gzip.compress(json.dumps(f.logs_message(ACME, ["x"])).encode())[:-12]).decode(),
    "not JSON": f.encode(b"owner=111122223333 this is not json {"),
    "logGroup": f.encode({"messageType": "DATA_MESSAGE", "owner": ACME}),
}
"""Each kind of record that can never decode, by a word its rejection reason must contain."""


def _configure(h: Harness) -> None:
    h.config.put_customer(f.customer("acme", [ACME]))
    h.config.put_customer(f.customer("globex", [GLOBEX]))
    h.config.put_rule(f.rule("acme", "errors", "ERROR"))
    h.config.put_rule(f.rule("globex", "panics", "panic"))


def _sequence_numbers(event: dict[str, Any]) -> list[str]:
    return [record["kinesis"]["sequenceNumber"] for record in event["Records"]]


def _batch_id(event: dict[str, Any]) -> str:
    return compute_batch_id(record["eventID"] for record in event["Records"])


def _match_keys(h: Harness) -> Counter[tuple[str, str, str]]:
    return Counter((m.customer_id, m.rule_id, m.event_id) for m in h.matches.iter_matches())


def _two_customers() -> tuple[dict[str, Any], set[tuple[str, str, str]]]:
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


def test_a_mixed_batch_fans_out_sets_poison_aside_and_completes(aws: LocalAws, tmp_path: Path) -> None:
    # Given two customers' records, an unclaimed owner, a control message and every poison kind
    with harness(aws, tmp_path) as h:
        _configure(h)
        acme = [f.event("ERROR payment declined"), f.event("INFO ok"), f.event("ERROR db timeout")]
        globex = [f.event("kernel panic: out of memory")]
        datas = [
            f.encode(f.logs_message(ACME, events=acme)),
            POISON["invalid base64"],
            f.encode(f.logs_message(STRANGER, ["ERROR not ours", "ERROR nor this"])),
            POISON["not gzip"],
            f.encode(f.control_message()),
            POISON["truncated gzip"],
            f.encode(f.logs_message(GLOBEX, events=globex)),
            POISON["not JSON"],
            POISON["logGroup"],
        ]
        event = f.kinesis_event(datas)
        poison_kind = {data: kind for kind, data in POISON.items()}
        expected_rejects = {
            seq: poison_kind[data]
            for seq, data in zip(_sequence_numbers(event), datas, strict=True)
            if data in poison_kind
        }

        # When
        response = h.fan_out(event)
        planned = h.tracking.get_batch(_batch_id(event))
        h.settle()

        # Then nothing comes back to Kinesis: poison never blocks the shard
        assert response == {"batchItemFailures": []}
        rejected = {r["sequence_number"]: r for r in h.rejected_lines()}
        assert len(h.rejected_lines()) == len(rejected) == 5
        assert rejected.keys() == expected_rejects.keys()
        for sequence_number, kind in expected_rejects.items():
            assert kind in rejected[sequence_number]["reason"], (kind, rejected[sequence_number]["reason"])
            assert rejected[sequence_number]["data_prefix"] == POISON[kind][:120]
        metrics = h.metrics.snapshot()
        assert (metrics["PoisonRecords"], metrics["ControlRecords"], metrics["UnclaimedEvents"]) == (5, 1, 2)
        assert planned is not None and planned.total_tasks == 2
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE and batch.summary is not None
        assert batch.summary.matches_by_rule == {"acme/errors": 2, "globex/panics": 1}
        assert (batch.summary.rejected_records, batch.summary.control_records, batch.summary.unclaimed_events) == (
            5,
            1,
            2,
        )
        assert _match_keys(h) == Counter(
            {
                ("acme", "errors", acme[0]["id"]): 1,
                ("acme", "errors", acme[2]["id"]): 1,
                ("globex", "panics", globex[0]["id"]): 1,
            }
        )
        assert len({n["notification_id"] for n in h.notification_lines()}) == len(h.notification_lines()) == 2


def test_a_batch_with_nothing_to_parse_still_completes(aws: LocalAws, tmp_path: Path) -> None:
    with harness(aws, tmp_path) as h:
        _configure(h)
        event = f.kinesis_event(
            [POISON["not gzip"], f.encode(f.control_message()), f.encode(f.logs_message(STRANGER, ["ERROR x"]))]
        )

        response = h.fan_out(event)
        h.settle()

        assert response == {"batchItemFailures": []}
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE and batch.summary is not None
        assert (batch.total_tasks, batch.summary.rejected_records, batch.summary.unclaimed_events) == (0, 1, 1)
        assert (h.invocations(PARSER), h.invocations(CONSOLIDATOR)) == (0, 1)
        assert list(h.matches.iter_matches()) == []


def test_a_retried_kinesis_batch_resumes_without_repeating_work(aws: LocalAws, tmp_path: Path) -> None:
    with harness(aws, tmp_path) as h:
        _configure(h)
        event, expected = _two_customers()
        h.fan_out(event)
        h.settle()
        notifications = h.notification_lines()

        # When Kinesis delivers the very same batch again (the first response was lost)
        response = h.fan_out(event)
        h.settle()

        # Then
        assert response == {"batchItemFailures": []}
        assert len(h.tracking.list_subtasks(_batch_id(event))) == 2
        assert h.invocations(PARSER) == 2
        assert _match_keys(h) == Counter(expected)
        assert h.notification_lines() == notifications
        assert h.invocations(CONSOLIDATOR) == 1
        assert h.metrics.snapshot()["BatchesCompleted"] == 1
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE and batch.finished_tasks == 2


def test_a_batch_retried_while_its_parsers_still_run_completes_once(aws: LocalAws, tmp_path: Path) -> None:
    # Given the fan-out timed out after invoking, so Kinesis retries before the parsers are done
    with harness(aws, tmp_path) as h:
        _configure(h)
        event, expected = _two_customers()

        h.fan_out(event)
        h.fan_out(event)
        h.settle()

        assert _match_keys(h) == Counter(expected)
        assert Counter(n["notification_id"] for n in h.notification_lines()).most_common(1)[0][1] == 1
        assert len(h.notification_lines()) == 2
        assert h.invocations(CONSOLIDATOR) == 1
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE and batch.finished_tasks == 2


def _recording_into(recorded: list[RecordingInvoker]) -> Callable[[FunctionInvoker], FunctionInvoker]:
    """Wraps the invoker so the test sees every parser payload the fan-out sends."""

    def record(inner: FunctionInvoker) -> FunctionInvoker:
        recorded.append(RecordingInvoker(inner, PARSER))
        return recorded[0]

    return record


def test_events_over_the_payload_limit_are_chunked_and_every_chunk_is_invoked(aws: LocalAws, tmp_path: Path) -> None:
    # Given an 8 KiB async payload limit (enforced by the local invoker too) and 300 events
    recorded: list[RecordingInvoker] = []
    record = _recording_into(recorded)

    with harness(aws, tmp_path, max_invoke_payload_bytes=8192, wrap_invoker=record) as h:
        _configure(h)
        events = [
            f.event(f"ERROR request {i} failed" if i % 10 == 0 else f"INFO request {i} served in {i % 97} ms")
            for i in range(300)
        ]
        event = f.kinesis_event(
            [f.encode(f.logs_message(ACME, events=events[start : start + 100])) for start in range(0, 300, 100)]
        )

        # When
        response = h.fan_out(event)
        h.settle()

        # Then
        assert response == {"batchItemFailures": []}
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE and batch.summary is not None
        assert batch.total_tasks >= 4
        assert h.invocations(PARSER) == batch.total_tasks
        assert not h.invoker.dead_letters
        assert max(len(payload) for payload in recorded[0].payloads) <= 8192
        assert sum(len(s["events"]) for p in recorded[0].payloads for s in json.loads(p)["streams"]) == 300
        assert {s.status for s in h.tracking.list_subtasks(batch.batch_id)} == {SubTaskStatus.FINISHED}
        assert _match_keys(h) == Counter({("acme", "errors", e["id"]): 1 for e in events[::10]})
        h.dispatch(drain=True)  # the chunks' later alerts wait for the rule's digest window
        assert sum(n["count"] for n in h.notification_lines()) == 30


def _as_cloudwatch_writes_it(document: dict[str, Any]) -> str:
    """A record's data as CloudWatch Logs writes it: compact JSON, UTF-8 as is, `logEvents` last."""
    return f.encode(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())


def test_records_as_cloudwatch_logs_writes_them_reach_the_parser_as_the_payload_encoder_writes_them(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given compact records (their events then travel as the very bytes the records hold), with characters
    # JSON escapes and wide ones, more than one 8 KiB payload can carry
    recorded: list[RecordingInvoker] = []
    record = _recording_into(recorded)

    with harness(aws, tmp_path, max_invoke_payload_bytes=8192, wrap_invoker=record) as h:
        _configure(h)
        events = [
            f.event(f'{"ERROR" if i % 10 == 0 else "INFO"} req {i} "quoted" \\ tab\t \x1b[0m é 😀 /path\n')
            for i in range(120)
        ]
        event = f.kinesis_event(
            [_as_cloudwatch_writes_it(f.logs_message(ACME, events=events[start : start + 40])) for start in (0, 40, 80)]
        )

        # When
        response = h.fan_out(event)
        h.settle()

        # Then every payload sent is byte for byte what the encoder writes for it, within the limit
        assert response == {"batchItemFailures": []}
        sent = recorded[0].payloads
        payloads = [SubTaskPayload.model_validate_json(payload) for payload in sent]
        assert len(payloads) >= 2
        assert [encode_payload(payload) for payload in payloads] == sent
        assert max(len(payload) for payload in sent) <= 8192
        # And the parser gets every event once, in order, and matches them
        in_order = sorted(payloads, key=lambda payload: payload.subtask_id)
        assert [e.model_dump() for p in in_order for s in p.streams for e in s.events] == events
        assert _match_keys(h) == Counter({("acme", "errors", e["id"]): 1 for e in events[::10]})
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE


def test_a_parser_invoke_that_keeps_failing_sends_its_records_back_to_kinesis(aws: LocalAws, tmp_path: Path) -> None:
    # Given Lambda refusing every invoke of globex's sub-task
    invokers: list[FlakyInvoker] = []

    def refuse_globex(inner: FunctionInvoker) -> FunctionInvoker:
        invokers.append(FlakyInvoker(inner, PARSER, failures=None, when=lambda p: p["customer_id"] == "globex"))
        return invokers[0]

    with harness(aws, tmp_path, wrap_invoker=refuse_globex) as h:
        _configure(h)
        event, expected = _two_customers()
        acme_sequence, globex_sequence = _sequence_numbers(event)

        # When
        response = h.fan_out(event)
        h.settle()

        # Then only globex's record comes back; its sub-task stays pending for the sweeper (an
        # earlier delivery might have started it), so the batch is not complete yet
        assert response == {"batchItemFailures": [{"itemIdentifier": globex_sequence}]}
        assert invokers[0].refused == 3  # every attempt of the fan-out's bounded retry
        subtasks = {s.subtask_id: s.status for s in h.tracking.list_subtasks(_batch_id(event))}
        assert subtasks == {"acme#0000": SubTaskStatus.FINISHED, "globex#0000": SubTaskStatus.PENDING}
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.OPEN
        assert _match_keys(h) == Counter({key: 1 for key in expected if key[0] == "acme"})
        assert h.metrics.snapshot()["InvokeFailures"] == 1
        assert acme_sequence not in str(response)


def test_a_parser_invoke_that_fails_twice_then_succeeds_reports_nothing(aws: LocalAws, tmp_path: Path) -> None:
    invokers: list[FlakyInvoker] = []

    def flaky(inner: FunctionInvoker) -> FunctionInvoker:
        invokers.append(FlakyInvoker(inner, PARSER, failures=2, when=lambda p: p["customer_id"] == "globex"))
        return invokers[0]

    with harness(aws, tmp_path, wrap_invoker=flaky) as h:
        _configure(h)
        event, expected = _two_customers()

        response = h.fan_out(event)
        h.settle()

        assert response == {"batchItemFailures": []}
        assert invokers[0].refused == 2
        assert {s.status for s in h.tracking.list_subtasks(_batch_id(event))} == {SubTaskStatus.FINISHED}
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE and batch.summary is not None
        assert batch.summary.abandoned_tasks == 0
        assert _match_keys(h) == Counter(expected)


def test_records_sent_back_are_redelivered_by_the_mapping_and_matched_once(aws: LocalAws, tmp_path: Path) -> None:
    # Given the stream holds acme, globex and acme records, and globex's first invokes are refused
    def refuse_globex_once(inner: FunctionInvoker) -> FunctionInvoker:
        return FlakyInvoker(inner, PARSER, failures=3, when=lambda p: p["customer_id"] == "globex")

    with harness(aws, tmp_path, wrap_invoker=refuse_globex_once) as h:
        _configure(h)
        first, second = [f.event("ERROR one")], [f.event("ERROR two"), f.event("fine")]
        globex = [f.event("kernel panic")]
        KinesisPublisher(aws.kinesis, aws.names.stream).publish(
            [
                OutgoingRecord(ACME, gzip.compress(json.dumps(f.logs_message(ACME, events=first)).encode())),
                OutgoingRecord(GLOBEX, gzip.compress(json.dumps(f.logs_message(GLOBEX, events=globex)).encode())),
                OutgoingRecord(ACME, gzip.compress(json.dumps(f.logs_message(ACME, events=second)).encode())),
            ]
        )
        mapping = EventSourceMapping(
            kinesis=aws.kinesis,
            stream_name=aws.names.stream,
            stream_arn=aws.stream_arn,
            handler=fan_out.handler,
            function_name=aws.names.fan_out_function,
        )

        # When the mapping delivers, honouring the fan-out's batchItemFailures, and the scheduled
        # sweeper later re-drives the sub-task the first delivery could not invoke
        mapping.drain()
        h.settle()
        assert {b.status for b in h.tracking.iter_batches()} == {BatchStatus.OPEN, BatchStatus.COMPLETE}
        swept = sweeper.handler({}, lambda_context(aws.names.sweeper_function))
        h.settle()

        # Then the retry (globex and the acme record after it) is a second batch; both complete,
        # and the re-driven sub-task finds its matches already notified by the second batch
        assert swept["redriven"] == 1
        assert mapping.invocations == 2 and mapping.discarded == []
        batches = list(h.tracking.iter_batches())
        assert len(batches) == 2 and {b.status for b in batches} == {BatchStatus.COMPLETE}
        assert _match_keys(h) == Counter(
            {
                ("acme", "errors", first[0]["id"]): 1,
                ("acme", "errors", second[0]["id"]): 1,
                ("globex", "panics", globex[0]["id"]): 1,
            }
        )
        notified = Counter(n["customer_id"] for n in h.notification_lines())
        assert notified == Counter({"acme": 1, "globex": 1})
        assert sum(n["count"] for n in h.notification_lines()) == 3


def test_poison_that_cannot_be_set_aside_goes_back_to_kinesis(aws: LocalAws, tmp_path: Path) -> None:
    # Given a dead-letter queue that is unreachable once
    with harness(aws, tmp_path, wrap_rejects=lambda inner: FlakyRejectSink(inner, failures=1)) as h:
        _configure(h)
        line = f.event("ERROR x")
        event = f.kinesis_event([f.encode(f.logs_message(ACME, events=[line])), POISON["not gzip"]])
        _, poison = _sequence_numbers(event)

        # When the fan-out runs, then gets the poison record again (Kinesis retries from it)
        first = h.fan_out(event)
        second = h.fan_out({"Records": event["Records"][1:]})
        h.settle()

        # Then only the poison record came back, and the retry set it aside
        assert first == {"batchItemFailures": [{"itemIdentifier": poison}]}
        assert second == {"batchItemFailures": []}
        assert [r["sequence_number"] for r in h.rejected_lines()] == [poison]
        assert _match_keys(h) == Counter({("acme", "errors", line["id"]): 1})


def test_an_event_too_large_for_any_payload_is_set_aside_and_the_rest_parsed(aws: LocalAws, tmp_path: Path) -> None:
    with harness(aws, tmp_path, max_invoke_payload_bytes=8192) as h:
        _configure(h)
        huge, small = f.event("ERROR " + "x" * 9000), f.event("ERROR small")
        event = f.kinesis_event([f.encode(f.logs_message(ACME, events=[huge, small]))])

        response = h.fan_out(event)
        h.settle()

        assert response == {"batchItemFailures": []}
        (rejected,) = h.rejected_lines()
        assert huge["id"] in rejected["reason"] and "8192-byte invoke payload budget" in rejected["reason"]
        assert rejected["sequence_number"] == _sequence_numbers(event)[0]
        assert _match_keys(h) == Counter({("acme", "errors", small["id"]): 1})
        batch = h.tracking.get_batch(_batch_id(event))
        assert batch is not None and batch.status is BatchStatus.COMPLETE


def test_a_batch_that_leaves_too_little_time_is_handed_back_before_anything_is_recorded(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given a fan-out invocation with less time left than the reserve
    with harness(aws, tmp_path) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        event = f.kinesis_event([f.encode(f.logs_message(ACME, ["ERROR boom"]))])
        context = LocalLambdaContext("logfan-fan-out", timeout_s=5)  # the reserve is 10 s

        # When the handler runs, Then it fails so the event source mapping retries (and bisects)
        with pytest.raises(TimeBudgetError):
            fan_out.handler(event, cast(LambdaContext, context))

        # and nothing was recorded or invoked
        assert list(h.tracking.iter_batches()) == []
        assert h.invocations("logfan-parser") == 0
        assert h.metrics.snapshot()["TimeBudgetExceeded"] == 1
