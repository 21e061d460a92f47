"""The match / notification outbox in DynamoDB (the `MatchStore` port).

match_key = <customer>#<rule>#<event id>   kind=match: one per match, owned by one notification
match_key = notification#<id>              kind=notification: pending | sent | failed | held | digested

A held notification carries `held_shard` and `hold_until`, the keys of the sparse index
`held-notifications` the dispatcher queries; leaving `held` removes them.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.dynamodb_common import (
    TRANSACTION_LIMIT,
    cancelled_by_condition,
    conditional_write,
    from_item,
    to_item,
    translate,
)
from pipeline.models import Match, Notification
from pipeline.ports import NotificationStatus, OutboxEntry

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["HELD_INDEX", "MESSAGE_MAX_BYTES", "DynamoDBMatchStore", "truncate_utf8"]

IAM_ACTIONS = frozenset(
    {
        "dynamodb:PutItem",  # claim_matches, save_notification
        "dynamodb:GetItem",  # load_notification
        "dynamodb:Query",  # held_notifications (the held-notifications index)
        "dynamodb:UpdateItem",  # fold_into_digest (the members' Updates inside its transaction)
        "dynamodb:Scan",  # iter_matches (reports)
    }
)
"""IAM actions this adapter's calls need."""

MESSAGE_MAX_BYTES = 64 * 1024
"""A DynamoDB item holds at most 400 KB; a log event may be 1 MB. Stored messages are cut here."""


def truncate_utf8(text: str, max_bytes: int) -> tuple[str, bool]:
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text, False
    return encoded[:max_bytes].decode(errors="ignore"), True


HELD_INDEX = "held-notifications"
HELD_SHARD = "held"
"""One partition for the index: held notifications are few (alerts already fold per rule)."""


def _notification_key(notification_id: str) -> str:
    return f"notification#{notification_id}"


def _entry(document: dict[str, Any]) -> OutboxEntry:
    return OutboxEntry(
        notification=Notification.model_validate(document["notification"]),
        status=NotificationStatus(document["status"]),
        attempts=int(document.get("attempts", 0)),
        hold_until=int(document.get("hold_until", 0)),
        error=str(document.get("error", "")),
        held_for=str(document.get("held_for", "")),
    )


class DynamoDBMatchStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    @property
    def table_name(self) -> str:
        return self._table

    def claim_matches(
        self,
        matches: Sequence[Match],
        notification_id: str,
        *,
        batch_id: str,
        subtask_id: str,
        expires_at: int,
    ) -> list[Match]:
        claimed: list[Match] = []
        for match in matches:
            message, truncated = truncate_utf8(match.message, MESSAGE_MAX_BYTES)
            document = {
                **match.model_dump(mode="json"),
                "message": message,
                "message_truncated": truncated,
                "match_key": match.match_key,
                "kind": "match",
                "notification_id": notification_id,
                "batch_id": batch_id,
                "subtask_id": subtask_id,
                "expires_at": expires_at,
            }
            recorded = conditional_write(
                "record match",
                functools.partial(
                    self._client.put_item,
                    TableName=self._table,
                    Item=to_item(document),
                    ConditionExpression="attribute_not_exists(match_key) OR notification_id = :nid",
                    ExpressionAttributeValues=to_item({":nid": notification_id}),
                ),
            )
            if recorded:
                claimed.append(match)
        return claimed

    def load_notification(self, notification_id: str) -> OutboxEntry | None:
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key=to_item({"match_key": _notification_key(notification_id)}),
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "read notification") from exc
        item = response.get("Item")
        return None if item is None else _entry(from_item(item))

    def save_notification(
        self,
        notification: Notification,
        status: NotificationStatus,
        *,
        expires_at: int,
        error: str = "",
        hold_until: int = 0,
        attempts: int = 0,
        held_for: str = "",
    ) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self.notification_item(
                    notification,
                    status,
                    expires_at=expires_at,
                    error=error,
                    hold_until=hold_until,
                    attempts=attempts,
                    held_for=held_for,
                ),
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "save notification") from exc

    def notification_item(
        self,
        notification: Notification,
        status: NotificationStatus,
        *,
        expires_at: int,
        error: str = "",
        hold_until: int = 0,
        attempts: int = 0,
        held_for: str = "",
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "match_key": _notification_key(notification.notification_id),
            "kind": "notification",
            "status": status.value,
            "notification": notification.model_dump(mode="json"),
            "expires_at": expires_at,
        }
        if error:
            document["error"] = error
        if attempts:
            document["attempts"] = attempts
        if status is NotificationStatus.HELD:
            document["held_shard"] = HELD_SHARD
            document["hold_until"] = hold_until
            if held_for:
                document["held_for"] = held_for
        return to_item(document)

    def held_notifications(self, due_before_ms: int) -> list[OutboxEntry]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": HELD_INDEX,
            "KeyConditionExpression": "held_shard = :shard AND hold_until < :due",
            "ExpressionAttributeValues": to_item({":shard": HELD_SHARD, ":due": due_before_ms}),
        }
        found: list[OutboxEntry] = []
        while True:
            try:
                page = self._client.query(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "query held notifications") from exc
            # The index is eventually consistent: an item may have left `held` since.
            found.extend(
                e for e in map(_entry, map(from_item, page.get("Items", []))) if e.status is NotificationStatus.HELD
            )
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def fold_into_digest(self, digest: Notification, members: Sequence[str], *, expires_at: int) -> bool:
        # The digest's Put and one Update per member are a single transaction.
        if not 1 <= len(members) < TRANSACTION_LIMIT:
            raise ValueError(f"a digest folds 1 to {TRANSACTION_LIMIT - 1} notifications, not {len(members)}")
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self.notification_item(digest, NotificationStatus.HELD, expires_at=expires_at),
                    "ConditionExpression": "attribute_not_exists(match_key)",
                }
            }
        ]
        for member in members:
            actions.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_item({"match_key": _notification_key(member)}),
                        "UpdateExpression": "SET #status = :digested, digest_id = :digest REMOVE held_shard, hold_until",
                        "ConditionExpression": "#status = :held",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": to_item(
                            {
                                ":digested": NotificationStatus.DIGESTED.value,
                                ":held": NotificationStatus.HELD.value,
                                ":digest": digest.notification_id,
                            }
                        ),
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except ClientError as exc:
            if cancelled_by_condition(exc):
                return False
            raise translate(exc, "fold notifications into a digest") from exc
        except BotoCoreError as exc:
            raise translate(exc, "fold notifications into a digest") from exc
        return True

    def iter_matches(self, batch_ids: Collection[str] | None = None) -> Iterator[Match]:
        """Every recorded match, or only those recorded by the batches `batch_ids` (one replay's)."""
        fields = set(Match.model_fields)
        for document in self._scan_matches(batch_ids):
            yield Match.model_validate({k: v for k, v in document.items() if k in fields})

    def unnotified(self, batch_ids: Collection[str] | None = None) -> list[tuple[Match, str]]:
        """Matches (of the batches `batch_ids`, when given) whose notification is not (yet) `sent`,
        with that notification's id.

        An audit for the local runtime and operators: after everything settles it must be empty,
        or a notification stayed in the outbox.
        """
        notifications = {str(d["match_key"]).removeprefix("notification#"): d for d in self._scan("notification")}
        fields = set(Match.model_fields)
        return [
            (Match.model_validate({k: v for k, v in d.items() if k in fields}), str(d["notification_id"]))
            for d in self._scan_matches(batch_ids)
            if not _delivered(str(d["notification_id"]), notifications)
        ]

    def _scan_matches(self, batch_ids: Collection[str] | None) -> Iterator[dict[str, Any]]:
        for document in self._scan("match"):
            if batch_ids is None or document.get("batch_id") in batch_ids:
                yield document

    def outbox(self) -> list[OutboxEntry]:
        """Every notification in the outbox (reports and tests)."""
        return [_entry(d) for d in self._scan("notification")]

    def _scan(self, kind: str) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "kind = :kind",
            "ExpressionAttributeValues": to_item({":kind": kind}),
        }
        while True:
            try:
                page = self._client.scan(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, f"scan {kind} items") from exc
            for item in page.get("Items", []):
                yield from_item(item)
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _delivered(notification_id: str, notifications: dict[str, dict[str, Any]]) -> bool:
    """Sent itself, or folded into a digest that was sent."""
    document = notifications.get(notification_id)
    if document is None:
        return False
    if document["status"] == NotificationStatus.DIGESTED.value:
        return _delivered(str(document.get("digest_id", "")), notifications)
    return bool(document["status"] == NotificationStatus.SENT.value)
