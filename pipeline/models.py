"""Domain models shared by the handlers, the pure core and the adapters.

CloudWatch Logs and Lambda field names (camelCase) are kept as aliases so the models read the wire
formats directly while our own code uses snake_case.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "IDENTIFIER_PATTERN",
    "BatchRecord",
    "BatchStatus",
    "BatchSummary",
    "CarriedStats",
    "Channel",
    "ChannelType",
    "Customer",
    "LogEvent",
    "LogsMessage",
    "Match",
    "Notification",
    "PoisonRecord",
    "Rule",
    "RuleStats",
    "StreamEvents",
    "SubTaskPayload",
    "SubTaskRecord",
    "SubTaskStatus",
]

IDENTIFIER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
ACCOUNT_PATTERN = r"^\d{12}$"


def _id_to_str(value: Any) -> Any:
    """moto (and some hand-made captures) send numeric event ids; AWS sends digit strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class _Stored(BaseModel):
    """Read back from a table: storage attributes (keys, TTL) are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class LogEvent(_Frozen):
    """One CloudWatch Logs event; a multi-line message is still one event."""

    id: Annotated[str, BeforeValidator(_id_to_str)]
    """Empty only in CloudWatch Logs' control (health-check) messages."""
    timestamp: int
    message: str


class LogsMessage(BaseModel):
    """A decoded CloudWatch Logs subscription message (one Kinesis record)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    message_type: Literal["DATA_MESSAGE", "CONTROL_MESSAGE"] = Field(alias="messageType")
    owner: str
    log_group: str = Field(alias="logGroup")
    log_stream: str = Field(alias="logStream")
    subscription_filters: list[str] = Field(alias="subscriptionFilters")
    log_events: list[LogEvent] = Field(alias="logEvents")

    @property
    def is_control(self) -> bool:
        return self.message_type == "CONTROL_MESSAGE"

    @model_validator(mode="after")
    def _data_events_have_ids(self) -> LogsMessage:
        if not self.is_control:
            for index, event in enumerate(self.log_events):
                if not event.id:
                    raise ValueError(f"logEvents.{index}.id is empty in a DATA_MESSAGE")
        return self


class PoisonRecord(_Frozen):
    """A Kinesis record that cannot be decoded: set aside, never retried."""

    event_id: str
    sequence_number: str
    shard_id: str
    reason: str
    data_prefix: str = Field(description="The first bytes of the record's base64 data, for diagnosis.")
    batch_id: str = ""


class ChannelType(enum.StrEnum):
    SLACK = "slack"
    WEBHOOK = "webhook"
    SNS = "sns"
    EVENTBRIDGE = "eventbridge"


class Channel(_Frozen):
    """Where a customer's notifications go. `url` and `secret` are secrets: never logged, never shown.

    The delivery-health fields (`last_error`, `last_failed_at`, `failures`) are the store's record of
    permanent failures, cleared by an edit of the channel; like `secret` they are left out of every
    `model_dump` (rules files, views), and the config store writes them explicitly.
    """

    channel_id: str = Field(pattern=IDENTIFIER_PATTERN)
    type: ChannelType
    url: str | None = Field(default=None, repr=False)
    topic_arn: str | None = None
    bus: str | None = None
    """EventBridge: the event bus name or ARN."""
    detail_type: str | None = Field(default=None, min_length=1, max_length=128)
    """EventBridge: the events' `DetailType` (default `logfan.notification`)."""
    secret: str | None = Field(default=None, min_length=16, max_length=256, repr=False, exclude=True)
    """Webhooks: the HMAC-SHA256 signing key (`pipeline.signing`)."""
    last_error: str | None = Field(default=None, exclude=True)
    last_failed_at: int | None = Field(default=None, exclude=True)
    """Epoch ms of the last permanent delivery failure."""
    failures: int | None = Field(default=None, ge=0, exclude=True)
    """Permanent delivery failures since the channel was last edited."""

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("url must be an http(s) URL")
        return value

    def model_post_init(self, __context: Any) -> None:
        if self.type in (ChannelType.SLACK, ChannelType.WEBHOOK) and not self.url:
            raise ValueError(f"channel {self.channel_id!r} of type {self.type.value} needs a url")
        if self.type is ChannelType.SNS and not (self.topic_arn and self.topic_arn.startswith("arn:")):
            raise ValueError(f"channel {self.channel_id!r} of type sns needs a topic_arn")
        if self.type is ChannelType.EVENTBRIDGE and not self.bus:
            raise ValueError(f"channel {self.channel_id!r} of type eventbridge needs a bus (name or ARN)")
        if self.secret is not None and self.type is not ChannelType.WEBHOOK:
            raise ValueError(f"channel {self.channel_id!r}: only webhook channels have a signing secret")
        if (self.bus is not None or self.detail_type is not None) and self.type is not ChannelType.EVENTBRIDGE:
            raise ValueError(f"channel {self.channel_id!r}: bus and detail_type are for eventbridge channels")

    @property
    def has_secret(self) -> bool:
        return bool(self.secret)


