"""Re-read a batch's records from the Kinesis stream (for the sweeper's re-drives)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import StoreError
from pipeline.fanout import KinesisRecordRef

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

__all__ = ["IAM_ACTIONS", "KinesisStreamReader"]

IAM_ACTIONS = frozenset({"kinesis:GetShardIterator", "kinesis:GetRecords"})
"""IAM actions this adapter's calls need."""

GET_RECORDS_LIMIT = 10_000
"""GetRecords returns at most 10,000 records per call."""
MAX_CALLS = 50


class KinesisStreamReader:
    def __init__(self, client: KinesisClient, stream_name: str) -> None:
        self._client = client
        self._stream = stream_name

    def read_range(self, shard_id: str, first_sequence: str, last_sequence: str) -> list[KinesisRecordRef]:
        """The records from `first_sequence` to `last_sequence` of one shard, as Lambda delivered them.

        Empty when they have aged out of the stream's retention.
        """
        last = int(last_sequence)
        try:
            iterator = self._client.get_shard_iterator(
                StreamName=self._stream,
                ShardId=shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                StartingSequenceNumber=first_sequence,
            ).get("ShardIterator")
            records: list[KinesisRecordRef] = []
            for _ in range(MAX_CALLS):
                if not iterator:
                    break
                response = self._client.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
                for record in response["Records"]:
                    sequence = record["SequenceNumber"]
                    if int(sequence) > last:
                        return records
                    records.append(
                        KinesisRecordRef(
                            event_id=f"{shard_id}:{sequence}",
                            shard_id=shard_id,
                            sequence_number=sequence,
                            data=base64.b64encode(record["Data"]).decode(),
                        )
                    )
                if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = response.get("NextShardIterator")
            return records
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("InvalidArgumentException", "ResourceNotFoundException"):
                return []
            raise StoreError(f"read stream: {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"read stream: {exc}") from exc
