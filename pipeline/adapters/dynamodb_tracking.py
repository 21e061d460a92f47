"""Batch and sub-task tracking items in DynamoDB (the `TrackingStore` and `SubTaskLeases` ports).

Layout, one item collection per batch:
    pk = BATCH#<batch_id>, sk = #BATCH          the batch (counters, status, summary)
    pk = BATCH#<batch_id>, sk = TASK#<subtask>  one per sub-task (with the lease of the run working on it)
Every item carries `expires_at` (epoch seconds) for the table's TTL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.dynamodb_common import (
    BATCH_WRITE_LIMIT,
    conditional_write,
    error_code,
    from_item,
    retry_unprocessed,
    to_item,
    translate,
)
from pipeline.errors import BatchConflictError, TransientStoreError
from pipeline.invoking import backoff_delay
from pipeline.models import BatchRecord, BatchStatus, BatchSummary, SubTaskRecord, SubTaskStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["DynamoDBTrackingStore"]

IAM_ACTIONS = frozenset(
    {
        "dynamodb:PutItem",  # create_batch
        "dynamodb:GetItem",  # get_batch, get_subtask
        "dynamodb:UpdateItem",  # claims, leases, complete_batch; each Update inside finish_subtask's transaction
        "dynamodb:BatchWriteItem",  # put_subtasks
        "dynamodb:Query",  # list_subtasks
        "dynamodb:Scan",  # iter_batches (reports)
    }
)
"""IAM actions this adapter's calls need (TransactWriteItems is authorised per contained action)."""

BATCH_SK = "#BATCH"
OPEN_BATCHES_INDEX = "open-batches"
"""Sparse index (open_shard, created_at): only open batches carry `open_shard`, so the sweeper
reads the few open ones instead of scanning every batch."""
OPEN_MARKER = "open"
TASK_PREFIX = "TASK#"
TRANSACTION_CONFLICT_ATTEMPTS = 6


def _pk(batch_id: str) -> str:
    return f"BATCH#{batch_id}"


def _key(batch_id: str, sk: str) -> dict[str, Any]:
    return to_item({"pk": _pk(batch_id), "sk": sk})


