"""Rule health in DynamoDB (the `RuleHealthStore` port): time-budget strikes and quarantine.

pk = CUSTOMER#<id>, sk = STRIKES#<rule>   strikes of one rule version within a window

The strikes live beside the rule, not on it, so counting one never changes the rule a parser
has cached (and never races the customer's edits, which are conditional on the rule's version).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.dynamodb_common import cancelled_by_condition, error_code, from_item, to_item, translate
from pipeline.adapters.dynamodb_config import RULE_PREFIX, customer_pk
from pipeline.adapters.dynamodb_matches import DynamoDBMatchStore
from pipeline.models import Notification, Rule
from pipeline.ports import NotificationStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["STRIKES_PREFIX", "DynamoDBRuleHealthStore"]

IAM_ACTIONS = frozenset(
    {
        "dynamodb:UpdateItem",  # record_strike, quarantine (in the transaction)
        "dynamodb:PutItem",  # record_strike, quarantine's notice (in the transaction)
    }
)
"""IAM actions this adapter's calls need (on the config table and the outbox table)."""

STRIKES_PREFIX = "STRIKES#"


class DynamoDBRuleHealthStore:
    def __init__(self, client: DynamoDBClient, config_table: str, outbox: DynamoDBMatchStore) -> None:
        self._client = client
        self._table = config_table
        self._outbox = outbox

    def _key(self, customer_id: str, sk: str) -> dict[str, Any]:
        return to_item({"pk": customer_pk(customer_id), "sk": sk})

    def record_strike(self, customer_id: str, rule_id: str, *, version: int, now_ms: int, window_ms: int) -> int:
        key = self._key(customer_id, STRIKES_PREFIX + rule_id)
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET strikes = strikes + :one, last_strike = :now",
                ConditionExpression="#version = :version AND since > :window_start",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues=to_item(
                    {":one": 1, ":now": now_ms, ":version": version, ":window_start": now_ms - window_ms}
                ),
                ReturnValues="UPDATED_NEW",
            )
            return int(from_item(response["Attributes"])["strikes"])
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc, "record rule strike") from exc
        except BotoCoreError as exc:
            raise translate(exc, "record rule strike") from exc
        # No strikes of this version in the window: start counting afresh.
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    **key,
                    **to_item({"version": version, "since": now_ms, "last_strike": now_ms, "strikes": 1}),
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "record rule strike") from exc
        return 1

    def quarantine(self, rule: Rule, *, reason: str, at_ms: int, notice: Notification, expires_at: int) -> bool:
        quarantine = {
            "Update": {
                "TableName": self._table,
                "Key": self._key(rule.customer_id, RULE_PREFIX + rule.rule_id),
                "UpdateExpression": "SET #status = :quarantined, quarantine_reason = :reason, quarantined_at = :at",
                "ConditionExpression": (
                    "attribute_exists(pk) AND #version = :version "
                    "AND (attribute_not_exists(#status) OR #status <> :quarantined)"
                ),
                "ExpressionAttributeNames": {"#status": "status", "#version": "version"},
                "ExpressionAttributeValues": to_item(
                    {":quarantined": "quarantined", ":reason": reason, ":at": at_ms, ":version": rule.version}
                ),
            }
        }
        queue_notice = {
            "Put": {
                "TableName": self._outbox.table_name,
                "Item": self._outbox.notification_item(
                    notice, NotificationStatus.HELD, expires_at=expires_at, hold_until=0
                ),
                "ConditionExpression": "attribute_not_exists(match_key)",
            }
        }
        try:
            self._client.transact_write_items(TransactItems=[quarantine, queue_notice])  # type: ignore[list-item]
        except ClientError as exc:
            # Already quarantined, edited since, or deleted: someone else's call (or the customer) won.
            if cancelled_by_condition(exc):
                return False
            raise translate(exc, "quarantine rule") from exc
        except BotoCoreError as exc:
            raise translate(exc, "quarantine rule") from exc
        return True
