"""The match / notification outbox in DynamoDB (the `MatchStore` port).

match_key = <customer>#<rule>#<event id>   kind=match: one per match, owned by one notification
match_key = notification#<id>              kind=notification: pending | sent | failed
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.dynamodb_common import conditional_write, from_item, to_item, translate
from pipeline.models import Match, Notification
from pipeline.ports import NotificationStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["MESSAGE_MAX_BYTES", "DynamoDBMatchStore", "truncate_utf8"]

IAM_ACTIONS = frozenset(
    {
        "dynamodb:PutItem",  # claim_matches, save_notification
        "dynamodb:GetItem",  # notification_status
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


def _notification_key(notification_id: str) -> str:
    return f"notification#{notification_id}"


class DynamoDBMatchStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

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

    def notification_status(self, notification_id: str) -> NotificationStatus | None:
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key=to_item({"match_key": _notification_key(notification_id)}),
                ConsistentRead=True,
                ProjectionExpression="#status",
                ExpressionAttributeNames={"#status": "status"},
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "read notification") from exc
        item = response.get("Item")
        return None if item is None else NotificationStatus(from_item(item)["status"])

    def save_notification(
        self, notification: Notification, status: NotificationStatus, *, expires_at: int, error: str = ""
    ) -> None:
        document: dict[str, Any] = {
            "match_key": _notification_key(notification.notification_id),
            "kind": "notification",
            "status": status.value,
            "notification": notification.model_dump(mode="json"),
            "expires_at": expires_at,
        }
        if error:
            document["error"] = error
        try:
            self._client.put_item(TableName=self._table, Item=to_item(document))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "save notification") from exc

    def iter_matches(self) -> Iterator[Match]:
        fields = set(Match.model_fields)
        for document in self._scan("match"):
            yield Match.model_validate({k: v for k, v in document.items() if k in fields})

    def unnotified(self) -> list[tuple[Match, str]]:
        """Matches whose notification is not (yet) `sent`, with that notification's id.

        An audit for the local runtime and operators: after everything settles it must be empty,
        or a notification stayed in the outbox.
        """
        statuses = {str(d["match_key"]).removeprefix("notification#"): d["status"] for d in self._scan("notification")}
        fields = set(Match.model_fields)
        return [
            (Match.model_validate({k: v for k, v in d.items() if k in fields}), str(d["notification_id"]))
            for d in self._scan("match")
            if statuses.get(str(d["notification_id"])) != NotificationStatus.SENT.value
        ]

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
