"""API keys on moto: the store, the authorizer in front of the rules API, and the local server.

Requests go as API Gateway sends them: the TOKEN authorizer handler first, then (when it allowed)
the rules API handler with the authorizer's context in `requestContext.authorizer`.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline import composition
from pipeline.adapters.dynamodb_api_keys import DynamoDBApiKeyStore
from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.api_keys import IssuedKey, issue_key
from pipeline.errors import ConflictError, NotFoundError
from pipeline.handlers import authorizer, rules_api
from pipeline.local.api_server import LOCAL_CUSTOMER_HEADER, make_server
from pipeline.local.aws import LocalAws
from pipeline.local.lambda_runtime import LocalLambdaContext
from pipeline.models import Channel, ChannelType
from pipeline.rules_service import RulesService
from pipeline.vetting import VettingLimits
from tests.tracing import RecordingProvider, recording_tracer

NOW = 1_764_380_000_000
TABLE = "logfan-config"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/v1/GET/rules"
SECRET = "https://hooks.slack.com/services/T0/B0/s3cr3t"


def _context(function_name: str) -> LambdaContext:
    return cast(LambdaContext, LocalLambdaContext(function_name, timeout_s=30))


@pytest.fixture
def keys(aws: LocalAws) -> DynamoDBApiKeyStore:
    return DynamoDBApiKeyStore(aws.dynamodb, TABLE)


@pytest.fixture
def service(aws: LocalAws) -> RulesService:
    service = RulesService(DynamoDBConfigStore(aws.dynamodb, TABLE), VettingLimits())
    for customer, account in (("acme", "111122223333"), ("globex", "444455556666")):
        service.add_customer(customer, accounts=[account])
        service.put_channel(customer, Channel(channel_id="ops", type=ChannelType.SLACK, url=SECRET))
    return service


def _issue(keys: DynamoDBApiKeyStore, customer_id: str) -> IssuedKey:
    issued = issue_key(customer_id, now_ms=NOW)
    keys.create_key(issued.stored)
    return issued


# -- the store ------------------------------------------------------------------------------------
def test_a_created_key_is_found_by_id_and_listed_for_its_customer_only(
    service: RulesService, keys: DynamoDBApiKeyStore
) -> None:
    acme = _issue(keys, "acme")
    globex = _issue(keys, "globex")

    assert keys.get_key(acme.stored.key_id) == acme.stored
    assert [k.key_id for k in keys.list_keys("acme")] == [acme.stored.key_id]
    assert [k.key_id for k in keys.list_keys("globex")] == [globex.stored.key_id]
    assert keys.get_key("0123456789abcdef") is None


def test_the_table_holds_the_hash_never_the_key(
    aws: LocalAws, service: RulesService, keys: DynamoDBApiKeyStore
) -> None:
    issued = _issue(keys, "acme")

    items = aws.dynamodb.scan(TableName=TABLE)["Items"]

    assert issued.key not in json.dumps(items)
    assert issued.stored.key_hash in json.dumps(items)


def test_a_key_needs_an_existing_customer(service: RulesService, keys: DynamoDBApiKeyStore) -> None:
    with pytest.raises(NotFoundError, match="no customer 'initech'"):
        keys.create_key(issue_key("initech", now_ms=NOW).stored)

    assert keys.list_keys("initech") == []


def test_a_key_id_is_never_reused(service: RulesService, keys: DynamoDBApiKeyStore) -> None:
    issued = _issue(keys, "acme")
    twin = issue_key("acme", now_ms=NOW, key_id=lambda: issued.stored.key_id)

    with pytest.raises(ConflictError):
        keys.create_key(twin.stored)

    assert keys.get_key(issued.stored.key_id) == issued.stored


def test_revoking_marks_both_items_once(service: RulesService, keys: DynamoDBApiKeyStore) -> None:
    issued = _issue(keys, "acme")

    first = keys.revoke_key("acme", issued.stored.key_id, now_ms=NOW + 5)
    again = keys.revoke_key("acme", issued.stored.key_id, now_ms=NOW + 9)

    assert (first, again) == (True, False)
    stored = keys.get_key(issued.stored.key_id)
    assert stored is not None and stored.revoked_at == NOW + 5
    assert [k.revoked_at for k in keys.list_keys("acme")] == [NOW + 5]


def test_a_customer_cannot_revoke_another_customers_key(service: RulesService, keys: DynamoDBApiKeyStore) -> None:
    acme = _issue(keys, "acme")

    with pytest.raises(NotFoundError):
        keys.revoke_key("globex", acme.stored.key_id, now_ms=NOW)
    with pytest.raises(NotFoundError):
        keys.revoke_key("acme", "0123456789abcdef", now_ms=NOW)

    stored = keys.get_key(acme.stored.key_id)
    assert stored is not None and not stored.revoked


# -- through API Gateway: the authorizer, then the rules API ------------------------------------------
class Gateway:
    """API Gateway with the key authorizer in front of the rules API, both the real handlers."""

    def __init__(self) -> None:
        self.policies: list[dict[str, Any]] = []

    def __call__(self, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        policy = authorizer.handler(
            {"type": "TOKEN", "authorizationToken": f"Bearer {key}", "methodArn": METHOD_ARN},
            _context("logfan-authorizer"),
        )
        self.policies.append(policy)
        (statement,) = policy["policyDocument"]["Statement"]
        if statement["Effect"] != "Allow":
            return 403, {"message": "User is not authorized to access this resource"}
        event = {
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            "multiValueHeaders": {},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "pathParameters": {"proxy": path.lstrip("/")},
            "requestContext": {
                "httpMethod": method,
                "path": f"/v1{path}",
                "stage": "v1",
                "requestId": "r",
                "identity": {"sourceIp": "203.0.113.9"},
                "authorizer": {"principalId": policy["principalId"], **policy.get("context", {})},
            },
            "body": None if body is None else json.dumps(body),
            "isBase64Encoded": False,
        }
        response = rules_api.handler(event, _context("logfan-rules-api"))
        return int(response["statusCode"]), json.loads(response["body"]) if response.get("body") else None


@pytest.fixture
def gateway(aws: LocalAws, service: RulesService, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """Both functions as on AWS: settings from the environment, clients built by the composition root."""
    monkeypatch.setenv("LOGFAN_CONFIG_TABLE", TABLE)
    composition.authorizer_deps.cache_clear()
    composition.rules_service.cache_clear()
    try:
        yield Gateway()
    finally:
        composition.authorizer_deps.cache_clear()
        composition.rules_service.cache_clear()


def _rule(rule_id: str, pattern: str = "CreditCardExpired") -> dict[str, Any]:
    return {"rule_id": rule_id, "patterns": [pattern], "channel": "ops"}


def test_a_valid_key_is_allowed_on_every_route_of_the_stage_as_its_customer(
    gateway: Gateway, keys: DynamoDBApiKeyStore
) -> None:
    acme = _issue(keys, "acme")

    status, body = gateway(acme.key, "POST", "/rules", _rule("cards"))

    (policy,) = gateway.policies
    assert status == 201 and body["rule_id"] == "cards"
    assert policy["principalId"] == "acme"
    assert policy["context"] == {"customer_id": "acme", "key_id": acme.stored.key_id}
    assert policy["policyDocument"]["Statement"] == [
        {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": ["arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/v1/*/*"],
        }
    ]


def test_a_key_of_one_customer_can_neither_read_nor_change_another_customers_rules(
    gateway: Gateway, keys: DynamoDBApiKeyStore, service: RulesService
) -> None:
    # Given a rule of globex's, and a key of acme's
    globex, acme = _issue(keys, "globex"), _issue(keys, "acme")
    assert gateway(globex.key, "POST", "/rules", _rule("cards"))[0] == 201

    # When acme's key lists, reads, replaces and deletes "cards", and reads globex's channel
    listed = gateway(acme.key, "GET", "/rules")
    read = gateway(acme.key, "GET", "/rules/cards")
    deleted = gateway(acme.key, "DELETE", "/rules/cards")
    replaced = gateway(acme.key, "PUT", "/rules/cards", {"patterns": ["pwned"], "channel": "ops"})

    # Then acme sees none of globex's rules, and its PUT made a rule of its own
    assert listed == (200, [])
    assert read[0] == 404
    assert deleted[0] == 404
    assert replaced[0] == 201
    assert service.get_rule("globex", "cards").patterns == ["CreditCardExpired"]
    assert service.get_rule("acme", "cards").patterns == ["pwned"]


def test_a_revoked_key_is_refused_from_the_next_request(gateway: Gateway, keys: DynamoDBApiKeyStore) -> None:
    acme = _issue(keys, "acme")
    before = gateway(acme.key, "GET", "/rules")

    keys.revoke_key("acme", acme.stored.key_id, now_ms=NOW + 1)
    after = gateway(acme.key, "GET", "/rules")

    assert before[0] == 200
    assert after[0] == 403
    assert gateway.policies[-1]["principalId"] == "anonymous"
    assert "context" not in gateway.policies[-1]


def test_a_wrong_or_unknown_key_is_refused(gateway: Gateway, keys: DynamoDBApiKeyStore) -> None:
    acme = _issue(keys, "acme")
    wrong_secret = acme.key[:-4] + ("aaaa" if not acme.key.endswith("aaaa") else "bbbb")
    never_stored = issue_key("acme", now_ms=NOW).key

    assert gateway(wrong_secret, "GET", "/rules")[0] == 403
    assert gateway(never_stored, "GET", "/rules")[0] == 403
    assert gateway("not-a-key", "GET", "/rules")[0] == 403
    assert all(p["policyDocument"]["Statement"][0]["Effect"] == "Deny" for p in gateway.policies)


def test_the_authorizer_and_the_api_annotate_their_traces_with_the_customer(
    gateway: Gateway, keys: DynamoDBApiKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = _issue(keys, "acme")
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    provider: RecordingProvider
    with recording_tracer() as provider:
        gateway(acme.key, "GET", "/rules")

    # The authorizer's subsegment, then the API's: both functions' handlers are named `handler`
    assert [s.annotations.get("customer_id") for s in provider.named("## handler")] == ["acme", "acme"]
    assert all(not s.metadata for s in provider.named("## handler"))  # neither response is in the trace


# -- the local server -----------------------------------------------------------------------------
@pytest.fixture
def local_server(service: RulesService, keys: DynamoDBApiKeyStore) -> Iterator[str]:
    server = make_server(service, 0, keys=keys)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _http(url: str, method: str = "GET", body: Any = None, **headers: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_the_local_server_checks_a_bearer_key_as_api_gateway_does(local_server: str, keys: DynamoDBApiKeyStore) -> None:
    acme, globex = _issue(keys, "acme"), _issue(keys, "globex")
    keys.revoke_key("globex", globex.stored.key_id, now_ms=NOW)

    created = _http(f"{local_server}/rules", "POST", _rule("cards"), Authorization=f"Bearer {acme.key}")
    mine = _http(f"{local_server}/rules/cards", Authorization=f"Bearer {acme.key}")
    revoked = _http(f"{local_server}/rules", Authorization=f"Bearer {globex.key}")
    malformed = _http(f"{local_server}/rules", Authorization="Bearer nope")

    assert created[0] == 201
    assert mine[0] == 200 and mine[1]["patterns"] == ["CreditCardExpired"]
    assert revoked == (403, {"message": "User is not authorized to access this resource"})
    assert malformed == (401, {"message": "Unauthorized"})


def test_a_key_outranks_the_local_customer_header(local_server: str, keys: DynamoDBApiKeyStore) -> None:
    acme = _issue(keys, "acme")
    _http(f"{local_server}/rules", "POST", _rule("cards"), **{LOCAL_CUSTOMER_HEADER: "globex"})

    with_key = _http(f"{local_server}/rules", Authorization=f"Bearer {acme.key}", **{LOCAL_CUSTOMER_HEADER: "globex"})
    header_only = _http(f"{local_server}/rules", **{LOCAL_CUSTOMER_HEADER: "globex"})

    assert with_key == (200, [])
    assert [rule["rule_id"] for rule in header_only[1]] == ["cards"]
