"""Rules-API keys in the config table, beside the customers they belong to (see `dynamodb_config`).

pk = APIKEY#<key id>,     sk = #KEY            the key's hash, customer and state: what the authorizer reads
pk = CUSTOMER#<id>,       sk = APIKEY#<key id>  the same without the hash: a customer's keys in one Query

Both items are written and revoked together in one transaction, and a key is only created for a
customer whose profile exists. Revoking keeps the items (with `revoked_at`) so `keys list` can say
which keys were revoked and when.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.dynamodb_common import error_code, from_item, to_item, translate
from pipeline.adapters.dynamodb_config import PROFILE_SK, customer_pk
from pipeline.api_keys import ApiKey, StoredApiKey
from pipeline.errors import ConfigurationError, ConflictError, NotFoundError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["IAM_ACTIONS", "DynamoDBApiKeyStore", "api_key_store"]

IAM_ACTIONS = frozenset(
    {
        "dynamodb:GetItem",  # get_key (the authorizer); revoke_key, to say why a revoke did not apply
        "dynamodb:Query",  # list_keys
        "dynamodb:PutItem",  # create_key: each Put of its transaction
        "dynamodb:ConditionCheckItem",  # create_key: the customer exists
        "dynamodb:UpdateItem",  # revoke_key: each Update of its transaction
    }
)
"""IAM actions this adapter's calls need (TransactWriteItems is authorised per contained action)."""

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)

KEY_PK_PREFIX = "APIKEY#"
KEY_SK = "#KEY"
CUSTOMER_KEY_SK_PREFIX = "APIKEY#"
_STORAGE_ATTRIBUTES = ("pk", "sk")


def _key_item_key(key_id: str) -> dict[str, Any]:
    return to_item({"pk": KEY_PK_PREFIX + key_id, "sk": KEY_SK})


def _listing_key(customer_id: str, key_id: str) -> dict[str, Any]:
    return to_item({"pk": customer_pk(customer_id), "sk": CUSTOMER_KEY_SK_PREFIX + key_id})


def _document(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in from_item(item).items() if k not in _STORAGE_ATTRIBUTES}


class DynamoDBApiKeyStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def create_key(self, key: StoredApiKey) -> None:
        """Store a new key; `NotFoundError` when the customer does not exist."""
        public = key.public().model_dump(mode="json", exclude_none=True)
        actions: list[Any] = [
            {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": to_item({"pk": customer_pk(key.customer_id), "sk": PROFILE_SK}),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(
                        {
                            "pk": KEY_PK_PREFIX + key.key_id,
                            "sk": KEY_SK,
                            **key.model_dump(mode="json", exclude_none=True),
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(
                        {"pk": customer_pk(key.customer_id), "sk": CUSTOMER_KEY_SK_PREFIX + key.key_id, **public}
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if error_code(exc) == "TransactionCanceledException" and reasons[:1] == ["ConditionalCheckFailed"]:
                raise NotFoundError(f"no customer {key.customer_id!r}") from None
            if error_code(exc) == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons:
                raise ConflictError(f"key id {key.key_id} exists already") from None
            raise translate(exc, "create api key") from exc
        except BotoCoreError as exc:
            raise translate(exc, "create api key") from exc

    def get_key(self, key_id: str) -> StoredApiKey | None:
        """The key with this id (a strongly consistent read: a revoke counts at once)."""
        try:
            response = self._client.get_item(TableName=self._table, Key=_key_item_key(key_id), ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "get api key") from exc
        item = response.get("Item")
        return None if item is None else StoredApiKey.model_validate(_document(item))

    def list_keys(self, customer_id: str) -> list[ApiKey]:
        """The customer's keys, revoked ones included, oldest first."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :key)",
            "ExpressionAttributeValues": to_item({":pk": customer_pk(customer_id), ":key": CUSTOMER_KEY_SK_PREFIX}),
            "ConsistentRead": True,
        }
        keys: list[ApiKey] = []
        while True:
            try:
                page = self._client.query(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "list api keys") from exc
            keys.extend(ApiKey.model_validate(_document(item)) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(keys, key=lambda key: (key.created_at, key.key_id))

    def revoke_key(self, customer_id: str, key_id: str, *, now_ms: int) -> bool:
        """Revoke one of the customer's keys: True when this call revoked it, False when it already was.

        `NotFoundError` when the customer has no such key (another customer's key included).
        """
        update = {
            "UpdateExpression": "SET revoked_at = :now",
            "ExpressionAttributeValues": to_item({":now": now_ms, ":me": customer_id}),
        }
        actions: list[Any] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _key_item_key(key_id),
                    "ConditionExpression": "customer_id = :me AND attribute_not_exists(revoked_at)",
                    **update,
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _listing_key(customer_id, key_id),
                    "ConditionExpression": "attribute_exists(pk) AND customer_id = :me",
                    **update,
                }
            },
        ]
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise translate(exc, "revoke api key") from exc
            current = self.get_key(key_id)
            if current is None or current.customer_id != customer_id:
                raise NotFoundError(f"customer {customer_id!r} has no key {key_id!r}") from None
            if current.revoked:
                return False
            raise translate(exc, "revoke api key") from exc
        except BotoCoreError as exc:
            raise translate(exc, "revoke api key") from exc
        return True


def api_key_store(
    table_name: str, *, region: str | None = None, endpoint_url: str | None = None
) -> DynamoDBApiKeyStore:
    """A store on its own client: the default credentials chain, or `endpoint_url` (else AWS_ENDPOINT_URL)."""
    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        raise ConfigurationError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    client = session.client("dynamodb", endpoint_url=endpoint_url or None, config=SDK_CONFIG)
    return DynamoDBApiKeyStore(client, table_name)
