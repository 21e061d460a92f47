"""Wires the real handlers to moto plus the local runtime's invoker, for integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline import composition
from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.adapters.dynamodb_matches import DynamoDBMatchStore
from pipeline.adapters.dynamodb_tracking import DynamoDBTrackingStore
from pipeline.config import ConsolidatorSettings, FanOutSettings, ParserSettings
from pipeline.handlers import consolidator, parser
from pipeline.local.aws import LocalAws
from pipeline.local.lambda_runtime import LocalAsyncInvoker
from pipeline.local.sinks import CapturingNotifier, JsonlRejectSink, JsonlWriter
from pipeline.observability import CountingMetrics


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

    def settle(self) -> None:
        assert self.invoker.wait_idle(timeout_s=60), "async invocations did not settle"


@contextmanager
def harness(aws: LocalAws, tmp_path: Path, *, max_invoke_payload_bytes: int | None = None) -> Iterator[Harness]:
    names = aws.names
    tables = {
        "config_table": names.config_table,
        "batches_table": names.batches_table,
        "matches_table": names.matches_table,
    }
    payload = (
        {"max_invoke_payload_bytes": max_invoke_payload_bytes, "payload_safety_bytes": 0}
        if max_invoke_payload_bytes is not None
        else {}
    )
    invoker = LocalAsyncInvoker(
        handlers={names.parser_function: parser.handler, names.consolidator_function: consolidator.handler}, workers=2
    )
    metrics = CountingMetrics()
    clock = composition.SystemClock()
    rejected = JsonlWriter(tmp_path / "rejected.jsonl")
    notifications = JsonlWriter(tmp_path / "notifications.jsonl")
    wiring = composition.Wiring(
        fan_out=composition.build_fan_out(
            FanOutSettings.model_validate(
                {
                    **tables,
                    "parser_function": names.parser_function,
                    "consolidator_function": names.consolidator_function,
                    "poison_queue_url": aws.poison_queue_url,
                    "invoke_backoff_s": 0.0,
                    **payload,
                }
            ),
            aws.dynamodb,
            invoker,
            JsonlRejectSink(rejected),
            metrics,
            clock,
        ),
        parser=composition.build_parser(
            ParserSettings.model_validate(
                {**tables, "consolidator_function": names.consolidator_function, "invoke_backoff_s": 0.0}
            ),
            aws.dynamodb,
            invoker,
            CapturingNotifier(notifications, "us-east-1"),
            metrics,
            clock,
        ),
        consolidator=composition.build_consolidator(
            ConsolidatorSettings.model_validate(tables), aws.dynamodb, metrics, clock
        ),
    )
    with composition.install(wiring):
        invoker.start()
        try:
            yield Harness(
                aws=aws,
                invoker=invoker,
                metrics=metrics,
                config=DynamoDBConfigStore(aws.dynamodb, names.config_table),
                tracking=DynamoDBTrackingStore(aws.dynamodb, names.batches_table),
                matches=DynamoDBMatchStore(aws.dynamodb, names.matches_table),
                rejected=rejected,
                notifications=notifications,
            )
        finally:
            invoker.stop()
