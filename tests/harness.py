"""Wires the real handlers to moto plus the local async invoker, for integration tests."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline import composition
from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.adapters.dynamodb_matches import DynamoDBMatchStore
from pipeline.adapters.dynamodb_tracking import DynamoDBTrackingStore
from pipeline.delivery import DispatchResult, dispatch
from pipeline.handlers import fan_out
from pipeline.local.aws import LocalAws
from pipeline.local.lambda_runtime import LocalAsyncInvoker, LocalLambdaContext
from pipeline.local.sinks import CapturingNotifier, JsonlRejectSink, JsonlWriter
from pipeline.local.wiring import LocalKnobs, local_invoker, local_wiring
from pipeline.observability import CountingMetrics
from pipeline.ports import FunctionInvoker, Notifier, RejectSink


def lambda_context(function_name: str, timeout_s: float = 60) -> LambdaContext:
    """The local runtime's context object, typed as the handlers declare it."""
    return cast(LambdaContext, LocalLambdaContext(function_name, timeout_s))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class Harness:
    aws: LocalAws
    invoker: LocalAsyncInvoker
    metrics: CountingMetrics
    config: DynamoDBConfigStore
    tracking: DynamoDBTrackingStore
    matches: DynamoDBMatchStore
    rejected: JsonlWriter
    notifications: JsonlWriter
    wiring: composition.Wiring

    def dispatch(self, *, drain: bool = False) -> DispatchResult:
        """One run of the outbox dispatcher (the scheduled sweeper's second step)."""
        return dispatch(self.wiring.sweeper.dispatch, drain=drain)

    def settle(self) -> None:
        assert self.invoker.wait_idle(timeout_s=60), "async invocations did not settle"

    def fan_out(self, event: dict[str, Any]) -> dict[str, Any]:
        """Deliver a Kinesis event to the fan-out handler, as the event source mapping does."""
        return fan_out.handler(event, lambda_context(self.aws.names.fan_out_function))

    def rejected_lines(self) -> list[dict[str, Any]]:
        return read_jsonl(self.rejected.path)

    def notification_lines(self) -> list[dict[str, Any]]:
        return read_jsonl(self.notifications.path)

    def invocations(self, function_name: str) -> int:
        return self.invoker.invocations.get(function_name, 0)


@contextmanager
def harness(
    aws: LocalAws,
    tmp_path: Path,
    *,
    max_invoke_payload_bytes: int | None = None,
    wrap_invoker: Callable[[FunctionInvoker], FunctionInvoker] | None = None,
    wrap_notifier: Callable[[Notifier], Notifier] | None = None,
    wrap_rejects: Callable[[RejectSink], RejectSink] | None = None,
    wrap_dynamodb: Callable[[Any], Any] | None = None,
    rule_timeout_ms: int = 100,
    workers: int = 2,
    parser_overrides: dict[str, Any] | None = None,
) -> Iterator[Harness]:
    """The three handlers on moto; `wrap_*` put a fault injector around a port at the AWS boundary.

    The local invoker enforces the same payload limit the fan-out plans for, as Lambda would.
    """
    knobs = LocalKnobs(
        max_invoke_payload_bytes=max_invoke_payload_bytes, rule_timeout_ms=rule_timeout_ms, invoke_backoff_s=0.0
    )
    invoker = local_invoker(aws.names, knobs, workers=workers)
    metrics = CountingMetrics()
    rejected = JsonlWriter(tmp_path / "rejected.jsonl")
    notifications = JsonlWriter(tmp_path / "notifications.jsonl")
    notifier: Notifier = CapturingNotifier(notifications, "us-east-1")
    rejects: RejectSink = JsonlRejectSink(rejected)
    wiring = local_wiring(
        aws,
        knobs,
        invoker=wrap_invoker(invoker) if wrap_invoker else invoker,
        rejects=wrap_rejects(rejects) if wrap_rejects else rejects,
        notifier=wrap_notifier(notifier) if wrap_notifier else notifier,
        metrics=metrics,
        dynamodb=wrap_dynamodb(aws.dynamodb) if wrap_dynamodb else None,
    )
    if parser_overrides:
        wiring = dataclasses.replace(wiring, parser=dataclasses.replace(wiring.parser, **parser_overrides))
    with composition.install(wiring):
        invoker.start()
        try:
            yield Harness(
                aws=aws,
                invoker=invoker,
                metrics=metrics,
                config=DynamoDBConfigStore(aws.dynamodb, aws.names.config_table),
                tracking=DynamoDBTrackingStore(aws.dynamodb, aws.names.batches_table),
                matches=DynamoDBMatchStore(aws.dynamodb, aws.names.matches_table),
                rejected=rejected,
                notifications=notifications,
                wiring=wiring,
            )
        finally:
            invoker.stop()
