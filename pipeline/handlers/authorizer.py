"""Rules API key authorizer (API Gateway REST, TOKEN type): which customer an `Authorization` key is.

Allowed: a policy for every route of the API's stage, so a cached decision serves any route, and
`{"customer_id", "key_id"}` as the context API Gateway hands the rules API. Anything else: Deny
(403). A refusal is an answer, not an error, so it does not count as a function error.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.api_keys import authenticate
from pipeline.composition import authorizer_deps
from pipeline.observability import annotate, invocation, traced

__all__ = ["ANONYMOUS", "handler"]

ANONYMOUS = "anonymous"
"""The principal of a refused request."""


@traced(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = authorizer_deps()
    request = APIGatewayAuthorizerTokenEvent(event)
    route = request.parsed_arn
    with invocation(context, handler="authorizer") as logger:
        try:
            decision = authenticate(deps.keys, request.authorization_token, deps.metrics)
        finally:
            deps.metrics.flush()
        annotate(customer_id=decision.customer_id)
        logger.info(
            "api key checked",
            extra={
                "allowed": decision.allowed,
                "reason": decision.reason,
                "key_id": decision.key_id,
                "customer_id": decision.customer_id,
            },
        )
    response = APIGatewayAuthorizerResponse(
        principal_id=decision.customer_id or ANONYMOUS,
        region=route.region,
        aws_account_id=route.aws_account_id,
        api_id=route.api_id,
        stage=route.stage,
        context=decision.context() or None,
        partition=route.partition,
    )
    if decision.allowed:
        response.allow_all_routes()
    else:
        response.deny_all_routes()
    return response.asdict()
