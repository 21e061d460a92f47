"""Customers, their AWS accounts, channels and rules in DynamoDB (the `ConfigStore` port).

pk = CUSTOMER#<id>,     sk = #PROFILE     name, accounts, channels (`revision` guards channel edits;
                                          a channel also holds its secret and delivery health)
pk = CUSTOMER#<id>,     sk = RULE#<rule>  one rule (`version` guards edits, `status` its quarantine)
pk = ACCOUNT#<id>,      sk = #OWNER       which customer owns an AWS account (read by the fan-out)
pk = PRINCIPAL#<arn>,   sk = #CUSTOMER    which customer an IAM principal calls the rules API as
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.dynamodb_common import (
    BATCH_GET_LIMIT,
    TRANSACTION_LIMIT,
    conditional_write,
    error_code,
    from_item,
    to_item,
    translate,
)
from pipeline.errors import ConfigurationError, ConflictError, NotFoundError, StoreError, TransientStoreError
from pipeline.invoking import backoff_delay
from pipeline.models import Channel, Customer, Rule
from pipeline.ports import CustomerConfig

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)

__all__ = ["IAM_ACTIONS", "PROFILE_SK", "RULE_PREFIX", "DynamoDBConfigStore", "config_store", "customer_pk"]

IAM_ACTIONS = frozenset(
    {
        "dynamodb:BatchGetItem",  # customers_for_owners
        "dynamodb:Query",  # load_customer, list_rules
        "dynamodb:PutItem",  # put_rule, create_rule, put_principal; each Put inside put_customer's transaction
        "dynamodb:DeleteItem",  # delete_rule; each Delete inside put_customer's transaction
        "dynamodb:GetItem",  # get_customer, get_rule, customer_for_principal, record_delivery_failure
        "dynamodb:UpdateItem",  # update_rule, quarantine_rule, put_channel, delete_channel, record_delivery_failure
        "dynamodb:Scan",  # list_customers (operators only)
    }
)
"""IAM actions this adapter's calls need (TransactWriteItems is authorised per contained action)."""

PROFILE_SK = "#PROFILE"
OWNER_SK = "#OWNER"
PRINCIPAL_SK = "#CUSTOMER"
RULE_PREFIX = "RULE#"
_STORAGE_ATTRIBUTES = ("pk", "sk", "updated_at", "revision")
"""Profile attributes that are storage, not part of the `Customer` model."""
UNPROCESSED_ATTEMPTS = 8
CHANNEL_STORED_ONLY = ("secret", "last_error", "last_failed_at", "failures")
"""Channel fields every `model_dump` leaves out (a secret, the store's health record): written here only."""
DELIVERY_ERROR_MAX_CHARS = 500
HEALTH_ATTEMPTS = 3


def customer_pk(customer_id: str) -> str:
    return f"CUSTOMER#{customer_id}"


def _account_pk(account: str) -> str:
    return f"ACCOUNT#{account}"


def _principal_pk(principal: str) -> str:
    return f"PRINCIPAL#{principal}"


def _rule_key(customer_id: str, rule_id: str) -> dict[str, Any]:
    return to_item({"pk": customer_pk(customer_id), "sk": RULE_PREFIX + rule_id})


def _profile_key(customer_id: str) -> dict[str, Any]:
    return to_item({"pk": customer_pk(customer_id), "sk": PROFILE_SK})


def _customer_of(document: dict[str, Any]) -> Customer:
    return Customer.model_validate({k: v for k, v in document.items() if k not in _STORAGE_ATTRIBUTES})


def _channel_document(channel: Channel) -> dict[str, Any]:
    """A channel as stored: what it dumps, plus its secret and delivery health."""
    document = channel.model_dump(mode="json", exclude_none=True)
    for name in CHANNEL_STORED_ONLY:
        value = getattr(channel, name)
        if value is not None:
            document[name] = value
    return document


