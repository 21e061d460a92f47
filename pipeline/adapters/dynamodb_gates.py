"""Delivery gates in the outbox table (the `DeliveryGates` port).

match_key = gate#rule#<customer>#<rule>        open_until: the rule's digest window
match_key = gate#channel#<customer>#<channel>  next_slot:  the channel's next free send slot

Each gate is one conditional update, so concurrent parsers and the dispatcher agree on who
sends: the write that moves the gate forward wins, the others hold their notification back.
"""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING, Any

from pipeline.adapters.dynamodb_common import conditional_write, to_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["DynamoDBDeliveryGates"]

IAM_ACTIONS = frozenset({"dynamodb:UpdateItem"})
"""IAM actions this adapter's calls need."""

GATE_TTL_S = 86_400
"""Gate items expire a day after their last use (TTL): a window or slot in the past is open anyway."""


class DynamoDBDeliveryGates:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def open_rule_window(self, customer_id: str, rule_id: str, *, now_ms: int, window_ms: int) -> int | None:
        return self._advance(f"gate#rule#{customer_id}#{rule_id}", "open_until", now_ms, now_ms + window_ms)

    def take_channel_slot(self, customer_id: str, channel_id: str, *, now_ms: int, interval_ms: int) -> int | None:
        return self._advance(f"gate#channel#{customer_id}#{channel_id}", "next_slot", now_ms, now_ms + interval_ms)

    def _advance(self, key: str, attribute: str, now_ms: int, until_ms: int) -> int | None:
        """Set `attribute` to `until_ms` if it is not in the future; else return when it is."""
        refused: dict[str, Any] = {}
        # DynamoDB can answer 500 to a write it applied; the SDK's retry then fails the condition
        # against that first attempt. The token tells our own write from another sender's.
        token = uuid.uuid4().hex

        def remember(item: dict[str, Any]) -> bool:
            refused.update(item)
            return item.get("taken_by") == token

        applied = conditional_write(
            f"advance {key.split('#')[1]} gate",
            functools.partial(
                self._client.update_item,
                TableName=self._table,
                Key=to_item({"match_key": key}),
                UpdateExpression="SET #gate = :until, taken_by = :token, kind = :kind, expires_at = :expires",
                ConditionExpression="attribute_not_exists(#gate) OR #gate <= :now",
                ExpressionAttributeNames={"#gate": attribute},
                ExpressionAttributeValues=to_item(
                    {
                        ":until": until_ms,
                        ":now": now_ms,
                        ":token": token,
                        ":kind": "gate",
                        ":expires": until_ms // 1000 + GATE_TTL_S,
                    }
                ),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
            already_mine=remember,
        )
        if applied:
            return None
        return int(refused.get(attribute, until_ms))
