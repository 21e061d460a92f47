"""The SAM template and the code agree: handlers, resource names, keys and environment."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import ConsolidatorSettings, FanOutSettings, ParserSettings, ResourceNames, TableSettings
from pipeline.local.aws import _tables

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Sub, !Ref, ...) as {"Fn::X": value} mappings."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    document = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)
    assert isinstance(document, dict)
    return document


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def _physical(value: Any) -> str:
    """`!Sub ${Prefix}-x` with the default prefix, as the local runtime names things."""
    assert isinstance(value, dict) and "Fn::Sub" in value, value
    text = value["Fn::Sub"]
    assert isinstance(text, str)
    return text.replace("${Prefix}", ResourceNames().prefix)


def test_every_handler_in_the_template_imports_and_is_callable(template: dict[str, Any]) -> None:
    handlers = {res["Properties"]["Handler"] for res in _resources(template, "AWS::Serverless::Function").values()}

    assert handlers == {
        "pipeline.handlers.fan_out.handler",
        "pipeline.handlers.parser.handler",
        "pipeline.handlers.consolidator.handler",
    }
    for path in handlers:
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

    assert functions == {names.fan_out_function, names.parser_function, names.consolidator_function}
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
    names = ResourceNames()
    for table in (names.batches_table, names.matches_table):
        assert declared[table]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def _environment(template: dict[str, Any], function: dict[str, Any]) -> set[str]:
    shared = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = function["Properties"].get("Environment", {}).get("Variables", {})
    return set(shared) | set(own)


@pytest.mark.parametrize(
    ("handler", "settings"),
    [
        ("pipeline.handlers.fan_out.handler", FanOutSettings),
        ("pipeline.handlers.parser.handler", ParserSettings),
        ("pipeline.handlers.consolidator.handler", ConsolidatorSettings),
    ],
)
def test_every_required_setting_is_set_for_its_function(
    template: dict[str, Any], handler: str, settings: type[TableSettings]
) -> None:
    function = next(
        r for r in _resources(template, "AWS::Serverless::Function").values() if r["Properties"]["Handler"] == handler
    )
    required = {f"LOGFAN_{name.upper()}" for name, field in settings.model_fields.items() if field.is_required()}

    assert required <= _environment(template, function)


def test_every_logfan_variable_in_the_template_is_a_setting(template: dict[str, Any]) -> None:
    known = {
        f"LOGFAN_{name.upper()}"
        for settings in (FanOutSettings, ParserSettings, ConsolidatorSettings)
        for name in settings.model_fields
    }
    for function in _resources(template, "AWS::Serverless::Function").values():
        declared = {name for name in _environment(template, function) if name.startswith("LOGFAN_")}
        assert declared <= known


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
