"""The rules HTTP API: routes over `RulesService` for the calling customer's rules and channels.

The customer is who the authorizer says is calling, never anything in the request: a Lambda
authorizer's context (`requestContext.authorizer.customer_id`), else the IAM principal API Gateway
verified (`requestContext.identity.userArn`), mapped to a customer in the config table. Every route
is scoped to that customer, so one customer can neither read nor change another's rules: another
customer's rule id simply does not exist for them. Channel URLs are secrets and are only ever
returned masked; a webhook's signing secret is returned once, by the write that generated it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ForbiddenError, UnauthorizedError
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import ConflictError, NotFoundError, RejectedError
from pipeline.models import IDENTIFIER_PATTERN, Channel, ChannelType, Rule
from pipeline.rules_service import ChannelWrite, RulesService, mask_url, secret_hint, validated

__all__ = [
    "API_TITLE",
    "API_VERSION",
    "ChannelBody",
    "ChannelView",
    "NewRuleBody",
    "RuleBody",
    "RuleView",
    "build_resolver",
    "caller_customer",
    "openapi_document",
]

API_TITLE = "logfan rules API"
API_VERSION = "1.0.0"
_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/[^/]+$")

RuleId = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="The rule's id, unique per customer")]
ChannelId = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="The channel's id, unique per customer")]


class RuleBody(BaseModel):
    """A rule as the customer writes it; whose rule it is comes from the caller, never from here."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    patterns: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(min_length=1, max_length=32)
    match: Literal["any", "all"] = "any"
    ignore_case: bool = False
    log_groups: list[str] = Field(default_factory=list)
    channel: str = Field(pattern=IDENTIFIER_PATTERN)
    version: int | None = Field(default=None, ge=1, description="Replace only if the rule is still at this version")


class NewRuleBody(RuleBody):
    rule_id: str = Field(pattern=IDENTIFIER_PATTERN)


class RuleView(BaseModel):
    rule_id: str
    name: str
    patterns: list[str]
    match: Literal["any", "all"]
    ignore_case: bool
    log_groups: list[str]
    channel: str
    version: int
    updated_at: int | None
    status: Literal["active", "quarantined"]
    quarantine_reason: str
    quarantined_at: int | None

    @classmethod
    def of(cls, rule: Rule) -> RuleView:
        return cls.model_validate(rule.model_dump(exclude={"customer_id"}))


class ChannelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ChannelType
    url: str | None = Field(default=None, description="https URL of a public host (slack, webhook); never shown again")
    topic_arn: str | None = Field(default=None, description="SNS topic ARN (sns)")
    bus: str | None = Field(default=None, description="EventBridge event bus name or ARN (eventbridge)")
    detail_type: str | None = Field(default=None, description="EventBridge DetailType (default logfan.notification)")
    secret: str | None = Field(
        default=None,
        description="Webhook signing secret (at least 16 characters); omit it to keep the current one, or to "
        "have one generated and returned once in `new_secret`",
    )
    rotate_secret: bool = Field(default=False, description="Webhook: replace the signing secret with a new one")


class ChannelView(BaseModel):
    channel_id: str
    type: ChannelType
    url: str | None = Field(default=None, description="Masked: scheme and host only")
    topic_arn: str | None = None
    bus: str | None = None
    detail_type: str | None = None
    has_secret: bool = Field(default=False, description="Webhook: whether deliveries are signed")
    secret_hint: str | None = Field(default=None, description="The signing secret's last four characters")
    new_secret: str | None = Field(
        default=None,
        description="Only in the response of the write that generated it: the webhook signing secret. "
        "Store it now; it is never shown again.",
    )
    failures: int = Field(default=0, description="Permanent delivery failures since the channel was last edited")
    last_error: str | None = Field(default=None, description="Why the last delivery failed for good")
    last_failed_at: int | None = Field(default=None, description="When it failed (epoch ms)")

    @classmethod
    def of(cls, channel: Channel, *, new_secret: str | None = None) -> ChannelView:
        return cls(
            channel_id=channel.channel_id,
            type=channel.type,
            url=mask_url(channel.url),
            topic_arn=channel.topic_arn,
            bus=channel.bus,
            detail_type=channel.detail_type,
            has_secret=channel.has_secret,
            secret_hint=secret_hint(channel.secret),
            new_secret=new_secret,
            failures=channel.failures or 0,
            last_error=channel.last_error,
            last_failed_at=channel.last_failed_at,
        )

    @classmethod
    def written(cls, write: ChannelWrite) -> ChannelView:
        return cls.of(write.channel, new_secret=write.new_secret)


class Problem(BaseModel):
    message: str
    problems: list[str] = Field(default_factory=list)


def _principal(identity: dict[str, Any]) -> str | None:
    """The verified IAM caller; an assumed-role session stands for its role."""
    arn = identity.get("userArn")
    if not isinstance(arn, str) or not arn:
        return None
    assumed = _ASSUMED_ROLE.match(arn)
    return f"arn:{assumed[1]}:iam::{assumed[2]}:role/{assumed[3]}" if assumed else arn