class Customer(_Frozen):
    customer_id: str = Field(pattern=IDENTIFIER_PATTERN)
    name: str = ""
    accounts: list[Annotated[str, Field(pattern=ACCOUNT_PATTERN)]] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=list)


class Rule(_Frozen):
    customer_id: str = Field(pattern=IDENTIFIER_PATTERN)
    rule_id: str = Field(pattern=IDENTIFIER_PATTERN)
    name: str = ""
    patterns: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(min_length=1, max_length=32)
    match: Literal["any", "all"] = "any"
    ignore_case: bool = False
    log_groups: list[str] = Field(default_factory=list)
    channel: str = Field(pattern=IDENTIFIER_PATTERN)
    version: int = Field(default=1, ge=1)
    """Starts at 1 and goes up by one with every edit (a conditional write, so edits never cross)."""
    updated_at: int | None = None
    """Epoch seconds of the last registration or edit; None in rules files and older items."""
    status: Literal["active", "quarantined"] = "active"
    quarantine_reason: str = ""
    quarantined_at: int | None = None
    """Epoch ms the parser quarantined the rule (it kept exceeding its time budget); an edit lifts it."""

    @property
    def display_name(self) -> str:
        return self.name or self.rule_id

    @property
    def quarantined(self) -> bool:
        return self.status == "quarantined"


class StreamEvents(_Frozen):
    """The events of one log stream of one owner, as they travel to a parser."""

    owner: str
    log_group: str
    log_stream: str
    events: list[LogEvent]


class SubTaskPayload(_Frozen):
    """What the fan-out sends to one parser invocation."""

    batch_id: str
    subtask_id: str
    customer_id: str
    streams: list[StreamEvents]
    part: int = 0
    """0 for what the fan-out sends; n for the n-th hand-over of a run that ran short of time."""
    carried: CarriedStats | None = None
    """What the earlier parts of this sub-task found, so the last part finishes it with the totals."""

    @property
    def event_count(self) -> int:
        return sum(len(stream.events) for stream in self.streams)


class BatchStatus(enum.StrEnum):
    OPEN = "open"
    COMPLETE = "complete"


class SubTaskStatus(enum.StrEnum):
    PENDING = "pending"
    FINISHED = "finished"
    ABANDONED = "abandoned"
    """The sweeper could not re-drive it (records gone from the stream, or re-drives exhausted)."""


class RuleStats(_Frozen):
    matches: int = 0
    timeouts: int = 0
    errors: int = 0
    skipped_lines: int = 0

    def plus(self, other: RuleStats) -> RuleStats:
        return RuleStats(
            matches=self.matches + other.matches,
            timeouts=self.timeouts + other.timeouts,
            errors=self.errors + other.errors,
            skipped_lines=self.skipped_lines + other.skipped_lines,
        )


