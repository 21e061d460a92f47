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
from pipeline.config import (
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


def test_the_sweeper_runs_on_a_schedule(template: dict[str, Any]) -> None:
    (event,) = _function(template, SWEEPER)["Events"].values()

    assert event == {
        "Type": "Schedule",
        "Properties": {"Schedule": "rate(5 minutes)", "Description": {"Fn::Sub": "Re-drive stuck ${Prefix} batches"}},
    }


def _emitted_metrics() -> set[str]:
    """Every metric name the code counts (`metrics.count("Name"...)`)."""
    names: set[str] = set()
    for path in (ROOT / "pipeline").rglob("*.py"):
        names.update(re.findall(r"metrics\.count\(\s*\"([A-Za-z]+)\"", path.read_text(encoding="utf-8")))
    return names


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
    charted = {
        metric[1]
        for widget in _dashboard(template)["widgets"]
        for metric in widget["properties"]["metrics"]
        if metric[0] == "Logfan"
    }

    assert alarmed
    assert alarmed <= emitted
    assert charted <= emitted


def test_every_custom_metric_is_read_with_the_dimension_powertools_adds(template: dict[str, Any]) -> None:
    for alarm in _resources(template, "AWS::CloudWatch::Alarm").values():
        if alarm["Properties"]["Namespace"] == "Logfan":
            assert alarm["Properties"]["Dimensions"] == [{"Name": "service", "Value": "logfan"}]
    for widget in _dashboard(template)["widgets"]:
        for metric in widget["properties"]["metrics"]:
            if metric[0] == "Logfan":
                assert metric[2:] == ["service", "logfan"]


def test_there_are_alarms_on_iterator_age_dead_letter_queues_errors_and_stuck_batches(template: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in _resources(template, "AWS::CloudWatch::Alarm").values()]
    watched = {(a["Namespace"], a["MetricName"]) for a in alarms}
    errors = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms if a["MetricName"] == "Errors"}

    assert ("AWS/Lambda", "IteratorAge") in watched
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in watched
    assert ("Logfan", "StuckBatches") in watched
    assert errors == set(_resources(template, "AWS::Serverless::Function"))
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms)
