"""The composition root: the one place that builds clients and wires ports to adapters.

On AWS each handler asks for its dependencies once per container (settings from the
environment, boto3 clients with standard retries). The local runtime wires the same builders to
its own clients and installs them with `install`, so the handlers run unchanged.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Metrics
from botocore.config import Config
from pydantic import ValidationError

from pipeline.adapters.channels import ChannelNotifier, build_channel_notifier
from pipeline.adapters.dynamodb_api_keys import DynamoDBApiKeyStore
from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.adapters.dynamodb_gates import DynamoDBDeliveryGates
from pipeline.adapters.dynamodb_matches import DynamoDBMatchStore
from pipeline.adapters.dynamodb_rule_health import DynamoDBRuleHealthStore
from pipeline.adapters.dynamodb_tracking import DynamoDBTrackingStore
from pipeline.adapters.kinesis_reader import KinesisStreamReader
from pipeline.adapters.lambda_invoker import LambdaInvoker
from pipeline.adapters.sqs_rejects import SqsRejectSink
from pipeline.config import (
    ApiKeySettings,
    ConsolidatorSettings,
    DeliverySettings,
    FanOutSettings,
    OutboxSettings,
    ParserSettings,
    RulesSettings,
    SweeperSettings,
)
from pipeline.delivery import DeliveryDeps, DeliveryPolicy, DispatchDeps
from pipeline.errors import ConfigurationError
from pipeline.fanout import FanOutDeps
from pipeline.faults import NO_FAULTS, FaultPoints
from pipeline.matching import MatchLimits
from pipeline.models import ChannelType
from pipeline.observability import SERVICE, PowertoolsMetrics
from pipeline.parsing import ParserDeps
from pipeline.ports import Clock, FunctionInvoker, MetricsSink, Notifier, RejectSink
from pipeline.quarantining import QuarantinePolicy
from pipeline.rules_cache import CustomerRulesCache, OwnerCache
from pipeline.rules_service import RulesService, vetting_limits
from pipeline.sweeping import SweeperDeps

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

__all__ = [
    "AuthorizerDeps",
    "ConsolidatorDeps",
    "SystemClock",
    "Wiring",
    "authorizer_deps",
    "aws_notifier",
    "build_authorizer",
    "build_consolidator",
    "build_delivery",
    "build_fan_out",
    "build_parser",
    "build_sweeper",
    "consolidator_deps",
    "fan_out_deps",
    "install",
    "parser_deps",
    "rules_service",
    "sweeper_deps",
]

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)
"""boto3's standard retry mode: bounded exponential backoff with jitter on throttling and 5xx."""


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class ConsolidatorDeps:
    tracking: DynamoDBTrackingStore
    metrics: MetricsSink
    clock: Clock
    faults: FaultPoints = NO_FAULTS


def build_fan_out(
    settings: FanOutSettings,
    dynamodb: DynamoDBClient,
    invoker: FunctionInvoker,
    rejects: RejectSink,
    metrics: MetricsSink,
    clock: Clock,
    faults: FaultPoints = NO_FAULTS,
) -> FanOutDeps:
    return FanOutDeps(
        tracking=DynamoDBTrackingStore(dynamodb, settings.batches_table),
        owners=OwnerCache(DynamoDBConfigStore(dynamodb, settings.config_table), settings.owner_cache_ttl_s),
        invoker=invoker,
        rejects=rejects,
        metrics=metrics,
        clock=clock,
        parser_function=settings.parser_function,
        consolidator_function=settings.consolidator_function,
        payload_budget_bytes=settings.payload_budget_bytes,
        max_decompressed_bytes=settings.max_decompressed_bytes,
        invoke_concurrency=settings.invoke_concurrency,
        invoke_max_attempts=settings.invoke_max_attempts,
        invoke_backoff_s=settings.invoke_backoff_s,
        tracking_ttl_days=settings.tracking_ttl_days,
        time_reserve_ms=settings.time_reserve_ms,
        faults=faults,
    )


def delivery_policy(settings: OutboxSettings) -> DeliveryPolicy:
    return DeliveryPolicy(
        digest_window_ms=settings.digest_window_s * 1000,
        channel_intervals_ms={
            ChannelType.SLACK: settings.slack_interval_ms,
            ChannelType.WEBHOOK: settings.webhook_interval_ms,
        },
        max_inline_wait_ms=settings.max_inline_wait_ms,
        retry_base_ms=settings.notification_retry_base_s * 1000,
        max_attempts=settings.notification_max_attempts,
        digest_samples=settings.digest_samples,
        ttl_days=settings.match_ttl_days,
    )


