"""Poison records to an SQS dead-letter queue (the `RejectSink` port on AWS)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import TransientStoreError
from pipeline.invoking import backoff_delay
from pipeline.models import PoisonRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["SEND_BATCH_LIMIT", "SqsRejectSink"]

IAM_ACTIONS = frozenset({"sqs:SendMessage"})
"""IAM actions this adapter's calls need (SendMessageBatch is authorised as SendMessage)."""

SEND_BATCH_LIMIT = 10
"""SendMessageBatch takes at most 10 messages."""
ATTEMPTS = 5


class SqsRejectSink:
    def __init__(self, client: SQSClient, queue_url: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._queue_url = queue_url
        self._sleep = sleep

    def reject(self, records: Sequence[PoisonRecord]) -> None:
        for start in range(0, len(records), SEND_BATCH_LIMIT):
            entries: list[Any] = [
                {"Id": str(i), "MessageBody": record.model_dump_json()}
                for i, record in enumerate(records[start : start + SEND_BATCH_LIMIT])
            ]
            for attempt in range(ATTEMPTS):
                try:
                    response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
                except (ClientError, BotoCoreError) as exc:
                    raise TransientStoreError(f"send poison records: {exc}") from exc
                failed = {entry["Id"] for entry in response.get("Failed", [])}
                entries = [entry for entry in entries if entry["Id"] in failed]
                if not entries:
                    break
                self._sleep(backoff_delay(attempt, 0.1))
            else:
                raise TransientStoreError(
                    f"send poison records: {len(entries)} still failing after {ATTEMPTS} attempts"
                )
