"""Settings for each Lambda function, read once from the environment (`LOGFAN_*`).

The local runtime builds the same models directly from `ResourceNames`, so AWS and the laptop
share one definition of every knob.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ApiKeySettings",
    "ConsolidatorSettings",
    "DeliverySettings",
    "FanOutSettings",
    "OutboxSettings",
    "ParserSettings",
    "ResourceNames",
    "RulesSettings",
    "SweeperSettings",
    "TableSettings",
]

LAMBDA_ASYNC_PAYLOAD_LIMIT = 1_048_576
"""Lambda's asynchronous (`Event`) invoke payload limit, in bytes (1 MB since 2025)."""


@dataclass(frozen=True, slots=True)
class ResourceNames:
    """Physical names derived from the stack prefix, exactly as `infra/template.yaml` names them."""

    prefix: str = "logfan"

    @property
    def stream(self) -> str:
        return f"{self.prefix}-logs"

    @property
    def config_table(self) -> str:
        return f"{self.prefix}-config"

    @property
    def batches_table(self) -> str:
        return f"{self.prefix}-batches"

    @property
    def matches_table(self) -> str:
        return f"{self.prefix}-matches"

    @property
    def poison_queue(self) -> str:
        return f"{self.prefix}-poison"

    @property
    def fan_out_function(self) -> str:
        return f"{self.prefix}-fan-out"

    @property
    def parser_function(self) -> str:
        return f"{self.prefix}-parser"

    @property
    def consolidator_function(self) -> str:
        return f"{self.prefix}-consolidator"

    @property
    def sweeper_function(self) -> str:
        return f"{self.prefix}-sweeper"

    @property
    def rules_api_function(self) -> str:
        return f"{self.prefix}-rules-api"


class TableSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOGFAN_", frozen=True, extra="ignore")

    config_table: str = Field(min_length=3)
    batches_table: str = Field(min_length=3)
    matches_table: str = Field(min_length=3)
    tracking_ttl_days: int = Field(default=7, ge=1)
    match_ttl_days: int = Field(default=30, ge=1)


class FanOutSettings(TableSettings):
    parser_function: str = Field(min_length=1)
    consolidator_function: str = Field(min_length=1)
    poison_queue_url: str = Field(min_length=1)
    max_invoke_payload_bytes: int = Field(default=LAMBDA_ASYNC_PAYLOAD_LIMIT, ge=4096)
    payload_safety_bytes: int = Field(default=64 * 1024, ge=0)
    """Head-room under the invoke limit for what Lambda adds around the payload."""
    invoke_concurrency: int = Field(default=16, ge=1, le=256)
    invoke_max_attempts: int = Field(default=3, ge=1, le=10)
    invoke_backoff_s: float = Field(default=0.2, ge=0)
    max_decompressed_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    owner_cache_ttl_s: float = Field(default=60.0, ge=0)
    time_reserve_ms: int = Field(default=10_000, ge=0)
    """Below this much remaining time the fan-out records nothing and fails the batch, so the
    event source mapping bisects it into batches that fit, instead of timing out half-way."""

    @property
    def payload_budget_bytes(self) -> int:
        return self.max_invoke_payload_bytes - self.payload_safety_bytes


class OutboxSettings(TableSettings):
    """How notifications leave the outbox: digest windows, channel rate limits, retries."""

    digest_window_s: int = Field(default=60, ge=0)
    """A rule's alerts within this long after one went out are folded into a digest (0: never)."""
    slack_interval_ms: int = Field(default=1000, ge=0)
    """At most one message per Slack webhook this often (Slack's own limit is about 1/s)."""
    webhook_interval_ms: int = Field(default=0, ge=0)
    max_inline_wait_ms: int = Field(default=2000, ge=0)
    """A channel slot further away than this holds the notification back instead of waiting."""
    notification_retry_base_s: int = Field(default=30, ge=1)
    notification_max_attempts: int = Field(default=8, ge=1)
    digest_samples: int = Field(default=5, ge=1, le=20)


