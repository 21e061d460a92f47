"""Least privilege: every action a function's role grants is one its code calls, or one Lambda itself
performs with that role because of how the template configures the function.

How the check works:
- each adapter module declares the IAM actions its SDK calls need (`IAM_ACTIONS`);
- `FUNCTION_ADAPTERS` below says which adapters each function is wired with (see
  `pipeline/composition.py`: `build_fan_out`, `build_parser`, `build_consolidator`, `build_sweeper`, `rules_service`,
  `build_authorizer`);
- `_platform_actions` adds what Lambda does with the role: write the function's logs, send X-Ray traces
  (`Tracing: Active`), poll the Kinesis stream (a Kinesis event) and send to on-failure destinations.
The granularity is the adapter, not the method: a role may still hold an action of an adapter the
function uses but a method it never calls; review keeps those out (the comments beside `IAM_ACTIONS`
say which method needs what).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.dynamodb_api_keys import KEY_PK_PREFIX
from tests.infra.cfn import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"

FUNCTION_ADAPTERS: dict[str, tuple[str, ...]] = {
    "FanOutFunction": ("dynamodb_tracking", "dynamodb_config", "lambda_invoker", "sqs_rejects"),
    "ParserFunction": (
        "dynamodb_tracking",
        "dynamodb_config",
        "dynamodb_matches",
        "dynamodb_gates",
        "dynamodb_rule_health",
        "lambda_invoker",
        "notifiers",
    ),
    "ConsolidatorFunction": ("dynamodb_tracking",),
    "SweeperFunction": (
        "dynamodb_tracking",
        "dynamodb_config",
        "dynamodb_matches",
        "dynamodb_gates",
        "lambda_invoker",
        "kinesis_reader",
        "notifiers",
    ),
    "RulesApiFunction": ("dynamodb_config",),
    "AuthorizerFunction": ("dynamodb_api_keys",),
}
PENDING = {"kinesis_reader": "issue 3"}
"""Adapters another issue is writing; their missing declaration skips instead of failing."""

LOGS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})
TRACING = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})
KINESIS_EVENT = frozenset(
    {
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
        "kinesis:SubscribeToShard",
    }
)
SQS_DESTINATION = frozenset({"sqs:SendMessage"})


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}


def _statements(template: dict[str, Any], function: dict[str, Any]) -> list[dict[str, Any]]:
    role = function["Properties"]["Role"]["Fn::GetAtt"].split(".")[0]
    policies = template["Resources"][role]["Properties"]["Policies"]
    return [statement for policy in policies for statement in policy["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _granted(template: dict[str, Any], function: dict[str, Any]) -> set[str]:
    return {action for s in _statements(template, function) for action in _as_list(s["Action"])}


def _platform_actions(template: dict[str, Any], function: dict[str, Any]) -> set[str]:
    properties = function["Properties"]
    globals_ = template.get("Globals", {}).get("Function", {})
    actions = set(LOGS)
    if properties.get("Tracing", globals_.get("Tracing")) == "Active":
        actions |= TRACING
    events = properties.get("Events", {}).values()
    if any(event["Type"] == "Kinesis" for event in events):
        actions |= KINESIS_EVENT
    destinations = [
        event["Properties"].get("DestinationConfig", {}) for event in events if event["Type"] == "Kinesis"
    ] + [properties.get("EventInvokeConfig", {}).get("DestinationConfig", {})]
    if any(d.get("OnFailure") for d in destinations):
        actions |= SQS_DESTINATION
    return actions


def _declared(function_name: str) -> set[str]:
    declared: set[str] = set()
    for adapter in FUNCTION_ADAPTERS[function_name]:
        try:
            module = importlib.import_module(f"pipeline.adapters.{adapter}")
        except ModuleNotFoundError:
            if adapter in PENDING:
                pytest.skip(f"pipeline/adapters/{adapter}.py ({PENDING[adapter]}) does not exist yet")
            raise
        actions = getattr(module, "IAM_ACTIONS", None)
        if actions is None:
            if adapter in PENDING:
                pytest.skip(f"pipeline/adapters/{adapter}.py ({PENDING[adapter]}) does not declare IAM_ACTIONS yet")
            pytest.fail(f"pipeline/adapters/{adapter}.py must declare IAM_ACTIONS")
        declared |= set(actions)
    return declared


def test_every_function_has_an_adapter_mapping(template: dict[str, Any]) -> None:
    assert set(_functions(template)) == set(FUNCTION_ADAPTERS)


@pytest.mark.parametrize("function_name", sorted(FUNCTION_ADAPTERS))
def test_a_role_grants_no_action_its_function_does_not_need(template: dict[str, Any], function_name: str) -> None:
    function = _functions(template)[function_name]
    allowed = _declared(function_name) | _platform_actions(template, function)

    extra = _granted(template, function) - allowed

    assert not extra, f"{function_name}'s role grants actions no adapter it uses declares: {sorted(extra)}"


@pytest.mark.parametrize("function_name", sorted(FUNCTION_ADAPTERS))
def test_no_wildcard_actions_and_only_x_ray_on_every_resource(template: dict[str, Any], function_name: str) -> None:
    for statement in _statements(template, _functions(template)[function_name]):
        assert statement["Effect"] == "Allow"
        assert not any("*" in action for action in _as_list(statement["Action"])), statement
        if "*" in _as_list(statement["Resource"]):
            # PutTraceSegments / PutTelemetryRecords support no resource-level scoping (AWS's rule):
            # exactly those two may have Resource "*", in a statement of their own.
            assert statement["Resource"] == "*", statement
            assert set(_as_list(statement["Action"])) == TRACING, statement


@pytest.mark.parametrize("function_name", sorted(FUNCTION_ADAPTERS))
def test_a_traced_function_may_send_its_traces(template: dict[str, Any], function_name: str) -> None:
    function = _functions(template)[function_name]
    assert _platform_actions(template, function) >= TRACING  # Tracing: Active
    on_every_resource = {
        action
        for statement in _statements(template, function)
        if statement["Resource"] == "*"
        for action in _as_list(statement["Action"])
    }

    assert on_every_resource == TRACING


def test_every_role_in_the_template_is_free_of_wildcard_actions(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                assert not any("*" in action for action in _as_list(statement["Action"])), (name, statement)
                if "*" in _as_list(statement["Resource"]):
                    assert set(_as_list(statement["Action"])) == TRACING, (name, statement)


def test_the_authorizer_reads_only_key_items(template: dict[str, Any]) -> None:
    statements = _statements(template, _functions(template)["AuthorizerFunction"])
    (read,) = [s for s in statements if any(a.startswith("dynamodb:") for a in _as_list(s["Action"]))]

    assert _as_list(read["Action"]) == ["dynamodb:GetItem"]
    assert read["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{KEY_PK_PREFIX}*"]}}
