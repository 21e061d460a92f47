"""A Kinesis event source mapping, as Lambda runs one, over the (moto) stream.

For each shard it reads records in order, cuts them into batches (`batch_size` records, at most
6 MB of data, as the real mapping does), calls the handler with a Lambda-shaped Kinesis event and
honours `batchItemFailures`: the batch is retried from the lowest failed sequence number. After
`max_retry_attempts` the records go to the on-failure destination and the shard moves on.

On a stream that outlives one replay (a persistent local server) the mapping is given the sequence
ranges the replay published and delivers only those, as a mapping created at that point would.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.adapters.kinesis_publisher import SequenceRange
from pipeline.local.chaos import Chaos
from pipeline.local.lambda_runtime import Handler, LocalLambdaContext

__all__ = ["DiscardedRecords", "EventSourceMapping", "StreamRecord"]

_log = logging.getLogger("logfan.local")

MAX_EVENT_BYTES = 6 * 1024 * 1024
"""A Lambda invocation payload (the Kinesis event) is at most 6 MB."""


@dataclass(frozen=True, slots=True)
class StreamRecord:
    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: float


@dataclass(frozen=True, slots=True)
class DiscardedRecords:
    """Records the mapping gave up on (its on-failure destination)."""

    shard_id: str
    sequence_numbers: list[str]
    reason: str


@dataclass
class EventSourceMapping:
    kinesis: Any
    stream_name: str
    stream_arn: str
    handler: Handler
    function_name: str
    batch_size: int = 100
    max_retry_attempts: int = 5
    timeout_s: float = 120.0
    region: str = "us-east-1"
    on_progress: Callable[[int], None] | None = None
    chaos: Chaos | None = None
    """Redelivers some batches the function already processed, as Kinesis may."""
    ranges: Mapping[str, SequenceRange] | None = None
    """Per shard, the only records to deliver (other shards are skipped); None: every record of every
    shard from TRIM_HORIZON, for a stream created for this run."""
    discarded: list[DiscardedRecords] = field(default_factory=list)
    invocations: int = 0
    delivered_records: int = 0

    def _iterator(self, shard_id: str) -> str:
        wanted = self.ranges.get(shard_id) if self.ranges is not None else None
        position: dict[str, str] = (
            {"ShardIteratorType": "TRIM_HORIZON"}
            if wanted is None
            else {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": wanted.first}
        )
        return str(
            self.kinesis.get_shard_iterator(StreamName=self.stream_name, ShardId=shard_id, **position)["ShardIterator"]
        )

    def read_shard(self, shard_id: str) -> list[StreamRecord]:
        """Every record currently in the shard (or in its range, when given), oldest first."""
        wanted = self.ranges.get(shard_id) if self.ranges is not None else None
        iterator: str | None = self._iterator(shard_id)
        records: list[StreamRecord] = []
        while iterator:
            response = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in response["Records"]:
                if wanted is not None and int(record["SequenceNumber"]) > int(wanted.last):
                    return records
                records.append(
                    StreamRecord(
                        shard_id=shard_id,
                        sequence_number=record["SequenceNumber"],
                        partition_key=record["PartitionKey"],
                        data=record["Data"],
                        arrival=record["ApproximateArrivalTimestamp"].timestamp(),
                    )
                )
            if not response["Records"] or response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
        return records

    def _event(self, batch: list[StreamRecord]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": record.partition_key,
                        "sequenceNumber": record.sequence_number,
                        "data": base64.b64encode(record.data).decode(),
                        "approximateArrivalTimestamp": record.arrival,
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{record.shard_id}:{record.sequence_number}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": f"arn:aws:iam::123456789012:role/{self.function_name}",
                    "awsRegion": self.region,
                    "eventSourceARN": self.stream_arn,
                }
                for record in batch
            ]
        }

    def _next_batch(self, records: list[StreamRecord], start: int) -> list[StreamRecord]:
        batch: list[StreamRecord] = []
        size = 0
        for record in records[start : start + self.batch_size]:
            encoded = 4 * ((len(record.data) + 2) // 3) + 400
            if batch and size + encoded > MAX_EVENT_BYTES:
                break
            batch.append(record)
            size += encoded
        return batch

    def _invoke(self, batch: list[StreamRecord]) -> list[str] | None:
        """Call the handler; None means success, a list the failed sequence numbers (all on error)."""
        self.invocations += 1
        try:
            response = self.handler(self._event(batch), LocalLambdaContext(self.function_name, self.timeout_s))
        except Exception as exc:
            _log.warning("fan-out failed; the mapping retries the batch", extra={"error": repr(exc)})
            return [record.sequence_number for record in batch]
        failures = (response or {}).get("batchItemFailures") or []
        return [str(failure["itemIdentifier"]) for failure in failures] or None

    def drain_shard(self, shard_id: str) -> None:
        records = self.read_shard(shard_id)
        position = 0
        attempts: dict[int, int] = {}
        redelivered: set[int] = set()
        while position < len(records):
            batch = self._next_batch(records, position)
            failed = self._invoke(batch)
            if (
                failed is None
                and self.chaos is not None
                and position not in redelivered
                and self.chaos.decide("kinesis.redelivered", batch[0].sequence_number)
            ):
                redelivered.add(position)
                continue
            if failed is None:
                position += len(batch)
                self.delivered_records += len(batch)
                if self.on_progress:
                    self.on_progress(len(batch))
                continue
            index = {record.sequence_number: i for i, record in enumerate(batch)}
            known = [index[seq] for seq in failed if seq in index]
            first_failed = min(known) if known else 0
            self.delivered_records += first_failed
            if self.on_progress and first_failed:
                self.on_progress(first_failed)
            retry_at = position + first_failed
            attempts[retry_at] = attempts.get(retry_at, 0) + 1
            if attempts[retry_at] > self.max_retry_attempts:
                dropped = batch[first_failed:]
                self.discarded.append(
                    DiscardedRecords(
                        shard_id,
                        [record.sequence_number for record in dropped],
                        f"retry attempts exhausted ({self.max_retry_attempts})",
                    )
                )
                if self.on_progress:
                    self.on_progress(len(dropped))
                position += len(batch)
                continue
            position = retry_at

    def drain(self) -> None:
        """Deliver everything in every shard (or in the ranges given), shard by shard (each shard is
        ordered on its own)."""
        shards = self.kinesis.list_shards(StreamName=self.stream_name)["Shards"]
        for shard in shards:
            if self.ranges is None or shard["ShardId"] in self.ranges:
                self.drain_shard(shard["ShardId"])
