"""The rules API: the caller's customer comes from the authorizer, and no customer reaches another's rules."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.local.api_server import LOCAL_CUSTOMER_HEADER, make_server
from pipeline.local.aws import LocalAws
from pipeline.models import Channel, ChannelType
from pipeline.rules_http import build_resolver, openapi_document
from pipeline.rules_service import RulesService
from pipeline.vetting import VettingLimits

ROOT = Path(__file__).resolve().parents[2]
SECRET = "https://hooks.slack.com/services/T0/B0/s3cr3t"
GLOBEX_ROLE = "arn:aws:iam::444455556666:role/globex-admin"


@pytest.fixture
def service(aws: LocalAws) -> RulesService:
    service = RulesService(DynamoDBConfigStore(aws.dynamodb, "logfan-config"), VettingLimits())
    service.add_customer("acme", accounts=["111122223333"])
    service.add_customer("globex", accounts=["444455556666"], principals=[GLOBEX_ROLE])
    for customer in ("acme", "globex"):
        service.put_channel(customer, Channel(channel_id="ops", type=ChannelType.SLACK, url=SECRET))
    return service


def _event(
    method: str, path: str, body: Any = None, *, customer: str | None = None, user_arn: str | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event as the authorizer leaves it."""
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "requestContext": {
            "httpMethod": method,
            "path": path,
            "stage": "v1",
            "requestId": "r",
            "identity": {"userArn": user_arn} if user_arn else {},
            "authorizer": {"customer_id": customer} if customer else None,
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


class Api:
    def __init__(self, service: RulesService) -> None:
        self._app = build_resolver(lambda: service)

    def __call__(self, method: str, path: str, body: Any = None, **caller: Any) -> tuple[int, Any]:
        response = self._app.resolve(_event(method, path, body, **caller), None)  # type: ignore[arg-type]
        return int(response["statusCode"]), json.loads(response["body"]) if response.get("body") else None


@pytest.fixture
def api(service: RulesService) -> Api:
    return Api(service)


def _rule(rule_id: str, pattern: str = "CreditCardExpired") -> dict[str, Any]:
    return {"rule_id": rule_id, "patterns": [pattern], "channel": "ops"}


def test_a_customer_manages_its_rules_through_the_api(api: Api) -> None:
    created = api("POST", "/rules", _rule("cards"), customer="acme")
    edited = api("PUT", "/rules/cards", {"patterns": ["CardExpired"], "channel": "ops", "version": 1}, customer="acme")
    stale = api("PUT", "/rules/cards", {"patterns": ["X"], "channel": "ops", "version": 1}, customer="acme")
    listed = api("GET", "/rules", customer="acme")
    deleted = api("DELETE", "/rules/cards", customer="acme")
    gone = api("GET", "/rules/cards", customer="acme")

    assert created[0] == 201 and created[1]["version"] == 1
    assert edited[0] == 200 and edited[1]["version"] == 2
    assert stale[0] == 409
    assert [(r["rule_id"], r["version"], r["status"]) for r in listed[1]] == [("cards", 2, "active")]
    assert deleted[0] == 204
    assert gone[0] == 404


def test_a_customer_can_neither_read_nor_change_another_customers_rules(api: Api, service: RulesService) -> None:
    # Given a rule of acme's
    api("POST", "/rules", _rule("cards"), customer="acme")

    # When globex lists, reads, replaces and deletes "cards"
    listed = api("GET", "/rules", customer="globex")
    read = api("GET", "/rules/cards", customer="globex")
    deleted = api("DELETE", "/rules/cards", customer="globex")
    replaced = api("PUT", "/rules/cards", {"patterns": ["pwned"], "channel": "ops"}, customer="globex")

    # Then globex sees none of acme's, and its PUT made a rule of its own
    assert listed == (200, [])
    assert read[0] == 404
    assert deleted[0] == 404
    assert replaced[0] == 201
    assert service.get_rule("acme", "cards").patterns == ["CreditCardExpired"]
    assert service.get_rule("globex", "cards").patterns == ["pwned"]


def test_the_customer_cannot_be_chosen_in_the_body(api: Api, service: RulesService) -> None:
    status, body = api("POST", "/rules", {**_rule("cards"), "customer_id": "acme"}, customer="globex")

    assert status == 422
    assert body["detail"] == [{"loc": ["body", "customer_id"], "type": "extra_forbidden"}]
    assert service.list_rules("acme") == []


def test_an_iam_caller_is_mapped_to_its_customer_and_strangers_are_refused(api: Api) -> None:
    session = "arn:aws:sts::444455556666:assumed-role/globex-admin/alice"

    created = api("POST", "/rules", _rule("mine"), user_arn=session)
    stranger = api("GET", "/rules", user_arn="arn:aws:iam::999999999999:user/mallory")
    anonymous = api("GET", "/rules")

    assert created[0] == 201
    assert api("GET", "/rules", customer="globex")[1][0]["rule_id"] == "mine"
    assert stranger[0] == 403
    assert anonymous[0] == 401


def test_a_catastrophic_pattern_is_rejected_with_the_reason(api: Api) -> None:
    status, body = api("POST", "/rules", _rule("csv", r"^(.*?,){11}P"), customer="acme")

    assert status == 422
    assert "backtracks catastrophically" in body["problems"][0]


def test_quarantine_shows_in_the_api_and_an_edit_lifts_it(aws: LocalAws, api: Api) -> None:
    api("POST", "/rules", _rule("cards"), customer="acme")
    DynamoDBConfigStore(aws.dynamodb, "logfan-config").quarantine_rule("acme", "cards", "over budget 3 times", 42)

    shown = api("GET", "/rules/cards", customer="acme")[1]
    lifted = api("PUT", "/rules/cards", {"patterns": ["CardExpired"], "channel": "ops"}, customer="acme")[1]

    assert (shown["status"], shown["quarantine_reason"], shown["quarantined_at"]) == (
        "quarantined",
        "over budget 3 times",
        42,
    )
    assert (lifted["status"], lifted["quarantined_at"], lifted["version"]) == ("active", None, 2)


def test_channel_urls_are_masked_and_never_echoed_in_errors(api: Api) -> None:
    private = "https://10.0.0.8/hooks/s3cr3t"

    listed = api("GET", "/channels", customer="acme")
    refused = api("PUT", "/channels/inside", {"type": "webhook", "url": private}, customer="acme")
    malformed = api("PUT", "/channels/bad", {"type": "webhook", "url": "ftp://host/s3cr3t"}, customer="acme")

    assert listed == (
        200,
        [
            {
                "channel_id": "ops",
                "type": "slack",
                "url": "https://hooks.slack.com/***",
                "topic_arn": None,
                "bus": None,
                "detail_type": None,
                "has_secret": False,
                "secret_hint": None,
                "new_secret": None,
                "failures": 0,
                "last_error": None,
                "last_failed_at": None,
            }
        ],
    )
    assert refused[0] == 422 and "not a public address" in refused[1]["problems"][0]
    assert malformed[0] == 422
    assert "s3cr3t" not in json.dumps([listed, refused, malformed])


def test_a_webhook_secret_is_returned_once_then_only_hinted(api: Api) -> None:
    # When acme adds a webhook without a secret, reads it, then edits its URL
    created = api(
        "PUT", "/channels/hook", {"type": "webhook", "url": "https://alerts.acme.example/s3cr3t"}, customer="acme"
    )
    read = api("GET", "/channels/hook", customer="acme")
    edited = api(
        "PUT", "/channels/hook", {"type": "webhook", "url": "https://alerts.acme.example/new"}, customer="acme"
    )
    listed = api("GET", "/channels", customer="acme")

    # Then only the creating response carries the secret; later views say there is one, and its end
    secret = created[1]["new_secret"]
    assert created[0] == 201 and secret.startswith("lfs_") and len(secret) >= 32
    assert (read[1]["has_secret"], read[1]["secret_hint"], read[1]["new_secret"]) == (True, f"…{secret[-4:]}", None)
    assert edited[0] == 200 and edited[1]["new_secret"] is None and edited[1]["secret_hint"] == f"…{secret[-4:]}"
    assert secret not in json.dumps([read, edited, listed])


def test_a_customer_chosen_secret_is_never_echoed_and_a_short_one_is_refused(api: Api) -> None:
    chosen = "acme-chosen-secret-0001"
    body = {"type": "webhook", "url": "https://alerts.acme.example/x"}

    created = api("PUT", "/channels/hook", {**body, "secret": chosen}, customer="acme")
    short = api("PUT", "/channels/other", {**body, "secret": "short"}, customer="acme")

    assert created[0] == 201 and created[1]["new_secret"] is None and created[1]["has_secret"] is True
    assert short[0] == 422
    assert chosen not in json.dumps(created) and "short" not in json.dumps(short[1]["problems"])


def test_delivery_failures_show_on_the_channel_until_it_is_edited(aws: LocalAws, api: Api) -> None:
    # Given a permanent delivery failure recorded on acme's channel
    DynamoDBConfigStore(aws.dynamodb, "logfan-config").record_delivery_failure(
        "acme", "ops", error="slack channel ops answered HTTP 404", at_ms=1_800_000_000_000
    )

    # When acme looks at it, then fixes the URL
    shown = api("GET", "/channels/ops", customer="acme")[1]
    edited = api(
        "PUT", "/channels/ops", {"type": "slack", "url": "https://hooks.slack.com/services/T/B/new"}, customer="acme"
    )
    after = api("GET", "/channels/ops", customer="acme")[1]

    # Then the failure was shown, and the edit cleared it
    assert (shown["failures"], shown["last_error"], shown["last_failed_at"]) == (
        1,
        "slack channel ops answered HTTP 404",
        1_800_000_000_000,
    )
    assert edited[0] == 200
    assert (after["failures"], after["last_error"], after["last_failed_at"]) == (0, None, None)


def test_an_eventbridge_channel_through_the_api(api: Api) -> None:
    bus = "arn:aws:events:us-east-1:111122223333:event-bus/acme-alerts"

    created = api(
        "PUT", "/channels/bus", {"type": "eventbridge", "bus": bus, "detail_type": "acme.alert"}, customer="acme"
    )
    refused = api("PUT", "/channels/bad", {"type": "eventbridge", "bus": "not a bus"}, customer="acme")

    assert created[0] == 201
    assert (created[1]["bus"], created[1]["detail_type"], created[1]["has_secret"]) == (bus, "acme.alert", False)
    assert refused[0] == 422


def test_the_checked_in_openapi_document_is_current() -> None:
    checked_in = (ROOT / "infra" / "openapi.json").read_text(encoding="utf-8")

    assert checked_in == openapi_document(), "regenerate: logfan api openapi --out infra/openapi.json"


@pytest.fixture
def local_server(service: RulesService) -> Iterator[str]:
    server = make_server(service, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _http(url: str, method: str, body: Any = None, customer: str = "acme") -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={LOCAL_CUSTOMER_HEADER: customer, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_the_local_server_serves_the_same_api_over_http(local_server: str) -> None:
    created = _http(f"{local_server}/rules", "POST", _rule("cards"))
    mine = _http(f"{local_server}/rules/cards", "GET")
    theirs = _http(f"{local_server}/rules/cards", "GET", customer="globex")

    assert created[0] == 201
    assert mine[1]["patterns"] == ["CreditCardExpired"]
    assert theirs[0] == 404
