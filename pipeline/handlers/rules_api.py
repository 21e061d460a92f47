"""Rules API Lambda (API Gateway REST, IAM or API-key auth): the calling customer's rules and channels."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.composition import rules_service
from pipeline.observability import invocation, traced
from pipeline.rules_http import build_resolver

__all__ = ["app", "handler"]

app = build_resolver(rules_service)


def _authorized_customer(event: dict[str, Any]) -> str | None:
    """The customer a Lambda authorizer vouched for, if one did (IAM callers are mapped later)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    customer_id = authorizer.get("customer_id") if isinstance(authorizer, dict) else None
    return customer_id if isinstance(customer_id, str) else None


@traced(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with invocation(context, handler="rules-api", customer_id=_authorized_customer(event)):
        return app.resolve(event, context)
