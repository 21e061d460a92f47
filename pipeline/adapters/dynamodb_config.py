"""Customers, their AWS accounts, channels and rules in DynamoDB (the `ConfigStore` port).

pk = CUSTOMER#<id>, sk = #PROFILE     name, accounts, channels
pk = CUSTOMER#<id>, sk = RULE#<rule>  one rule
pk = ACCOUNT#<id>,  sk = #OWNER       which customer owns an AWS account (read by the fan-out)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.dynamodb_common import (
    BATCH_GET_LIMIT,
    TRANSACTION_LIMIT,
    error_code,
    from_item,
    to_item,
    translate,
)
from pipeline.errors import StoreError, TransientStoreError
from pipeline.invoking import backoff_delay
from pipeline.models import Customer, Rule
from pipeline.ports import CustomerConfig

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["DynamoDBConfigStore"]

IAM_ACTIONS = frozenset(
    {
        "dynamodb:BatchGetItem",  # customers_for_owners
        "dynamodb:Query",  # load_customer
        "dynamodb:PutItem",  # put_rule; each Put inside put_customer's transaction
        "dynamodb:DeleteItem",  # each Delete inside put_customer's transaction
    }
)
"""IAM actions this adapter's calls need (TransactWriteItems is authorised per contained action)."""

PROFILE_SK = "#PROFILE"
OWNER_SK = "#OWNER"
RULE_PREFIX = "RULE#"
UNPROCESSED_ATTEMPTS = 8


def _customer_pk(customer_id: str) -> str:
    return f"CUSTOMER#{customer_id}"


def _account_pk(account: str) -> str:
    return f"ACCOUNT#{account}"


class DynamoDBConfigStore:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock
        self._sleep = sleep

    def customers_for_owners(self, owners: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(owners))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            keys = [to_item({"pk": _account_pk(o), "sk": OWNER_SK}) for o in wanted[start : start + BATCH_GET_LIMIT]]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ProjectionExpression": "account, customer_id"}}
            for attempt in range(UNPROCESSED_ATTEMPTS):
                try:
                    response = self._client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise translate(exc, "look up owners") from exc
                for item in response.get("Responses", {}).get(self._table, []):
                    document = from_item(item)
                    found[str(document["account"])] = str(document["customer_id"])
                request = dict(response.get("UnprocessedKeys") or {})
                if not request:
                    break
                self._sleep(backoff_delay(attempt, 0.05))
            else:
                raise TransientStoreError(
                    f"look up owners: keys still unprocessed after {UNPROCESSED_ATTEMPTS} attempts"
                )
        return found

    def load_customer(self, customer_id: str) -> CustomerConfig | None:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_item({":pk": _customer_pk(customer_id)}),
        }
        profile: dict[str, Any] | None = None
        rules: list[Rule] = []
        while True:
            try:
                page = self._client.query(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "load customer") from exc
            for item in page.get("Items", []):
                document = from_item(item)
                sk = document.pop("sk")
                document.pop("pk")
                document.pop("updated_at", None)
                if sk == PROFILE_SK:
                    profile = document
                elif sk.startswith(RULE_PREFIX):
                    rules.append(Rule.model_validate(document))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if profile is None:
            return None
        return CustomerConfig(
            customer=Customer.model_validate(profile), rules=tuple(sorted(rules, key=lambda r: r.rule_id))
        )

    def put_customer(self, customer: Customer) -> None:
        """Write the profile and claim its accounts in one transaction; an account owned by
        another customer fails the whole write."""
        previous = self.load_customer(customer.customer_id)
        # One transaction may not touch an item twice: an account listed twice is claimed once.
        accounts = list(dict.fromkeys(customer.accounts))
        dropped = set(previous.customer.accounts) - set(accounts) if previous else set()
        actions: list[Any] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(
                        {
                            "pk": _customer_pk(customer.customer_id),
                            "sk": PROFILE_SK,
                            "updated_at": int(self._clock()),
                            **customer.model_dump(mode="json", exclude_none=True),
                        }
                    ),
                }
            }
        ]
        for account in accounts:
            actions.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_item(
                            {
                                "pk": _account_pk(account),
                                "sk": OWNER_SK,
                                "account": account,
                                "customer_id": customer.customer_id,
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(pk) OR customer_id = :me",
                        "ExpressionAttributeValues": to_item({":me": customer.customer_id}),
                    }
                }
            )
        for account in sorted(dropped):
            actions.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": to_item({"pk": _account_pk(account), "sk": OWNER_SK}),
                        "ConditionExpression": "customer_id = :me",
                        "ExpressionAttributeValues": to_item({":me": customer.customer_id}),
                    }
                }
            )
        if len(actions) > TRANSACTION_LIMIT:
            raise StoreError(
                f"customer {customer.customer_id}: {len(accounts)} accounts exceed what one transaction "
                f"can claim ({TRANSACTION_LIMIT - 1})"
            )
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons", [])
                taken = [
                    accounts[i - 1]
                    for i, reason in enumerate(reasons)
                    if 0 < i <= len(accounts) and reason.get("Code") == "ConditionalCheckFailed"
                ]
                if taken:
                    raise StoreError(
                        f"customer {customer.customer_id}: account(s) {', '.join(taken)} belong to another customer"
                    ) from exc
            raise translate(exc, "put customer") from exc
        except BotoCoreError as exc:
            raise translate(exc, "put customer") from exc

    def put_rule(self, rule: Rule) -> None:
        document = {
            "pk": _customer_pk(rule.customer_id),
            "sk": RULE_PREFIX + rule.rule_id,
            "updated_at": int(self._clock()),
            **rule.model_dump(mode="json"),
        }
        try:
            self._client.put_item(TableName=self._table, Item=to_item(document))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "put rule") from exc