class DynamoDBTrackingStore:
    def __init__(self, client: DynamoDBClient, table_name: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._table = table_name
        self._sleep = sleep

    # -- batches -----------------------------------------------------------------------------
    def create_batch(self, batch: BatchRecord, expires_at: int) -> bool:
        document = batch.model_dump(mode="json", exclude_none=True)
        document.update(
            pk=_pk(batch.batch_id), sk=BATCH_SK, kind="batch", expires_at=expires_at, open_shard=OPEN_MARKER
        )
        return conditional_write(
            "create batch",
            lambda: self._client.put_item(
                TableName=self._table,
                Item=to_item(document),
                ConditionExpression="attribute_not_exists(pk)",
            ),
        )

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        item = self._get(batch_id, BATCH_SK, "get batch")
        if item is None:
            return None
        return BatchRecord.model_validate(item)

    def claim_consolidation(self, batch_id: str, claimant: str) -> bool:
        return conditional_write(
            "claim consolidation",
            lambda: self._client.update_item(
                TableName=self._table,
                Key=_key(batch_id, BATCH_SK),
                UpdateExpression="SET consolidation_claimed_by = :claimant",
                ConditionExpression=(
                    "finished_tasks = total_tasks AND #status = :open AND attribute_not_exists(consolidation_claimed_by)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({":claimant": claimant, ":open": BatchStatus.OPEN.value}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
            already_mine=lambda old: old.get("consolidation_claimed_by") == claimant,
        )

    def complete_batch(self, summary: BatchSummary) -> bool:
        # A token per call: the SDK's own retry of this request carries it, another consolidator
        # run (even one computing an identical summary in the same millisecond) does not.
        token = uuid.uuid4().hex
        return conditional_write(
            "complete batch",
            lambda: self._client.update_item(
                TableName=self._table,
                Key=_key(summary.batch_id, BATCH_SK),
                UpdateExpression=(
                    "SET #status = :complete, finished_at = :finished_at, summary = :summary, completed_by = :token "
                    "REMOVE open_shard"
                ),
                ConditionExpression="#status = :open",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":complete": BatchStatus.COMPLETE.value,
                        ":open": BatchStatus.OPEN.value,
                        ":finished_at": summary.finished_at,
                        ":summary": summary.model_dump(mode="json"),
                        ":token": token,
                    }
                ),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
            already_mine=lambda old: old.get("completed_by") == token,
        )

    def open_batches(self, created_before_ms: int) -> Iterator[BatchRecord]:
        """Open batches created before `created_before_ms`, oldest first (eventually consistent)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": OPEN_BATCHES_INDEX,
            "KeyConditionExpression": "open_shard = :open AND created_at < :before",
            "ExpressionAttributeValues": to_item({":open": OPEN_MARKER, ":before": created_before_ms}),
        }
        while True:
            try:
                page = self._client.query(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "list open batches") from exc
            for item in page.get("Items", []):
                yield BatchRecord.model_validate(from_item(item))
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def count_redrive(self, batch_id: str, subtask_id: str) -> int | None:
        """Add one re-drive to a pending sub-task; its new count, or None when it is no longer pending."""
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=_key(batch_id, TASK_PREFIX + subtask_id),
                UpdateExpression="ADD redrives :one",
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({":one": 1, ":pending": SubTaskStatus.PENDING.value}),
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise translate(exc, "count re-drive") from exc
        except BotoCoreError as exc:
            raise translate(exc, "count re-drive") from exc
        return int(from_item(response["Attributes"])["redrives"])

    def iter_batches(self) -> Iterator[BatchRecord]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :sk",
            "ExpressionAttributeValues": to_item({":sk": BATCH_SK}),
        }
        while True:
            try:
                page = self._client.scan(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "scan batches") from exc
            for item in page.get("Items", []):
                yield BatchRecord.model_validate(from_item(item))
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- sub-tasks ---------------------------------------------------------------------------
    def put_subtasks(self, subtasks: Sequence[SubTaskRecord], expires_at: int) -> None:
        for start in range(0, len(subtasks), BATCH_WRITE_LIMIT):
            chunk = subtasks[start : start + BATCH_WRITE_LIMIT]
            requests = [
                {"PutRequest": {"Item": to_item(self._subtask_document(record, expires_at))}} for record in chunk
            ]
            retry_unprocessed(self._batch_write, {self._table: requests}, action="write sub-tasks", sleep=self._sleep)

    def _batch_write(self, request_items: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.batch_write_item(RequestItems=request_items)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "write sub-tasks") from exc
        return dict(response.get("UnprocessedItems") or {})

    def get_subtask(self, batch_id: str, subtask_id: str) -> SubTaskRecord | None:
        item = self._get(batch_id, TASK_PREFIX + subtask_id, "get sub-task")
        return None if item is None else SubTaskRecord.model_validate(item)

    def list_subtasks(self, batch_id: str) -> list[SubTaskRecord]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :task)",
            "ExpressionAttributeValues": to_item({":pk": _pk(batch_id), ":task": TASK_PREFIX}),
            "ConsistentRead": True,
        }
        records: list[SubTaskRecord] = []
        while True:
            try:
                page = self._client.query(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "list sub-tasks") from exc
            records.extend(SubTaskRecord.model_validate(from_item(item)) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return records
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def lease_subtask(self, batch_id: str, subtask_id: str, holder: str, *, now_ms: int, until_ms: int) -> bool:
        return conditional_write(
            "lease sub-task",
            lambda: self._client.update_item(
                TableName=self._table,
                Key=_key(batch_id, TASK_PREFIX + subtask_id),
                UpdateExpression="SET lease_holder = :holder, lease_until = :until",
                ConditionExpression=(
                    "#status = :pending AND "
                    "(attribute_not_exists(lease_until) OR lease_until < :now OR lease_holder = :holder)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":holder": holder,
                        ":until": until_ms,
                        ":now": now_ms,
                        ":pending": SubTaskStatus.PENDING.value,
                    }
                ),
            ),
        )

    def release_subtask(self, batch_id: str, subtask_id: str, holder: str) -> None:
        # A failed condition means the lease is not ours (any more): nothing to give up.
        conditional_write(
            "release sub-task",
            lambda: self._client.update_item(
                TableName=self._table,
                Key=_key(batch_id, TASK_PREFIX + subtask_id),
                UpdateExpression="REMOVE lease_holder, lease_until",
                ConditionExpression="lease_holder = :holder",
                ExpressionAttributeValues=to_item({":holder": holder}),
            ),
        )

    def finish_subtask(self, record: SubTaskRecord, status: SubTaskStatus, finished_at: int) -> bool:
        """One transaction: the sub-task leaves `pending` and the batch counts it, or neither happens."""
        items: list[Any] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _key(record.batch_id, TASK_PREFIX + record.subtask_id),
                    "UpdateExpression": (
                        "SET #status = :done, matches = :matches, notified = :notified, "
                        "rule_stats = :rule_stats, finished_at = :finished_at"
                    ),
                    "ConditionExpression": "#status = :pending",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": to_item(
                        {
                            ":done": status.value,
                            ":pending": SubTaskStatus.PENDING.value,
                            ":matches": record.matches,
                            ":notified": record.notified,
                            ":rule_stats": {k: v.model_dump() for k, v in record.rule_stats.items()},
                            ":finished_at": finished_at,
                        }
                    ),
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _key(record.batch_id, BATCH_SK),
                    "UpdateExpression": "ADD finished_tasks :one",
                    "ConditionExpression": "#status = :open",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": to_item({":one": 1, ":open": BatchStatus.OPEN.value}),
                }
            },
        ]
        for attempt in range(TRANSACTION_CONFLICT_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=items)
                return True
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise translate(exc, "finish sub-task") from exc
                reasons = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return False
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    raise BatchConflictError(
                        f"batch {record.batch_id} is not open while sub-task {record.subtask_id} was pending"
                    ) from exc
                # TransactionConflict / throttling on one item: another writer on the batch, retry.
                self._sleep(backoff_delay(attempt, 0.05))
            except BotoCoreError as exc:
                raise translate(exc, "finish sub-task") from exc
        raise TransientStoreError(
            f"finish sub-task: transaction conflicts after {TRANSACTION_CONFLICT_ATTEMPTS} attempts"
        )

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _subtask_document(record: SubTaskRecord, expires_at: int) -> dict[str, Any]:
        document = record.model_dump(mode="json", exclude_none=True)
        document.update(
            pk=_pk(record.batch_id), sk=TASK_PREFIX + record.subtask_id, kind="subtask", expires_at=expires_at
        )
        return document

    def _get(self, batch_id: str, sk: str, action: str) -> dict[str, Any] | None:
        try:
            response = self._client.get_item(TableName=self._table, Key=_key(batch_id, sk), ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, action) from exc
        item = response.get("Item")
        return None if item is None else from_item(item)