def build_delivery(
    settings: OutboxSettings,
    dynamodb: DynamoDBClient,
    notifier: Notifier,
    metrics: MetricsSink,
    clock: Clock,
    faults: FaultPoints = NO_FAULTS,
) -> DeliveryDeps:
    return DeliveryDeps(
        outbox=DynamoDBMatchStore(dynamodb, settings.matches_table),
        gates=DynamoDBDeliveryGates(dynamodb, settings.matches_table),
        notifier=notifier,
        health=DynamoDBConfigStore(dynamodb, settings.config_table),
        metrics=metrics,
        clock=clock,
        policy=delivery_policy(settings),
        faults=faults,
    )


def build_parser(
    settings: ParserSettings,
    dynamodb: DynamoDBClient,
    invoker: FunctionInvoker,
    notifier: Notifier,
    metrics: MetricsSink,
    clock: Clock,
    faults: FaultPoints = NO_FAULTS,
) -> ParserDeps:
    limits = MatchLimits(
        per_line_timeout_s=settings.rule_timeout_ms / 1000,
        per_invocation_budget_s=settings.rule_budget_ms / 1000,
    )
    tracking = DynamoDBTrackingStore(dynamodb, settings.batches_table)
    matches = DynamoDBMatchStore(dynamodb, settings.matches_table)
    return ParserDeps(
        tracking=tracking,
        leases=tracking,
        rules=CustomerRulesCache(
            DynamoDBConfigStore(dynamodb, settings.config_table), settings.rules_cache_ttl_s, limits
        ),
        matches=matches,
        delivery=build_delivery(settings, dynamodb, notifier, metrics, clock, faults),
        health=DynamoDBRuleHealthStore(dynamodb, settings.config_table, matches),
        quarantine=QuarantinePolicy(strikes=settings.quarantine_strikes, window_ms=settings.quarantine_window_s * 1000),
        invoker=invoker,
        metrics=metrics,
        clock=clock,
        consolidator_function=settings.consolidator_function,
        parser_function=settings.parser_function,
        time_reserve_ms=settings.time_reserve_ms,
        notification_samples=settings.notification_samples,
        match_ttl_days=settings.match_ttl_days,
        invoke_max_attempts=settings.invoke_max_attempts,
        invoke_backoff_s=settings.invoke_backoff_s,
        faults=faults,
    )


def build_consolidator(
    settings: ConsolidatorSettings,
    dynamodb: DynamoDBClient,
    metrics: MetricsSink,
    clock: Clock,
    faults: FaultPoints = NO_FAULTS,
) -> ConsolidatorDeps:
    return ConsolidatorDeps(
        tracking=DynamoDBTrackingStore(dynamodb, settings.batches_table), metrics=metrics, clock=clock, faults=faults
    )


def build_sweeper(
    settings: SweeperSettings,
    dynamodb: DynamoDBClient,
    kinesis: KinesisClient,
    invoker: FunctionInvoker,
    notifier: Notifier,
    metrics: MetricsSink,
    clock: Clock,
    faults: FaultPoints = NO_FAULTS,
) -> SweeperDeps:
    return SweeperDeps(
        dispatch=DispatchDeps(
            delivery=build_delivery(settings, dynamodb, notifier, metrics, clock, faults),
            outbox=DynamoDBMatchStore(dynamodb, settings.matches_table),
            config=DynamoDBConfigStore(dynamodb, settings.config_table),
        ),
        tracking=DynamoDBTrackingStore(dynamodb, settings.batches_table),
        stream=KinesisStreamReader(kinesis, settings.stream_name),
        owners=OwnerCache(DynamoDBConfigStore(dynamodb, settings.config_table), ttl_s=0),
        invoker=invoker,
        metrics=metrics,
        clock=clock,
        parser_function=settings.parser_function,
        consolidator_function=settings.consolidator_function,
        payload_budget_bytes=settings.payload_budget_bytes,
        max_decompressed_bytes=settings.max_decompressed_bytes,
        stuck_after_ms=settings.stuck_after_s * 1000,
        max_redrives=settings.max_redrives,
        invoke_max_attempts=settings.invoke_max_attempts,
        invoke_backoff_s=settings.invoke_backoff_s,
        tracking_ttl_days=settings.tracking_ttl_days,
    )


@dataclass(frozen=True, slots=True)
class Wiring:
    """Dependencies for every function; the local runtime installs one of these."""

    fan_out: FanOutDeps
    parser: ParserDeps
    consolidator: ConsolidatorDeps
    sweeper: SweeperDeps


_installed: Wiring | None = None
_install_lock = threading.Lock()


@contextmanager
def install(wiring: Wiring) -> Iterator[Wiring]:
    """Make the handlers use `wiring` (the local runtime, tests) until the block exits."""
    global _installed
    with _install_lock:
        previous, _installed = _installed, wiring
    try:
        yield wiring
    finally:
        with _install_lock:
            _installed = previous


