"""SqsRejectSink on moto: poison records into the dead-letter queue, within SendMessageBatch's limits."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.adapters.sqs_rejects import ATTEMPTS, SEND_BATCH_LIMIT, SqsRejectSink
from pipeline.errors import TransientStoreError
from pipeline.local.aws import LocalAws
from pipeline.models import PoisonRecord
from tests.faults import ClientProxy, failed_entries


def _poison(count: int) -> list[PoisonRecord]:
    return [
        PoisonRecord(
            event_id=f"shardId-000000000000:{index}",
            sequence_number=str(index),
            shard_id="shardId-000000000000",
            reason="not gzip: missing gzip magic bytes",
            data_prefix="bm90IGd6aXA=",
            batch_id="b-1",
        )
        for index in range(count)
    ]


def _queued(aws: LocalAws) -> list[PoisonRecord]:
    received: list[PoisonRecord] = []
    while messages := aws.sqs.receive_message(QueueUrl=aws.poison_queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        received.extend(PoisonRecord.model_validate_json(message["Body"]) for message in messages)
    return received


def _sizes(proxy: ClientProxy) -> list[int]:
    return [len(request["Entries"]) for request in proxy.requests("send_message_batch")]


def test_every_poison_record_reaches_the_queue_in_batches_of_at_most_10(aws: LocalAws) -> None:
    proxy: Any = ClientProxy(aws.sqs)
    records = _poison(23)

    SqsRejectSink(proxy, aws.poison_queue_url, sleep=lambda _: None).reject(records)

    assert _sizes(proxy) == [10, 10, 3]
    assert max(_sizes(proxy)) <= SEND_BATCH_LIMIT
    assert sorted(_queued(aws), key=lambda r: int(r.sequence_number)) == records


def test_entries_the_queue_refused_are_sent_again_and_only_they(aws: LocalAws) -> None:
    proxy: Any = ClientProxy(aws.sqs, send_message_batch=failed_entries(calls=1, keep=4))
    records = _poison(13)

    SqsRejectSink(proxy, aws.poison_queue_url, sleep=lambda _: None).reject(records)

    assert _sizes(proxy) == [10, 6, 3]
    assert sorted(_queued(aws), key=lambda r: int(r.sequence_number)) == records


def test_a_queue_that_keeps_refusing_raises_a_transient_error(aws: LocalAws) -> None:
    proxy: Any = ClientProxy(aws.sqs, send_message_batch=failed_entries(calls=ATTEMPTS, keep=0))

    with pytest.raises(TransientStoreError, match="still failing"):
        SqsRejectSink(proxy, aws.poison_queue_url, sleep=lambda _: None).reject(_poison(2))

    assert len(proxy.requests("send_message_batch")) == ATTEMPTS