def caller_customer(request_context: dict[str, Any], service: RulesService) -> str:
    """Who is calling, from what API Gateway verified; `UnauthorizedError` / `ForbiddenError` otherwise."""
    authorizer = request_context.get("authorizer") or {}
    customer_id = authorizer.get("customer_id") if isinstance(authorizer, dict) else None
    if isinstance(customer_id, str) and customer_id:
        return customer_id
    principal = _principal(request_context.get("identity") or {})
    if principal is None:
        raise UnauthorizedError("no authenticated caller")
    found = service.customer_for_principal(principal)
    if found is None:
        raise ForbiddenError("this caller is not registered for any customer")
    return found


def _json(status: int, body: BaseModel | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=None if body is None else body.model_dump(mode="json"),
    )


def build_resolver(service: Callable[[], RulesService]) -> APIGatewayRestResolver:
    """The API's routes over the service `service()` returns (built lazily by the caller)."""
    app = APIGatewayRestResolver(enable_validation=True)

    def customer() -> str:
        return caller_customer(app.current_event.raw_event.get("requestContext") or {}, service())

    def rule_of(customer_id: str, rule_id: str, body: RuleBody) -> Rule:
        data = body.model_dump(exclude={"version", "rule_id"})
        return validated(Rule, {"customer_id": customer_id, "rule_id": rule_id, **data})

    def not_found(exc: NotFoundError) -> Response[Any]:
        return _json(404, Problem(message=str(exc)))

    def conflict(exc: ConflictError) -> Response[Any]:
        return _json(409, Problem(message=str(exc)))

    def rejected(exc: RejectedError) -> Response[Any]:
        return _json(422, Problem(message="rejected", problems=exc.problems))

    app.exception_handler(NotFoundError)(not_found)
    app.exception_handler(ConflictError)(conflict)
    app.exception_handler(RejectedError)(rejected)

    @app.get("/rules", summary="List the caller's rules", tags=["rules"])
    def list_rules() -> list[RuleView]:
        return [RuleView.of(rule) for rule in service().list_rules(customer())]

    @app.post("/rules", summary="Register a rule (vetted)", tags=["rules"], responses={201: {"description": "Created"}})
    def create_rule(body: NewRuleBody) -> Response[RuleView]:
        stored = service().create_rule(rule_of(customer(), body.rule_id, body))
        return _json(201, RuleView.of(stored))

    @app.get("/rules/<rule_id>", summary="One of the caller's rules", tags=["rules"])
    def get_rule(rule_id: RuleId) -> RuleView:
        return RuleView.of(service().get_rule(customer(), rule_id))

    @app.put("/rules/<rule_id>", summary="Create or replace a rule (an edit lifts a quarantine)", tags=["rules"])
    def put_rule(rule_id: RuleId, body: RuleBody) -> Response[RuleView]:
        stored, created = service().put_rule(rule_of(customer(), rule_id, body), body.version)
        return _json(201 if created else 200, RuleView.of(stored))

    @app.delete("/rules/<rule_id>", summary="Delete a rule", tags=["rules"], responses={204: {"description": "Gone"}})
    def delete_rule(rule_id: RuleId) -> Response[None]:
        service().remove_rule(customer(), rule_id)
        return _json(204)

    @app.get("/channels", summary="List the caller's channels (URLs masked)", tags=["channels"])
    def list_channels() -> list[ChannelView]:
        return [ChannelView.of(channel) for channel in service().list_channels(customer())]

    @app.get("/channels/<channel_id>", summary="One of the caller's channels (URL masked)", tags=["channels"])
    def get_channel(channel_id: ChannelId) -> ChannelView:
        return ChannelView.of(service().get_channel(customer(), channel_id))

    @app.put("/channels/<channel_id>", summary="Add or replace a channel (vetted)", tags=["channels"])
    def put_channel(channel_id: ChannelId, body: ChannelBody) -> Response[ChannelView]:
        channel = validated(Channel, {"channel_id": channel_id, **body.model_dump(exclude={"rotate_secret"})})
        write = service().put_channel(customer(), channel, rotate_secret=body.rotate_secret)
        return _json(201 if write.created else 200, ChannelView.written(write))

    @app.delete(
        "/channels/<channel_id>",
        summary="Delete a channel no rule uses",
        tags=["channels"],
        responses={204: {"description": "Gone"}},
    )
    def delete_channel(channel_id: ChannelId) -> Response[None]:
        service().remove_channel(customer(), channel_id)
        return _json(204)

    return app


def _unbuilt() -> RulesService:  # pragma: no cover - only the schema is read from this resolver
    raise RuntimeError("the OpenAPI resolver serves no requests")


def openapi_document() -> str:
    """The API's OpenAPI document, as checked in at infra/openapi.json."""
    schema = build_resolver(_unbuilt).get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description="Manage the calling customer's log-alerting rules and notification channels.",
    )
    return json.dumps(json.loads(schema), indent=2, sort_keys=True) + "\n"