def _customer_document(customer: Customer) -> dict[str, Any]:
    return {
        **customer.model_dump(mode="json", exclude_none=True, exclude={"channels"}),
        "channels": [_channel_document(channel) for channel in customer.channels],
    }


def _scrubbed(error: str, channel: Channel) -> str:
    """The error as recorded: short, and without the channel's URL or secret should a caller slip."""
    for secret in (channel.url, channel.secret):
        if secret:
            error = error.replace(secret, "***")
    return error[:DELIVERY_ERROR_MAX_CHARS]


def _rule_of(document: dict[str, Any]) -> Rule:
    return Rule.model_validate({k: v for k, v in document.items() if k not in ("pk", "sk")})


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
            "ExpressionAttributeValues": to_item({":pk": customer_pk(customer_id)}),
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
                sk = document["sk"]
                if sk == PROFILE_SK:
                    profile = document
                elif sk.startswith(RULE_PREFIX):
                    # As the parser has always read rules: what they say, not when they were written.
                    document.pop("updated_at", None)
                    rules.append(_rule_of(document))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if profile is None:
            return None
        return CustomerConfig(customer=_customer_of(profile), rules=tuple(sorted(rules, key=lambda r: r.rule_id)))

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
                            "pk": customer_pk(customer.customer_id),
                            "sk": PROFILE_SK,
                            "updated_at": int(self._clock()),
                            **_customer_document(customer),
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
        """Write `rule` as is, unconditionally (replay and bench seed tables with it)."""
        try:
            self._client.put_item(TableName=self._table, Item=to_item(self._rule_document(rule)))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "put rule") from exc

    def _rule_document(self, rule: Rule) -> dict[str, Any]:
        return {
            "pk": customer_pk(rule.customer_id),
            "sk": RULE_PREFIX + rule.rule_id,
            **rule.model_dump(mode="json", exclude_none=True),
            "updated_at": int(self._clock()),
        }

    # -- customers ---------------------------------------------------------------------------
    def get_customer(self, customer_id: str) -> Customer | None:
        document = self._get(_profile_key(customer_id), "get customer")
        return None if document is None else _customer_of(document)

    def list_customers(self) -> list[Customer]:
        """Every customer profile, by id. A scan: for operators, never on the data path."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :profile",
            "ExpressionAttributeValues": to_item({":profile": PROFILE_SK}),
        }
        customers: list[Customer] = []
        while True:
            try:
                page = self._client.scan(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "list customers") from exc
            customers.extend(_customer_of(from_item(item)) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(customers, key=lambda customer: customer.customer_id)

    def put_principal(self, principal: str, customer_id: str) -> None:
        """Let an IAM principal (role or user ARN) call the rules API as `customer_id`, and only as it."""
        item = to_item({"pk": _principal_pk(principal), "sk": PRINCIPAL_SK, "customer_id": customer_id})
        applied = conditional_write(
            "put principal",
            lambda: self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR customer_id = :me",
                ExpressionAttributeValues=to_item({":me": customer_id}),
            ),
        )
        if not applied:
            raise ConflictError(f"customer {customer_id}: that principal already belongs to another customer")

    def customer_for_principal(self, principal: str) -> str | None:
        document = self._get(to_item({"pk": _principal_pk(principal), "sk": PRINCIPAL_SK}), "look up principal")
        return None if document is None else str(document["customer_id"])

    # -- rules -------------------------------------------------------------------------------
    def list_rules(self, customer_id: str) -> list[Rule]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :rule)",
            "ExpressionAttributeValues": to_item({":pk": customer_pk(customer_id), ":rule": RULE_PREFIX}),
            "ConsistentRead": True,
        }
        rules: list[Rule] = []
        while True:
            try:
                page = self._client.query(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "list rules") from exc
            rules.extend(_rule_of(from_item(item)) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(rules, key=lambda rule: rule.rule_id)

    def get_rule(self, customer_id: str, rule_id: str) -> Rule | None:
        document = self._get(_rule_key(customer_id, rule_id), "get rule")
        return None if document is None else _rule_of(document)

    def create_rule(self, rule: Rule) -> Rule:
        """Register a new rule at version 1; `ConflictError` when the customer already has that rule id."""
        stored = rule.model_copy(update={"version": 1, "updated_at": int(self._clock())})
        applied = conditional_write(
            "create rule",
            lambda: self._client.put_item(
                TableName=self._table,
                Item=to_item(self._rule_document(stored)),
                ConditionExpression="attribute_not_exists(pk)",
            ),
        )
        if not applied:
            raise ConflictError(f"rule {rule.rule_id!r} exists already")
        return stored

    def update_rule(self, rule: Rule, expected_version: int) -> Rule:
        """Replace the rule stored at `expected_version` with `rule` at the next version.

        `NotFoundError` when there is no such rule, `ConflictError` when it changed since it was read.
        """
        stored = rule.model_copy(update={"version": expected_version + 1, "updated_at": int(self._clock())})
        applied = conditional_write(
            "update rule",
            lambda: self._client.put_item(
                TableName=self._table,
                Item=to_item(self._rule_document(stored)),
                ConditionExpression="attribute_exists(pk) AND #version = :expected",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues=to_item({":expected": expected_version}),
            ),
        )
        if not applied:
            current = self.get_rule(rule.customer_id, rule.rule_id)
            if current is None:
                raise NotFoundError(f"no rule {rule.rule_id!r}")
            raise ConflictError(
                f"rule {rule.rule_id!r} is at version {current.version}, not {expected_version}: read it again"
            )
        return stored

    def delete_rule(self, customer_id: str, rule_id: str) -> bool:
        """True when the rule existed and is gone."""
        return conditional_write(
            "delete rule",
            lambda: self._client.delete_item(
                TableName=self._table, Key=_rule_key(customer_id, rule_id), ConditionExpression="attribute_exists(pk)"
            ),
        )

    def quarantine_rule(
        self, customer_id: str, rule_id: str, reason: str, at: int, *, version: int | None = None
    ) -> bool:
        """Mark a rule quarantined (`at`: epoch ms). True only for the call that quarantined it: a rule
        already quarantined, gone, or (with `version`) edited since is left alone, so repeats are harmless.
        Its version is kept: the customer's next edit, which lifts the quarantine, stays conditional on it."""
        condition = "attribute_exists(pk) AND (attribute_not_exists(#status) OR #status <> :quarantined)"
        values: dict[str, Any] = {":quarantined": "quarantined", ":reason": reason, ":at": at}
        if version is not None:
            condition += " AND #version = :version"
            values[":version"] = version
        return conditional_write(
            "quarantine rule",
            lambda: self._client.update_item(
                TableName=self._table,
                Key=_rule_key(customer_id, rule_id),
                UpdateExpression="SET #status = :quarantined, quarantine_reason = :reason, quarantined_at = :at",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status", **({"#version": "version"} if version else {})},
                ExpressionAttributeValues=to_item(values),
            ),
        )

    # -- channels (inside the profile) -------------------------------------------------------
    def list_channels(self, customer_id: str) -> list[Channel]:
        customer = self.get_customer(customer_id)
        if customer is None:
            raise NotFoundError(f"no customer {customer_id!r}")
        return sorted(customer.channels, key=lambda channel: channel.channel_id)

    def get_channel(self, customer_id: str, channel_id: str) -> Channel | None:
        return next((c for c in self.list_channels(customer_id) if c.channel_id == channel_id), None)

    def put_channel(self, customer_id: str, channel: Channel) -> bool:
        """Add or replace one channel of the profile; True when it was new."""
        channels, revision = self._channels_for_edit(customer_id)
        is_new = all(existing.channel_id != channel.channel_id for existing in channels)
        kept = [existing for existing in channels if existing.channel_id != channel.channel_id]
        self._write_channels(customer_id, [*kept, channel], revision)
        return is_new

    def delete_channel(self, customer_id: str, channel_id: str) -> bool:
        channels, revision = self._channels_for_edit(customer_id)
        kept = [existing for existing in channels if existing.channel_id != channel_id]
        if len(kept) == len(channels):
            return False
        self._write_channels(customer_id, kept, revision)
        return True

    def record_delivery_failure(self, customer_id: str, channel_id: str, *, error: str, at_ms: int) -> None:
        """Note a permanent delivery failure on the channel: `last_error`, `last_failed_at`, `failures`+1.

        Updates the one channel in place, conditional on it still being at that position of the
        list; the profile's `revision` is left alone, so a customer's concurrent edit never fails
        because of it (an edit clears the record anyway). A channel gone meanwhile is left alone.
        """
        for _ in range(HEALTH_ATTEMPTS):
            document = self._get(_profile_key(customer_id), "get customer")
            if document is None:
                return
            channels = _customer_of(document).channels
            index = next((i for i, c in enumerate(channels) if c.channel_id == channel_id), None)
            if index is None:
                return
            applied = self._record_failure_at(customer_id, index, channels[index], error=error, at_ms=at_ms)
            if applied:
                return
        raise ConflictError(f"customer {customer_id}: channels kept changing while recording a delivery failure")

    def _record_failure_at(self, customer_id: str, index: int, channel: Channel, *, error: str, at_ms: int) -> bool:
        path = f"channels[{index}]"
        return conditional_write(
            "record delivery failure",
            lambda: self._client.update_item(
                TableName=self._table,
                Key=_profile_key(customer_id),
                UpdateExpression=(
                    f"SET {path}.last_error = :error, {path}.last_failed_at = :at, "
                    f"{path}.failures = if_not_exists({path}.failures, :zero) + :one"
                ),
                ConditionExpression=f"{path}.channel_id = :channel",
                ExpressionAttributeValues=to_item(
                    {
                        ":error": _scrubbed(error, channel),
                        ":at": at_ms,
                        ":zero": 0,
                        ":one": 1,
                        ":channel": channel.channel_id,
                    }
                ),
            ),
        )

    def _channels_for_edit(self, customer_id: str) -> tuple[list[Channel], int]:
        document = self._get(_profile_key(customer_id), "get customer")
        if document is None:
            raise NotFoundError(f"no customer {customer_id!r}")
        return list(_customer_of(document).channels), int(document.get("revision", 0))

    def _write_channels(self, customer_id: str, channels: list[Channel], revision: int) -> None:
        """Conditional on the profile's revision, so two concurrent channel edits never lose one."""
        ordered = sorted(channels, key=lambda channel: channel.channel_id)
        applied = conditional_write(
            "put channels",
            lambda: self._client.update_item(
                TableName=self._table,
                Key=_profile_key(customer_id),
                UpdateExpression="SET channels = :channels, revision = :next, updated_at = :now",
                ConditionExpression="attribute_exists(pk) AND "
                + ("attribute_not_exists(revision)" if revision == 0 else "revision = :seen"),
                ExpressionAttributeValues=to_item(
                    {
                        ":channels": [_channel_document(c) for c in ordered],
                        ":next": revision + 1,
                        ":now": int(self._clock()),
                        **({":seen": revision} if revision else {}),
                    }
                ),
            ),
        )
        if not applied:
            raise ConflictError(f"customer {customer_id}: channels changed meanwhile, try again")

    def _get(self, key: dict[str, Any], action: str) -> dict[str, Any] | None:
        try:
            response = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, action) from exc
        item = response.get("Item")
        return None if item is None else from_item(item)


def config_store(table_name: str, *, region: str | None = None, endpoint_url: str | None = None) -> DynamoDBConfigStore:
    """A store on its own client: the default credentials chain, or `endpoint_url` (else AWS_ENDPOINT_URL)."""
    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        raise ConfigurationError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    client = session.client("dynamodb", endpoint_url=endpoint_url or None, config=SDK_CONFIG)
    return DynamoDBConfigStore(client, table_name)
