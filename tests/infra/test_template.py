"""The SAM template and the code agree: handlers, resource names, keys and environment."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from pipeline import config
from pipeline.api_keys import BEARER_PATTERN, issue_key
from pipeline.config import (
    ApiKeySettings,
    ConsolidatorSettings,
    FanOutSettings,
    ParserSettings,
    ResourceNames,
    RulesSettings,
)
from pipeline.local.aws import _tables
from pipeline.local.kinesis import EventSourceMapping
from pipeline.local.lambda_runtime import ASYNC_RETRIES
from pipeline.subscriptions import own_function_names
from tests.infra.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
SWEEPER = "pipeline.handlers.sweeper.handler"
SWEEPER_PENDING = "pipeline/handlers/sweeper.py (issue 3) does not exist yet"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def _physical(value: Any) -> str:
    """`!Sub ${Prefix}-x` with the default prefix, as the local runtime names things."""
    assert isinstance(value, dict) and "Fn::Sub" in value, value
    text = value["Fn::Sub"]
    assert isinstance(text, str)
    return text.replace("${Prefix}", ResourceNames().prefix)


HANDLERS = [
    "pipeline.handlers.fan_out.handler",
    "pipeline.handlers.parser.handler",
    "pipeline.handlers.consolidator.handler",
    SWEEPER,
    "pipeline.handlers.rules_api.handler",
    "pipeline.handlers.authorizer.handler",
]


def _sweeper_exists() -> bool:
    return (ROOT / "pipeline" / "handlers" / "sweeper.py").exists()


def test_the_template_declares_exactly_the_known_handlers(template: dict[str, Any]) -> None:
    handlers = {res["Properties"]["Handler"] for res in _resources(template, "AWS::Serverless::Function").values()}

    assert handlers == set(HANDLERS)


@pytest.mark.parametrize("path", HANDLERS)
def test_every_handler_in_the_template_imports_and_is_callable(path: str) -> None:
    if path == SWEEPER and not _sweeper_exists():
        pytest.skip(SWEEPER_PENDING)
    module, _, attribute = path.rpartition(".")

    assert callable(getattr(importlib.import_module(module), attribute))


def test_resource_names_match_what_the_local_runtime_creates(template: dict[str, Any]) -> None:
    names = ResourceNames()
    functions = {
        _physical(r["Properties"]["FunctionName"]) for r in _resources(template, "AWS::Serverless::Function").values()
    }
    tables = {_physical(r["Properties"]["TableName"]) for r in _resources(template, "AWS::DynamoDB::Table").values()}
    streams = {_physical(r["Properties"]["Name"]) for r in _resources(template, "AWS::Kinesis::Stream").values()}
    queues = {_physical(r["Properties"]["QueueName"]) for r in _resources(template, "AWS::SQS::Queue").values()}

    assert functions == {
        names.fan_out_function,
        names.parser_function,
        names.consolidator_function,
        f"{names.prefix}-sweeper",
        names.rules_api_function,
        f"{names.prefix}-authorizer",
    }
    # `logfan subscribe` excludes these functions' log groups from the account policy by name.
    assert set(own_function_names(names.prefix)) == functions
    assert tables == {names.config_table, names.batches_table, names.matches_table}
    assert streams == {names.stream}
    assert names.poison_queue in queues


def test_table_keys_and_ttl_match_the_local_tables(template: dict[str, Any]) -> None:
    declared = {
        _physical(r["Properties"]["TableName"]): r["Properties"]
        for r in _resources(template, "AWS::DynamoDB::Table").values()
    }
    for local in _tables(ResourceNames()):
        properties = declared[local["TableName"]]
        assert properties["KeySchema"] == local["KeySchema"]
        assert sorted(properties["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
            local["AttributeDefinitions"], key=lambda a: a["AttributeName"]
        )
        assert properties.get("GlobalSecondaryIndexes", []) == local.get("GlobalSecondaryIndexes", [])
    names = ResourceNames()
    for table in (names.batches_table, names.matches_table):
        assert declared[table]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def _environment(template: dict[str, Any], function: dict[str, Any]) -> set[str]:
    shared = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = function["Properties"].get("Environment", {}).get("Variables", {})
    return set(shared) | set(own)


def _settings_of(handler: str) -> type[BaseSettings]:
    """The settings model each function reads (the sweeper's arrives with issue 3)."""
    known: dict[str, type[BaseSettings] | None] = {
        "pipeline.handlers.fan_out.handler": FanOutSettings,
        "pipeline.handlers.parser.handler": ParserSettings,
        "pipeline.handlers.consolidator.handler": ConsolidatorSettings,
        SWEEPER: getattr(config, "SweeperSettings", None),
        "pipeline.handlers.rules_api.handler": RulesSettings,
        "pipeline.handlers.authorizer.handler": ApiKeySettings,
    }
    settings = known[handler]
    if settings is None:
        pytest.skip("pipeline.config.SweeperSettings (issue 3) does not exist yet")
    return settings


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_required_setting_is_set_for_its_function(template: dict[str, Any], handler: str) -> None:
    settings = _settings_of(handler)
    function = next(
        r for r in _resources(template, "AWS::Serverless::Function").values() if r["Properties"]["Handler"] == handler
    )
    required = {f"LOGFAN_{name.upper()}" for name, field in settings.model_fields.items() if field.is_required()}

    assert required <= _environment(template, function)


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_logfan_variable_a_function_gets_is_one_of_its_settings(template: dict[str, Any], handler: str) -> None:
    settings = _settings_of(handler)
    function = next(
        r for r in _resources(template, "AWS::Serverless::Function").values() if r["Properties"]["Handler"] == handler
    )
    # The shared Globals serve every function; a function's own variables must be its settings.
    shared = {
        f"LOGFAN_{name.upper()}"
        for s in (FanOutSettings, ParserSettings, ConsolidatorSettings)
        for name in s.model_fields
    }
    own = set(function["Properties"].get("Environment", {}).get("Variables", {}))
    known = {f"LOGFAN_{name.upper()}" for name in settings.model_fields}

    assert {name for name in _environment(template, function) if name.startswith("LOGFAN_")} <= shared | known
    assert {name for name in own if name.startswith("LOGFAN_")} <= known


def test_the_fan_out_reports_batch_item_failures(template: dict[str, Any]) -> None:
    fan_out = next(
        r
        for r in _resources(template, "AWS::Serverless::Function").values()
        if r["Properties"]["Handler"] == "pipeline.handlers.fan_out.handler"
    )
    (source,) = fan_out["Properties"]["Events"].values()

    assert source["Type"] == "Kinesis"
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Properties"]["BisectBatchOnFunctionError"] is True


def _function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    return next(
        r["Properties"]
        for r in _resources(template, "AWS::Serverless::Function").values()
        if r["Properties"]["Handler"] == handler
    )


def _default(template: dict[str, Any], value: Any) -> Any:
    """A property's value, resolving `!Ref Parameter` to the parameter's default."""
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def test_the_event_source_mapping_retries_and_times_out_as_the_local_runtime_emulates(
    template: dict[str, Any],
) -> None:
    fan_out = _function(template, "pipeline.handlers.fan_out.handler")
    (source,) = fan_out["Events"].values()
    local = EventSourceMapping(kinesis=None, stream_name="", stream_arn="", handler=lambda e, c: None, function_name="")

    assert _default(template, source["Properties"]["MaximumRetryAttempts"]) == local.max_retry_attempts
    assert fan_out["Timeout"] == local.timeout_s
    assert source["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": "FailedInvocationsQueue.Arn"
    }


@pytest.mark.parametrize("handler", ["pipeline.handlers.parser.handler", "pipeline.handlers.consolidator.handler"])
def test_async_functions_retry_as_the_local_invoker_does(template: dict[str, Any], handler: str) -> None:
    invoke_config = _function(template, handler)["EventInvokeConfig"]

    assert invoke_config["MaximumRetryAttempts"] == ASYNC_RETRIES
    assert invoke_config["DestinationConfig"]["OnFailure"]["Type"] == "SQS"


def test_the_sweeper_runs_every_minute_so_digests_leave_soon_after_their_window(template: dict[str, Any]) -> None:
    (event,) = _function(template, SWEEPER)["Events"].values()

    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "rate(1 minute)"


def _emitted_metrics() -> set[str]:
    """Every metric name the code emits (`metrics.count("Name"...)`, `metrics.timing("Name"...)`)."""
    names: set[str] = set()
    for path in (ROOT / "pipeline").rglob("*.py"):
        names.update(re.findall(r"metrics\.(?:count|timing)\(\s*\"([A-Za-z]+)\"", path.read_text(encoding="utf-8")))
    return names


ISSUE_METRICS = {
    "Records",
    "Events",
    "PoisonRecords",
    "Matches",
    "RuleTimeouts",
    "RulesQuarantined",
    "InvokeFailures",
    "BatchLatency",
}
"""What the observability issue (#6) asks to see: each is charted on the dashboard."""
PENDING_METRICS = {"RulesQuarantined": "the parser's rule quarantine (issue 6)"}
"""Charted ahead of the code that emits them, while another change is writing that code."""


def _charted(template: dict[str, Any]) -> set[str]:
    return {
        metric[1]
        for widget in _dashboard(template)["widgets"]
        for metric in widget["properties"]["metrics"]
        if metric[0] == "Logfan"
    }


def _dashboard(template: dict[str, Any]) -> dict[str, Any]:
    body, _variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    document = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    assert isinstance(document, dict)
    return document


def test_alarms_and_the_dashboard_use_only_metrics_the_code_emits(template: dict[str, Any]) -> None:
    emitted = _emitted_metrics()
    alarmed = {
        alarm["Properties"]["MetricName"]
        for alarm in _resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"]["Namespace"] == "Logfan"
    }
    charted = _charted(template)

    assert alarmed
    assert alarmed <= emitted
    assert charted - emitted <= set(PENDING_METRICS), sorted(charted - emitted)


def test_every_metric_the_issue_asks_for_is_on_the_dashboard(template: dict[str, Any]) -> None:
    missing = ISSUE_METRICS - _charted(template)

    assert not missing, sorted(missing)


@pytest.mark.parametrize("metric", sorted(PENDING_METRICS))
def test_a_pending_metric_is_emitted_by_now(metric: str) -> None:
    if metric not in _emitted_metrics():
        pytest.skip(f"{metric} is charted, but nothing emits it yet ({PENDING_METRICS[metric]})")


def test_every_custom_metric_is_read_with_the_dimension_powertools_adds(template: dict[str, Any]) -> None:
    for alarm in _resources(template, "AWS::CloudWatch::Alarm").values():
        if alarm["Properties"]["Namespace"] == "Logfan":
            assert alarm["Properties"]["Dimensions"] == [{"Name": "service", "Value": "logfan"}]
    for widget in _dashboard(template)["widgets"]:
        for metric in widget["properties"]["metrics"]:
            if metric[0] == "Logfan":
                dimensions = [part for part in metric[2:] if not isinstance(part, dict)]  # a dict: render options
                assert dimensions == ["service", "logfan"]


def test_there_are_alarms_on_iterator_age_dead_letter_queues_errors_and_stuck_batches(template: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in _resources(template, "AWS::CloudWatch::Alarm").values()]
    watched = {(a["Namespace"], a["MetricName"]) for a in alarms}
    errors = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms if a["MetricName"] == "Errors"}

    assert ("AWS/Lambda", "IteratorAge") in watched
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in watched
    assert ("Logfan", "StuckBatches") in watched
    assert errors == set(_resources(template, "AWS::Serverless::Function"))
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms)