def _settings(model: type[Any]) -> Any:
    try:
        return model()
    except ValidationError as exc:
        missing = ", ".join(f"LOGFAN_{'.'.join(str(p) for p in e['loc']).upper()}" for e in exc.errors())
        raise ConfigurationError(f"{model.__name__}: missing or invalid environment variables: {missing}") from exc


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@functools.cache
def _aws_metrics() -> PowertoolsMetrics:
    return PowertoolsMetrics(Metrics(service=SERVICE))


@functools.cache
def _aws_fan_out() -> FanOutDeps:
    settings: FanOutSettings = _settings(FanOutSettings)
    lambda_client = boto3.client("lambda", config=Config(retries={"mode": "standard", "max_attempts": 3}))
    return build_fan_out(
        settings,
        boto3.client("dynamodb", config=SDK_CONFIG),
        LambdaInvoker(lambda_client, settings.max_invoke_payload_bytes),
        SqsRejectSink(boto3.client("sqs", config=SDK_CONFIG), settings.poison_queue_url),
        _aws_metrics(),
        SystemClock(),
    )


@functools.cache
def aws_notifier() -> ChannelNotifier:
    """Every channel type as the functions that deliver (parser, sweeper) use it on AWS: HTTPS with
    `DeliverySettings` (timeouts, retries, `Retry-After`), SNS and EventBridge clients."""
    settings: DeliverySettings = _settings(DeliverySettings)
    return build_channel_notifier(
        settings,
        region=_region(),
        sns_client=boto3.client("sns", config=SDK_CONFIG),
        events_client=boto3.client("events", config=SDK_CONFIG),
    )


@functools.cache
def _aws_parser() -> ParserDeps:
    settings: ParserSettings = _settings(ParserSettings)
    return build_parser(
        settings,
        boto3.client("dynamodb", config=SDK_CONFIG),
        LambdaInvoker(boto3.client("lambda", config=SDK_CONFIG)),
        aws_notifier(),
        _aws_metrics(),
        SystemClock(),
    )


@functools.cache
def _aws_consolidator() -> ConsolidatorDeps:
    settings: ConsolidatorSettings = _settings(ConsolidatorSettings)
    return build_consolidator(settings, boto3.client("dynamodb", config=SDK_CONFIG), _aws_metrics(), SystemClock())


@functools.cache
def _aws_sweeper() -> SweeperDeps:
    settings: SweeperSettings = _settings(SweeperSettings)
    return build_sweeper(
        settings,
        boto3.client("dynamodb", config=SDK_CONFIG),
        boto3.client("kinesis", config=SDK_CONFIG),
        LambdaInvoker(boto3.client("lambda", config=SDK_CONFIG), settings.max_invoke_payload_bytes),
        # The sweeper also dispatches the outbox (digests, retries): it delivers like the parser.
        aws_notifier(),
        _aws_metrics(),
        SystemClock(),
    )


def sweeper_deps() -> SweeperDeps:
    return _installed.sweeper if _installed is not None else _aws_sweeper()


def fan_out_deps() -> FanOutDeps:
    return _installed.fan_out if _installed is not None else _aws_fan_out()


def parser_deps() -> ParserDeps:
    return _installed.parser if _installed is not None else _aws_parser()


def consolidator_deps() -> ConsolidatorDeps:
    return _installed.consolidator if _installed is not None else _aws_consolidator()


@functools.cache
def rules_service() -> RulesService:
    """The rules API's service: the config table with the vetting limits of `RulesSettings`."""
    settings: RulesSettings = _settings(RulesSettings)
    store = DynamoDBConfigStore(boto3.client("dynamodb", config=SDK_CONFIG), settings.config_table)
    return RulesService(store, vetting_limits(settings))


@dataclass(frozen=True, slots=True)
class AuthorizerDeps:
    """The rules API's key authorizer: the keys in the config table, and its metrics."""

    keys: DynamoDBApiKeyStore
    metrics: MetricsSink


def build_authorizer(settings: ApiKeySettings, dynamodb: DynamoDBClient, metrics: MetricsSink) -> AuthorizerDeps:
    return AuthorizerDeps(keys=DynamoDBApiKeyStore(dynamodb, settings.config_table), metrics=metrics)


@functools.cache
def authorizer_deps() -> AuthorizerDeps:
    """The authorizer's dependencies on AWS: `ApiKeySettings` from the environment, one client."""
    settings: ApiKeySettings = _settings(ApiKeySettings)
    return build_authorizer(settings, boto3.client("dynamodb", config=SDK_CONFIG), _aws_metrics())
