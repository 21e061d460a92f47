"""Tracing, metrics and logging helpers: lazy, off outside Lambda, annotating what handlers know."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.local.lambda_runtime import LocalLambdaContext
from pipeline.observability import (
    SERVICE,
    CountingMetrics,
    PowertoolsMetrics,
    annotate,
    get_tracer,
    invocation,
    traced,
)
from tests.tracing import RecordingProvider, recording_tracer, reset_tracer

ROOT = Path(__file__).resolve().parents[2]


def lambda_context(function_name: str) -> LambdaContext:
    return cast(LambdaContext, LocalLambdaContext(function_name, timeout_s=60))


@pytest.fixture
def tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProvider]:
    """Tracing on, as on Lambda, recorded in memory."""
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    with recording_tracer() as provider:
        yield provider


@pytest.fixture
def fresh_tracer() -> Iterator[None]:
    """The service's tracer built anew from the environment, and forgotten afterwards."""
    reset_tracer()
    yield
    reset_tracer()


def test_importing_the_handlers_builds_no_tracer_and_patches_nothing() -> None:
    # Given a fresh interpreter
    script = (
        "import sys\n"
        "import pipeline.handlers.fan_out, pipeline.handlers.parser, pipeline.handlers.consolidator\n"
        "import pipeline.handlers.sweeper, pipeline.handlers.rules_api, pipeline.handlers.authorizer\n"
        "from pipeline.observability import get_tracer, get_logger\n"
        "print(get_tracer.cache_info().currsize, get_logger.cache_info().currsize,\n"
        "      any(name.startswith('aws_xray_sdk') for name in sys.modules))\n"
    )

    # When every handler module is imported
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )

    # Then no tracer (nor logger) exists and the X-Ray SDK is not even loaded
    assert result.stdout.split() == ["0", "0", "False"]


def _python(script: str, **env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**environment, **env},
    )
    return result.stdout.split()


TRACED_CALL = (
    "import sys\n"
    "from pipeline.observability import get_tracer, traced\n"
    "handler = traced(lambda event, context: 'ok')\n"
    "print(handler({}, None), bool(get_tracer().disabled), type(get_tracer().provider).__module__,\n"
    "      'aws_xray_sdk.core' in sys.modules)\n"
)


@pytest.mark.parametrize("env", [{}, {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}])
def test_with_tracing_off_the_x_ray_sdk_is_not_even_loaded(env: dict[str, str]) -> None:
    # Given a process off Lambda, or on Lambda with tracing disabled (the local runtime sets the variable)
    # When a traced handler runs
    output = _python(TRACED_CALL, **env)

    # Then it ran untraced, and nothing that opens a socket to an X-Ray daemon was loaded
    assert output == ["ok", "True", "pipeline.observability", "False"]


def test_on_lambda_the_tracer_sends_to_x_ray() -> None:
    script = (
        "from pipeline.observability import get_tracer\n"
        "tracer = get_tracer()\n"
        "print(bool(tracer.disabled), type(tracer.provider).__module__.split('.')[0])\n"
    )

    assert _python(script, LAMBDA_TASK_ROOT="/var/task", AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR") == [
        "False",
        "aws_xray_sdk",
    ]


def test_outside_lambda_the_tracer_is_off(fresh_tracer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)

    assert get_tracer().disabled


def test_the_trace_disabled_variable_turns_it_off_even_on_lambda(
    fresh_tracer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")

    assert get_tracer().disabled


def test_a_traced_handler_gets_a_subsegment_annotated_with_its_correlation_keys(tracing: RecordingProvider) -> None:
    # Given a handler that knows its batch, sub-task and customer
    @traced
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with invocation(context, handler="parser", batch_id="b-1", subtask_id="s-1", customer_id="acme"):
            return {"status": "finished"}

    # When it runs
    response = handler({}, lambda_context("logfan-parser"))

    # Then its subsegment carries the keys as annotations, and the response as metadata
    (segment,) = tracing.named("## handler")
    assert response == {"status": "finished"}
    assert {k: segment.annotations[k] for k in ("batch_id", "subtask_id", "customer_id", "Service")} == {
        "batch_id": "b-1",
        "subtask_id": "s-1",
        "customer_id": "acme",
        "Service": SERVICE,
    }
    assert "handler" not in segment.annotations  # only the correlation keys are indexed
    assert segment.metadata[f"{SERVICE}/handler response"] == {"status": "finished"}


def test_a_handler_traced_without_its_response_keeps_it_out_of_the_trace(tracing: RecordingProvider) -> None:
    @traced(capture_response=False)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"rules": ["secret-ish pattern"]}

    handler({}, lambda_context("logfan-rules-api"))

    (segment,) = tracing.named("## handler")
    assert segment.metadata == {}


def test_a_failing_handler_still_raises_and_its_error_is_in_the_trace(tracing: RecordingProvider) -> None:
    @traced
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        handler({}, lambda_context("logfan-consolidator"))

    (segment,) = tracing.named("## handler")
    assert isinstance(segment.metadata[f"{SERVICE}/handler error"], RuntimeError)


def test_annotate_records_only_known_keys_with_a_value(tracing: RecordingProvider) -> None:
    @traced
    def handler(event: dict[str, Any], context: Any) -> None:
        annotate(batch_id="b-9", customer_id=None, subtask_id="", rule_id="r-1")

    handler({}, lambda_context("logfan-fan-out"))

    (segment,) = tracing.named("## handler")
    assert {k: v for k, v in segment.annotations.items() if k not in ("ColdStart", "Service")} == {"batch_id": "b-9"}


def test_a_traced_handler_runs_unchanged_when_tracing_is_off(fresh_tracer: None) -> None:
    @traced
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with invocation(context, batch_id="b-1"):
            return {"echo": event}

    assert handler({"x": 1}, lambda_context("logfan-consolidator")) == {"echo": {"x": 1}}


def test_counting_metrics_keep_timings_apart_from_counts() -> None:
    metrics = CountingMetrics()

    metrics.count("BatchesCompleted")
    metrics.timing("BatchLatency", 1250)
    metrics.timing("BatchLatency", -5)  # a clock step backwards is not a negative duration

    assert metrics.snapshot() == {"BatchesCompleted": 1}
    assert metrics.timings() == {"BatchLatency": [1250.0, 0.0]}


def test_powertools_metrics_send_timings_in_milliseconds_and_counts_as_counts() -> None:
    emf = Metrics(namespace="Logfan", service=SERVICE)
    emf.clear_metrics()  # Powertools shares one metric set between all its instances
    try:
        metrics = PowertoolsMetrics(emf)
        metrics.timing("BatchLatency", 1250)
        metrics.count("BatchesCompleted")

        document: dict[str, Any] = dict(emf.serialize_metric_set())
    finally:
        emf.clear_metrics()

    units = {m["Name"]: m["Unit"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units == {"BatchLatency": "Milliseconds", "BatchesCompleted": "Count"}
    assert (document["BatchLatency"], document["BatchesCompleted"]) == ([1250.0], [1.0])
    assert document["service"] == SERVICE
