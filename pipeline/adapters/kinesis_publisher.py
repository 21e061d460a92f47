"""Put records into a Kinesis stream within PutRecords' limits, retrying the ones it refuses."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import LogfanError
from pipeline.invoking import backoff_delay

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

__all__ = [
    "MAX_RECORD_BYTES",
    "PUT_RECORDS_LIMIT",
    "PUT_RECORDS_MAX_BYTES",
    "KinesisPublisher",
    "OutgoingRecord",
    "SequenceRange",
]

IAM_ACTIONS = frozenset({"kinesis:PutRecords"})
"""IAM actions this adapter's calls need."""

PUT_RECORDS_LIMIT = 500
"""PutRecords takes at most 500 records per call..."""
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024
"""...and at most 5 MiB (data plus partition keys) per call."""
MAX_RECORD_BYTES = 1024 * 1024
"""One record's data plus partition key is at most 1 MiB."""
ATTEMPTS = 8


class PublishError(LogfanError):
    """Records the stream would not take."""


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    partition_key: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode())


@dataclass(frozen=True, slots=True)
class SequenceRange:
    """The first and last sequence number of a run of records in one shard (inclusive)."""

    first: str
    last: str

    def widened(self, sequence_number: str) -> SequenceRange:
        """This range stretched to hold `sequence_number` (sequence numbers compare as integers)."""
        number = int(sequence_number)
        return SequenceRange(
            first=sequence_number if number < int(self.first) else self.first,
            last=sequence_number if number > int(self.last) else self.last,
        )

    def __contains__(self, sequence_number: object) -> bool:
        return isinstance(sequence_number, str) and int(self.first) <= int(sequence_number) <= int(self.last)


def _calls(records: Sequence[OutgoingRecord]) -> Iterator[list[OutgoingRecord]]:
    call: list[OutgoingRecord] = []
    size = 0
    for record in records:
        if call and (len(call) == PUT_RECORDS_LIMIT or size + record.size > PUT_RECORDS_MAX_BYTES):
            yield call
            call, size = [], 0
        call.append(record)
        size += record.size
    if call:
        yield call


class KinesisPublisher:
    def __init__(self, client: KinesisClient, stream_name: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._stream = stream_name
        self._sleep = sleep
        self.published: dict[str, SequenceRange] = {}
        """Per shard, where the records this publisher put landed: a reader of a stream that holds
        older records too (a persistent local server) reads exactly these."""

    def publish(self, records: Sequence[OutgoingRecord]) -> int:
        """Put every record, in order per partition key; returns how many calls it took."""
        for record in records:
            if record.size > MAX_RECORD_BYTES:
                raise PublishError(f"a record of {record.size} bytes exceeds Kinesis' {MAX_RECORD_BYTES}-byte limit")
        calls = 0
        for call in _calls(records):
            pending = call
            for attempt in range(ATTEMPTS):
                entries: list[Any] = [{"Data": r.data, "PartitionKey": r.partition_key} for r in pending]
                try:
                    response = self._client.put_records(StreamName=self._stream, Records=entries)
                except (ClientError, BotoCoreError) as exc:
                    raise PublishError(f"put records: {exc}") from exc
                calls += 1
                results = response["Records"]
                for result in results:
                    if "ErrorCode" not in result:
                        self._note(result["ShardId"], result["SequenceNumber"])
                pending = [r for r, result in zip(pending, results, strict=True) if "ErrorCode" in result]
                if not pending:
                    break
                self._sleep(backoff_delay(attempt, 0.1))
            else:
                raise PublishError(f"put records: {len(pending)} record(s) still refused after {ATTEMPTS} attempts")
        return calls

    def _note(self, shard_id: str, sequence_number: str) -> None:
        known = self.published.get(shard_id)
        self.published[shard_id] = (
            SequenceRange(sequence_number, sequence_number) if known is None else known.widened(sequence_number)
        )