class CarriedStats(_Frozen):
    """A sub-task's results so far, handed from one part of its run to the next."""

    events: int = 0
    matches: int = 0
    notified: int = 0
    rule_stats: dict[str, RuleStats] = Field(default_factory=dict)

    def plus(self, events: int, matches: int, notified: int, rule_stats: dict[str, RuleStats]) -> CarriedStats:
        merged = dict(self.rule_stats)
        for rule_id, stats in rule_stats.items():
            merged[rule_id] = merged[rule_id].plus(stats) if rule_id in merged else stats
        return CarriedStats(
            events=self.events + events,
            matches=self.matches + matches,
            notified=self.notified + notified,
            rule_stats=merged,
        )


class SubTaskRecord(_Stored):
    """A sub-task as tracked in the batches table."""

    batch_id: str
    subtask_id: str
    customer_id: str
    status: SubTaskStatus
    events: int
    matches: int = 0
    notified: int = 0
    """Matches this sub-task notified first (the rest were already notified elsewhere)."""
    rule_stats: dict[str, RuleStats] = Field(default_factory=dict)
    lease_holder: str | None = None
    lease_until: int | None = None
    """Epoch ms until which `lease_holder` (a parser run) works on it."""
    redrives: int = 0
    """How often the sweeper re-invoked it."""

    def leased_at(self, now_ms: int) -> bool:
        return self.lease_until is not None and self.lease_until >= now_ms


class BatchRecord(_Stored):
    batch_id: str
    status: BatchStatus
    total_tasks: int
    finished_tasks: int
    created_at: int
    finished_at: int | None = None
    records: int = 0
    events: int = 0
    rejected_records: int = 0
    control_records: int = 0
    unclaimed_events: int = 0
    consolidation_claimed_by: str | None = None
    """Who won the right to trigger the consolidator (a parser run, or the fan-out)."""
    shard_id: str = ""
    first_sequence: str = ""
    last_sequence: str = ""
    """Where the batch's records sit in the stream (a Lambda batch is one shard's contiguous run):
    the sweeper re-reads them to re-drive a sub-task whose invocation was lost."""
    summary: BatchSummary | None = None


class BatchSummary(_Frozen):
    """What the consolidator writes once a batch is complete."""

    batch_id: str
    status: BatchStatus
    total_tasks: int
    finished_tasks: int
    abandoned_tasks: int = 0
    records: int
    events: int
    matches: int
    notified_matches: int
    rejected_records: int
    control_records: int
    unclaimed_events: int
    matches_by_rule: dict[str, int]
    rule_timeouts: dict[str, int]
    created_at: int
    finished_at: int


class Match(_Frozen):
    """One (customer, rule, log event) hit; `match_key` is its identity everywhere."""

    customer_id: str
    rule_id: str
    event_id: str
    owner: str
    log_group: str
    log_stream: str
    timestamp: int
    message: str

    @property
    def match_key(self) -> str:
        return f"{self.customer_id}#{self.rule_id}#{self.event_id}"


class Notification(_Frozen):
    """One message to a channel about one rule's matches.

    An `alert` reports one sub-task part's matches. A `digest` folds the alerts a rule raised while
    its channel was held back (the rule's digest window, the channel's rate limit) into one message:
    `count` is then the total of the folded alerts and `folded` how many there were. A `test` is what
    `logfan notify test` sends. A `quarantine` tells the customer their rule was set aside (its
    samples are empty and `count` is 0).
    """

    notification_id: str
    kind: Literal["alert", "digest", "test", "quarantine"] = "alert"
    folded: int = 0
    """For a digest: how many alerts it folds."""
    detail: str = ""
    """Words for the reader beyond the counts: why a rule was quarantined, what a test is."""
    customer_id: str
    rule_id: str
    rule_name: str
    channel_id: str
    channel_type: ChannelType
    batch_id: str
    subtask_id: str
    count: int
    log_groups: list[str]
    first_timestamp: int
    last_timestamp: int
    samples: list[Match]


BatchRecord.model_rebuild()
SubTaskPayload.model_rebuild()