def test_batch_latency_is_alarmed_on_its_p99(template: dict[str, Any]) -> None:
    (alarm,) = [
        a["Properties"]
        for a in _resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "BatchLatency"
    ]

    assert alarm["ExtendedStatistic"] == "p99"
    assert alarm["Threshold"] == {"Fn::Sub": "${BatchLatencyAlarmSeconds}000"}  # the metric is in milliseconds


def test_every_function_and_the_api_stage_send_traces(template: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Tracing"] == "Active"
    assert all("Tracing" not in f["Properties"] for f in _resources(template, "AWS::Serverless::Function").values())
    (stage,) = _resources(template, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["TracingEnabled"] is True


def test_the_rules_api_authenticates_as_the_api_auth_parameter_says(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["ApiAuth"]
    (method,) = _resources(template, "AWS::ApiGateway::Method").values()
    (authorizer,) = _resources(template, "AWS::ApiGateway::Authorizer").values()
    key_function = _function(template, "pipeline.handlers.authorizer.handler")
    stage = next(iter(_resources(template, "AWS::ApiGateway::Stage").values()))["Properties"]

    assert (parameter["Default"], parameter["AllowedValues"]) == ("iam", ["iam", "api-key"])
    assert template["Conditions"]["UseApiKeys"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "api-key"]}
    assert method["Properties"]["AuthorizationType"] == {"Fn::If": ["UseApiKeys", "CUSTOM", "AWS_IAM"]}
    assert authorizer["Condition"] == "UseApiKeys" and authorizer["Properties"]["Type"] == "TOKEN"
    assert template["Resources"]["AuthorizerFunction"]["Condition"] == "UseApiKeys"
    assert key_function["Role"] == {"Fn::GetAtt": "AuthorizerRole.Arn"}
    # A deployment per mode: switching the parameter deploys the changed method.
    assert stage["DeploymentId"] == {
        "Fn::If": ["UseApiKeys", {"Ref": "RulesApiKeyDeployment"}, {"Ref": "RulesApiIamDeployment"}]
    }


def test_api_gateway_refuses_what_is_not_a_key_as_the_code_issues_them(template: dict[str, Any]) -> None:
    (authorizer,) = _resources(template, "AWS::ApiGateway::Authorizer").values()
    expression = authorizer["Properties"]["IdentityValidationExpression"]
    key = issue_key("acme", now_ms=0).key

    assert expression == BEARER_PATTERN
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 0  # a revoked key stops at once
    assert re.match(expression, f"Bearer {key}")
    assert not re.match(expression, key)
    assert not re.match(expression, f"Bearer {key}x")
