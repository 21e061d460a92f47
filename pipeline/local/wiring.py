"""How the local runtime wires the real handlers: settings from the template's names, moto clients,
the local invoker and sinks. Replay and the integration tests both go through here."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import boto3

from pipeline import composition
from pipeline.adapters.channels import ChannelNotifier, build_channel_notifier
from pipeline.config import (
    LAMBDA_ASYNC_PAYLOAD_LIMIT,
    ConsolidatorSettings,
    DeliverySettings,
    FanOutSettings,
    ParserSettings,
    ResourceNames,
    SweeperSettings,
)
from pipeline.faults import NO_FAULTS, FaultPoints
from pipeline.handlers import consolidator, parser
from pipeline.local.aws import LOCAL_REGION, LocalAws, SerializedClient
from pipeline.local.lambda_runtime import LocalAsyncInvoker
from pipeline.ports import FunctionInvoker, MetricsSink, Notifier, RejectSink

__all__ = ["LocalKnobs", "local_channel_notifier", "local_invoker", "local_wiring"]


@dataclass(frozen=True, slots=True)
class LocalKnobs:
    """The settings a local run may change; everything else is the functions' default."""

    max_invoke_payload_bytes: int | None = None
    """None: Lambda's limit with the usual safety margin; a number: exactly that limit, no margin."""
    rule_timeout_ms: int = 100
    invoke_backoff_s: float = 0.01
    max_redrives: int = 3
    digest_window_s: int | None = None
    """None: the functions' default digest window."""
    channel_rate_limits: bool = False
    """Off for captured notifications (nothing to protect, and waiting would only slow a replay);
    on when delivering to real channels."""

    @property
    def invoke_limit(self) -> int:
        return self.max_invoke_payload_bytes or LAMBDA_ASYNC_PAYLOAD_LIMIT


def _settings(
    names: ResourceNames, knobs: LocalKnobs
) -> tuple[FanOutSettings, ParserSettings, ConsolidatorSettings, SweeperSettings]:
    tables: dict[str, Any] = {
        "config_table": names.config_table,
        "batches_table": names.batches_table,
        "matches_table": names.matches_table,
    }
    if knobs.digest_window_s is not None:
        tables["digest_window_s"] = knobs.digest_window_s
    if not knobs.channel_rate_limits:
        tables["slack_interval_ms"] = tables["webhook_interval_ms"] = 0
    payload: dict[str, Any] = {}
    if knobs.max_invoke_payload_bytes is not None:
        payload = {"max_invoke_payload_bytes": knobs.max_invoke_payload_bytes, "payload_safety_bytes": 0}
    return (
        FanOutSettings.model_validate(
            {
                **tables,
                "parser_function": names.parser_function,
                "consolidator_function": names.consolidator_function,
                "poison_queue_url": "local:rejected.jsonl",
                "invoke_backoff_s": knobs.invoke_backoff_s,
                **payload,
            }
        ),
        ParserSettings.model_validate(
            {
                **tables,
                "parser_function": names.parser_function,
                "consolidator_function": names.consolidator_function,
                "rule_timeout_ms": knobs.rule_timeout_ms,
                "invoke_backoff_s": knobs.invoke_backoff_s,
            }
        ),
        ConsolidatorSettings.model_validate(
            {k: v for k, v in tables.items() if k in ConsolidatorSettings.model_fields}
        ),
        SweeperSettings.model_validate(
            {
                **tables,
                "stream_name": names.stream,
                "parser_function": names.parser_function,
                "consolidator_function": names.consolidator_function,
                # Locally the sweeper runs once the queues are idle: whatever is open then is stuck.
                "stuck_after_s": 0,
                "max_redrives": knobs.max_redrives,
                "invoke_backoff_s": knobs.invoke_backoff_s,
                **payload,
            }
        ),
    )


def local_invoker(names: ResourceNames, knobs: LocalKnobs, *, workers: int) -> LocalAsyncInvoker:
    """The async invoke queue running the parser and consolidator handlers, with Lambda's limit."""
    return LocalAsyncInvoker(
        handlers={names.parser_function: parser.handler, names.consolidator_function: consolidator.handler},
        workers=workers,
        max_payload_bytes=knobs.invoke_limit,
    )


def local_channel_notifier(aws: LocalAws, settings: DeliverySettings | None = None) -> ChannelNotifier:
    """Real delivery from the laptop (`logfan replay --deliver`): HTTP to the channels' URLs, SNS and
    EventBridge to the emulated account (in-process, or the server `aws` talks to). Loopback URLs are
    allowed: a replay never runs on AWS."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=LOCAL_REGION
    )
    events = SerializedClient(session.client("events", endpoint_url=aws.endpoint_url), threading.RLock())
    return build_channel_notifier(
        settings or DeliverySettings(allow_loopback_channels=True),
        region=LOCAL_REGION,
        sns_client=aws.sns,
        events_client=events,
    )


def local_wiring(
    aws: LocalAws,
    knobs: LocalKnobs,
    *,
    invoker: FunctionInvoker,
    rejects: RejectSink,
    notifier: Notifier,
    metrics: MetricsSink,
    dynamodb: Any = None,
    faults: FaultPoints = NO_FAULTS,
) -> composition.Wiring:
    """The three functions' dependencies over `aws` (or a fault-injecting `dynamodb` client)."""
    fan_out_settings, parser_settings, consolidator_settings, sweeper_settings = _settings(aws.names, knobs)
    client = dynamodb if dynamodb is not None else aws.dynamodb
    clock = composition.SystemClock()
    return composition.Wiring(
        fan_out=composition.build_fan_out(fan_out_settings, client, invoker, rejects, metrics, clock, faults),
        parser=composition.build_parser(parser_settings, client, invoker, notifier, metrics, clock, faults),
        consolidator=composition.build_consolidator(consolidator_settings, client, metrics, clock, faults),
        sweeper=composition.build_sweeper(
            sweeper_settings, client, aws.kinesis, invoker, notifier, metrics, clock, faults
        ),
    )
