"""What every DynamoDB adapter shares: (de)serialisation, error translation, bounded retries."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import StoreError, TransientStoreError
from pipeline.invoking import backoff_delay

__all__ = [
    "BATCH_GET_LIMIT",
    "BATCH_WRITE_LIMIT",
    "TRANSACTION_LIMIT",
    "TRANSIENT_CODES",
    "cancelled_by_condition",
    "conditional_write",
    "error_code",
    "from_item",
    "retry_unprocessed",
    "to_item",
    "translate",
]

BATCH_WRITE_LIMIT = 25
"""BatchWriteItem takes at most 25 put/delete requests."""
BATCH_GET_LIMIT = 100
"""BatchGetItem takes at most 100 keys."""
TRANSACTION_LIMIT = 100
"""TransactWriteItems takes at most 100 actions."""
UNPROCESSED_ATTEMPTS = 8

TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_from_dynamo(v) for v in value]
    return value


def to_item(document: Mapping[str, Any]) -> dict[str, Any]:
    """A plain document (str, int, float, bool, None, lists, dicts) -> DynamoDB attribute map."""
    return {key: _serializer.serialize(_to_dynamo(value)) for key, value in document.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _from_dynamo(_deserializer.deserialize(value)) for key, value in item.items()}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: ClientError | BotoCoreError, action: str) -> StoreError:
    """SDK errors -> our errors: throttling and 5xx are transient, the rest are not."""
    if isinstance(exc, BotoCoreError):
        return TransientStoreError(f"{action}: {exc}")
    code = error_code(exc)
    if code in TRANSIENT_CODES:
        return TransientStoreError(f"{action}: {code}")
    return StoreError(f"{action}: {code}: {exc}")


def conditional_write(
    action: str, call: Callable[[], object], *, already_mine: Callable[[dict[str, Any]], bool] | None = None
) -> bool:
    """Run one conditional write: True when it applied, False when its condition did not hold.

    `already_mine` recognises, in the item a failed condition returns (the request must ask for
    `ReturnValuesOnConditionCheckFailure=ALL_OLD`), this very write applied by an earlier attempt:
    DynamoDB can answer 500 to a write it applied, and the SDK's retry then fails the condition
    against its own first attempt.
    """
    try:
        call()
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            item: Any = exc.response.get("Item")
            return bool(already_mine and isinstance(item, dict) and already_mine(from_item(item)))
        raise translate(exc, action) from exc
    except BotoCoreError as exc:
        raise translate(exc, action) from exc
    return True


def cancelled_by_condition(exc: ClientError) -> bool:
    """A transaction cancelled only because a condition did not hold (not by throttling or conflicts)."""
    if error_code(exc) != "TransactionCanceledException":
        return False
    reasons = [str(reason.get("Code") or "None") for reason in exc.response.get("CancellationReasons", [])]
    return "ConditionalCheckFailed" in reasons and set(reasons) <= {"ConditionalCheckFailed", "None"}


def retry_unprocessed(
    call: Callable[[dict[str, Any]], dict[str, Any]],
    request: dict[str, Any],
    *,
    action: str,
    backoff_s: float = 0.05,
    attempts: int = UNPROCESSED_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run a BatchWriteItem-style call until nothing is left unprocessed, with jittered backoff."""
    pending = request
    for attempt in range(attempts):
        pending = call(pending)
        if not pending:
            return
        sleep(backoff_delay(attempt, backoff_s))
    raise TransientStoreError(f"{action}: items still unprocessed after {attempts} attempts")