class ParserSettings(OutboxSettings):
    parser_function: str = Field(min_length=1)
    """Its own name: a run short of time hands the rest of its sub-task to a fresh invocation."""
    consolidator_function: str = Field(min_length=1)
    time_reserve_ms: int = Field(default=30_000, ge=0)
    """Hand the rest on when less than this is left: enough to notify and hand over safely."""
    rule_timeout_ms: int = Field(default=100, ge=1)
    rule_budget_ms: int = Field(default=2000, ge=1)
    rules_cache_ttl_s: float = Field(default=60.0, ge=0)
    notification_samples: int = Field(default=3, ge=1, le=20)
    invoke_max_attempts: int = Field(default=3, ge=1, le=10)
    invoke_backoff_s: float = Field(default=0.2, ge=0)
    quarantine_strikes: int = Field(default=3, ge=0)
    """Invocations in which a rule overran its time budget before it is quarantined (0: never)."""
    quarantine_window_s: int = Field(default=3600, ge=60)


class ConsolidatorSettings(TableSettings):
    pass


class SweeperSettings(OutboxSettings):
    stream_name: str = Field(min_length=1)
    parser_function: str = Field(min_length=1)
    consolidator_function: str = Field(min_length=1)
    stuck_after_s: int = Field(default=600, ge=0)
    """A batch still open this long after it was created is re-driven."""
    max_redrives: int = Field(default=3, ge=1)
    max_invoke_payload_bytes: int = Field(default=LAMBDA_ASYNC_PAYLOAD_LIMIT, ge=4096)
    payload_safety_bytes: int = Field(default=64 * 1024, ge=0)
    max_decompressed_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    invoke_max_attempts: int = Field(default=3, ge=1, le=10)
    invoke_backoff_s: float = Field(default=0.2, ge=0)

    @property
    def payload_budget_bytes(self) -> int:
        return self.max_invoke_payload_bytes - self.payload_safety_bytes


class RulesSettings(BaseSettings):
    """The rules API function and the `logfan rules` / `customers` commands: where rules live, and the
    limits and probe every registered rule passes (see `pipeline.vetting`)."""

    model_config = SettingsConfigDict(env_prefix="LOGFAN_", frozen=True, extra="ignore")

    config_table: str = Field(default=ResourceNames().config_table, min_length=3)
    rule_max_pattern_chars: int = Field(default=1024, ge=1, le=4096)
    rule_max_patterns: int = Field(default=8, ge=1, le=32)
    rule_max_log_groups: int = Field(default=20, ge=0)
    customer_max_rules: int = Field(default=100, ge=1)
    customer_max_pattern_chars: int = Field(default=32_768, ge=1)
    customer_max_channels: int = Field(default=20, ge=1)
    rule_probe_timeout_ms: int = Field(default=50, ge=1)
    rule_probe_line_chars: int = Field(default=2048, ge=64)
    allow_loopback_channels: bool = False
    """Local development only: webhooks to 127.0.0.1 / localhost. Never set it on AWS."""
    rule_timeout_ms: int = Field(default=100, ge=1)
    """The per-line bound `logfan rules test` applies, as the parser does."""


class DeliverySettings(BaseSettings):
    """How notifications are delivered (`pipeline.adapters.channels`), for every function that sends.

    Each HTTP request has `delivery_timeout_s`; 429, 408, 5xx and network errors are retried up to
    `delivery_max_attempts` times with full-jitter exponential backoff, honouring `Retry-After`. In
    all, a delivery waits at most `delivery_max_wait_s` in-line: a receiver asking for longer gets a
    transient `DeliveryError` carrying `retry_after_s`, and the caller holds the notification back.
    """

    model_config = SettingsConfigDict(env_prefix="LOGFAN_", frozen=True, extra="ignore")

    delivery_timeout_s: float = Field(default=5.0, gt=0, le=60)
    delivery_max_attempts: int = Field(default=3, ge=1, le=10)
    delivery_backoff_s: float = Field(default=0.5, ge=0)
    """The first retry waits up to this long; each further one up to twice as long as the one before."""
    delivery_backoff_cap_s: float = Field(default=4.0, ge=0)
    delivery_max_wait_s: float = Field(default=5.0, ge=0)
    """The most one delivery sleeps between its attempts, in all."""
    allow_loopback_channels: bool = False
    """Local development only: deliver to 127.0.0.1 / localhost (http or https). Never set it on AWS."""


class ApiKeySettings(BaseSettings):
    """The rules API's key authorizer and `logfan customers keys`: where keys live (the config table)."""

    model_config = SettingsConfigDict(env_prefix="LOGFAN_", frozen=True, extra="ignore")

    config_table: str = Field(default=ResourceNames().config_table, min_length=3)
