"""The local runtime on moto: the Kinesis publisher, the event source mapping, the async invoker."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest

from pipeline.adapters.kinesis_publisher import PUT_RECORDS_LIMIT, KinesisPublisher, OutgoingRecord
from pipeline.errors import InvokeError
from pipeline.local.aws import LocalAws
from pipeline.local.kinesis import DiscardedRecords, EventSourceMapping
from pipeline.local.lambda_runtime import DeadLetter, LocalAsyncInvoker
from tests.faults import ClientProxy, failed_entries

SHARD = "shardId-000000000000"


def _publish(aws: LocalAws, count: int) -> list[str]:
    """Put `count` numbered records; returns their sequence numbers in stream order."""
    KinesisPublisher(aws.kinesis, aws.names.stream).publish(
        [OutgoingRecord("key", str(index).encode()) for index in range(count)]
    )
    return [record.sequence_number for record in _mapping(aws, lambda e, c: None).read_shard(SHARD)]


def _mapping(aws: LocalAws, handler: Any, *, batch_size: int = 4, max_retry_attempts: int = 2) -> EventSourceMapping:
    return EventSourceMapping(
        kinesis=aws.kinesis,
        stream_name=aws.names.stream,
        stream_arn=aws.stream_arn,
        handler=handler,
        function_name=aws.names.fan_out_function,
        batch_size=batch_size,
        max_retry_attempts=max_retry_attempts,
    )


class RecordingHandler:
    """A fan-out stand-in: remembers each delivered batch and fails as told."""

    def __init__(self, fail: Any = None) -> None:
        self.batches: list[list[str]] = []
        self.data: list[str] = []
        self._fail = fail

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        sequence_numbers = [record["kinesis"]["sequenceNumber"] for record in event["Records"]]
        self.batches.append(sequence_numbers)
        self.data.extend(base64.b64decode(record["kinesis"]["data"]).decode() for record in event["Records"])
        failed = self._fail(sequence_numbers) if self._fail else []
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in failed]}

    @property
    def first_sequence_numbers(self) -> list[str]:
        return [batch[0] for batch in self.batches]


def test_the_publisher_puts_at_most_500_records_a_call_and_the_stream_keeps_them_in_order(aws: LocalAws) -> None:
    proxy: Any = ClientProxy(aws.kinesis)
    records = [OutgoingRecord(f"key-{index % 7}", f"record {index}".encode()) for index in range(1200)]

    calls = KinesisPublisher(proxy, aws.names.stream).publish(records)

    sizes = [len(request["Records"]) for request in proxy.requests("put_records")]
    assert calls == 3 and sizes == [500, 500, 200]
    assert max(sizes) <= PUT_RECORDS_LIMIT
    stored = _mapping(aws, lambda e, c: None).read_shard(SHARD)
    assert [record.data for record in stored] == [record.data for record in records]


def test_a_mapping_given_the_published_ranges_delivers_only_those_records(aws: LocalAws) -> None:
    # Given a stream holding an earlier run's records, then this run's, published by its own publisher
    _publish(aws, 3)
    publisher = KinesisPublisher(aws.kinesis, aws.names.stream)
    publisher.publish([OutgoingRecord("key", f"new {index}".encode()) for index in range(5)])
    handler = RecordingHandler()

    # When a mapping is given the ranges that publisher put
    mapping = _mapping(aws, handler)
    mapping.ranges = publisher.published
    mapping.drain()

    # Then only this run's records are delivered, in order
    assert list(publisher.published) == [SHARD]
    assert handler.data == [f"new {index}" for index in range(5)]
    assert mapping.delivered_records == 5


def test_a_reported_item_failure_is_redelivered_starting_exactly_at_that_record(aws: LocalAws) -> None:
    # Given 10 records delivered 4 at a time, and a handler failing record 6 the first time only
    sequence = _publish(aws, 10)
    failed_once: list[str] = []

    def fail_record_6_once(batch: list[str]) -> list[str]:
        if sequence[6] in batch and not failed_once:
            failed_once.append(sequence[6])
            return [sequence[6]]
        return []

    handler = RecordingHandler(fail_record_6_once)
    mapping = _mapping(aws, handler)

    # When
    mapping.drain()

    # Then records 0-5 are not delivered again; the retry starts at record 6
    assert handler.first_sequence_numbers == [sequence[0], sequence[4], sequence[6]]
    assert handler.data == [str(i) for i in range(8)] + [str(i) for i in range(6, 10)]
    assert mapping.discarded == []
    assert mapping.delivered_records == 10


def test_a_batch_that_always_fails_is_discarded_after_the_retry_limit_and_the_shard_moves_on(
    aws: LocalAws,
) -> None:
    # Given a handler that raises whenever record 5 is in its batch
    sequence = _publish(aws, 10)

    def crash_on_record_5(batch: list[str]) -> list[str]:
        if sequence[5] in batch:
            raise RuntimeError("boom")
        return []

    handler = RecordingHandler(crash_on_record_5)
    mapping = _mapping(aws, handler, max_retry_attempts=2)

    # When
    mapping.drain()

    # Then the batch went out once plus twice more, then to the on-failure destination
    assert handler.first_sequence_numbers == [sequence[0], sequence[4], sequence[4], sequence[4], sequence[8]]
    assert mapping.discarded == [
        DiscardedRecords(SHARD, sequence[4:8], "retry attempts exhausted (2)"),
    ]
    assert handler.batches[-1] == sequence[8:10]


def _invoker(handler: Any, **kwargs: Any) -> LocalAsyncInvoker:
    return LocalAsyncInvoker(handlers={"logfan-parser": handler}, workers=2, retry_delay_s=0.0, **kwargs).start()


def test_a_failing_async_invocation_is_retried_twice_then_dead_lettered() -> None:
    invoked: list[tuple[dict[str, Any], str]] = []

    def always_fails(event: dict[str, Any], context: Any) -> None:
        invoked.append((event, context.aws_request_id))
        raise RuntimeError("parser crashed")

    invoker = _invoker(always_fails)
    try:
        invoker.invoke_async("logfan-parser", json.dumps({"batch_id": "b-1"}).encode())
        assert invoker.wait_idle(timeout_s=30)
    finally:
        invoker.stop()

    assert invoker.invocations == {"logfan-parser": 3}
    assert len(invoked) == 3
    assert len({request_id for _, request_id in invoked}) == 1  # Lambda keeps the request id across retries
    assert invoker.dead_letters == [
        DeadLetter("logfan-parser", {"batch_id": "b-1"}, "RuntimeError('parser crashed')", attempts=3)
    ]


def test_an_async_invocation_that_recovers_on_a_retry_is_not_dead_lettered() -> None:
    invoked: list[tuple[dict[str, Any], str]] = []
    lock = threading.Lock()

    def fails_twice(event: dict[str, Any], context: Any) -> None:
        with lock:
            invoked.append((event, context.aws_request_id))
            if len(invoked) <= 2:
                raise RuntimeError("transient")

    invoker = _invoker(fails_twice)
    try:
        invoker.invoke_async("logfan-parser", b'{"n": 1}')
        assert invoker.wait_idle(timeout_s=30)
    finally:
        invoker.stop()

    assert invoker.invocations == {"logfan-parser": 3}
    assert invoker.dead_letters == []


def test_the_async_invoker_refuses_an_oversized_payload_and_an_unknown_function() -> None:
    invoker = _invoker(lambda event, context: None, max_payload_bytes=4096)
    try:
        with pytest.raises(InvokeError, match="RequestEntityTooLarge"):
            invoker.invoke_async("logfan-parser", json.dumps({"pad": "x" * 4096}).encode())
        with pytest.raises(InvokeError, match="function not found"):
            invoker.invoke_async("logfan-nope", b"{}")
        invoker.invoke_async("logfan-parser", json.dumps({"pad": "x" * 4000}).encode())
        assert invoker.wait_idle(timeout_s=30)
    finally:
        invoker.stop()

    assert invoker.invocations == {"logfan-parser": 1}


def test_the_publisher_resends_only_the_records_the_stream_refused(aws: LocalAws) -> None:
    # Given a stream that throttles 200 of the first call's 500 records
    proxy: Any = ClientProxy(aws.kinesis, put_records=failed_entries(calls=1, keep=300))
    records = [OutgoingRecord("key", f"record {index}".encode()) for index in range(600)]

    # When
    KinesisPublisher(proxy, aws.names.stream, sleep=lambda _: None).publish(records)

    # Then
    assert [len(request["Records"]) for request in proxy.requests("put_records")] == [500, 200, 100]
    stored = _mapping(aws, lambda e, c: None).read_shard(SHARD)
    assert [record.data for record in stored] == [record.data for record in records]
