"""Rules API Lambda (API Gateway REST, IAM auth): the calling customer's rules and channels."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.composition import rules_service
from pipeline.observability import invocation
from pipeline.rules_http import build_resolver

__all__ = ["app", "handler"]

app = build_resolver(rules_service)


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with invocation(context, handler="rules-api"):
        return app.resolve(event, context)
