"""The ports the pure core talks to; adapters implement them (DynamoDB, Lambda, SQS, channels).

Living outside `adapters/` keeps the core free of boto3: domain modules import these Protocols,
never an implementation.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.models import (
    BatchRecord,
    BatchSummary,
    Channel,
    Customer,
    Match,
    Notification,
    PoisonRecord,
    Rule,
    SubTaskRecord,
    SubTaskStatus,
)

__all__ = [
    "ChannelHealthStore",
    "Clock",
    "ConfigStore",
    "CustomerConfig",
    "DeliveryGates",
    "FunctionInvoker",
    "MatchStore",
    "MetricsSink",
    "NotificationStatus",
    "Notifier",
    "Outbox",
    "OutboxEntry",
    "RejectSink",
    "RuleHealthStore",
    "SubTaskLeases",
    "TrackingStore",
]


class Clock(Protocol):
    def now_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CustomerConfig:
    """Everything a parser needs about one customer."""

    customer: Customer
    rules: tuple[Rule, ...]

    def channel(self, channel_id: str) -> Channel | None:
        return next((c for c in self.customer.channels if c.channel_id == channel_id), None)


class ConfigStore(Protocol):
    def customers_for_owners(self, owners: Iterable[str]) -> dict[str, str]:
        """Owner (AWS account id) -> customer id, for the owners some customer claims."""
        ...

    def load_customer(self, customer_id: str) -> CustomerConfig | None: ...

    def put_customer(self, customer: Customer) -> None: ...

    def put_rule(self, rule: Rule) -> None: ...


class TrackingStore(Protocol):
    """Batch and sub-task tracking items (the fan-out/fan-in state machine's storage)."""

    def create_batch(self, batch: BatchRecord, expires_at: int) -> bool:
        """Write a new batch item; False when one with that id already exists."""
        ...

    def put_subtasks(self, subtasks: Sequence[SubTaskRecord], expires_at: int) -> None:
        """Write new sub-task items (callers only pass ids that do not exist yet)."""
        ...

    def get_batch(self, batch_id: str) -> BatchRecord | None: ...

    def get_subtask(self, batch_id: str, subtask_id: str) -> SubTaskRecord | None: ...

    def list_subtasks(self, batch_id: str) -> list[SubTaskRecord]: ...

    def finish_subtask(self, record: SubTaskRecord, status: SubTaskStatus, finished_at: int) -> bool:
        """Atomically move a pending sub-task to `status` and count it on its batch.

        False when the sub-task was no longer pending (another run got there first).
        """
        ...

    def claim_consolidation(self, batch_id: str, claimant: str) -> bool:
        """True for exactly one caller, once every sub-task of the batch is finished."""
        ...

    def complete_batch(self, summary: BatchSummary) -> bool:
        """Mark the batch complete with its summary; False when it already was."""
        ...

    def iter_batches(self) -> Iterator[BatchRecord]: ...


class SubTaskLeases(Protocol):
    """Which run works on a pending sub-task: Lambda may deliver one async invocation twice at once."""

    def lease_subtask(self, batch_id: str, subtask_id: str, holder: str, *, now_ms: int, until_ms: int) -> bool:
        """Hold a pending sub-task for `holder` until `until_ms` (its invocation's deadline).

        False when the sub-task is no longer pending or another holder's lease is still live.
        """
        ...

    def release_subtask(self, batch_id: str, subtask_id: str, holder: str) -> None:
        """Give up `holder`'s lease (a failed run), so Lambda's retry need not wait for it to lapse."""
        ...


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    """Delivery failed permanently (a 4xx, a bad target); kept with its error, not retried."""
    HELD = "held"
    """Waiting in the outbox for the dispatcher: held back by its rule's digest window or its
    channel's rate limit, or waiting to retry a transient failure (`hold_until`)."""
    DIGESTED = "digested"
    """Folded into a digest (`digest_id`), which is delivered in its place."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A notification in the outbox, with where it stands."""

    notification: Notification
    status: NotificationStatus
    attempts: int = 0
    """Delivery attempts that failed transiently so far."""
    hold_until: int = 0
    """Epoch ms before which the dispatcher leaves a held notification alone."""
    error: str = ""
    held_for: str = ""
    """Why it is held: `window` (its rule's digest window; folds into a digest), `slot` (its
    channel's rate limit) or `retry` (a transient failure); the last two go out as themselves."""


class MatchStore(Protocol):
    """The match/notification outbox: what was matched, and whether it was notified."""

    def claim_matches(
        self,
        matches: Sequence[Match],
        notification_id: str,
        *,
        batch_id: str,
        subtask_id: str,
        expires_at: int,
    ) -> list[Match]:
        """Record each match under its `match_key` for `notification_id`.

        Returns the matches that now belong to this notification: new ones, and ones an earlier
        run of the same notification recorded. Matches another notification owns are left out.
        """
        ...

    def load_notification(self, notification_id: str) -> OutboxEntry | None:
        """The notification as saved, with its status (a strongly consistent read)."""
        ...

    def save_notification(
        self,
        notification: Notification,
        status: NotificationStatus,
        *,
        expires_at: int,
        error: str = "",
        hold_until: int = 0,
        attempts: int = 0,
        held_for: str = "",
    ) -> None:
        """Write the notification with `status`; a `held` one joins the dispatcher's queue."""
        ...

    def iter_matches(self) -> Iterator[Match]: ...


class Outbox(MatchStore, Protocol):
    """What the dispatcher needs beyond the parser's view: the queue of held notifications."""

    def held_notifications(self, due_before_ms: int) -> list[OutboxEntry]:
        """Held notifications whose `hold_until` is before `due_before_ms`, oldest first."""
        ...

    def fold_into_digest(self, digest: Notification, members: Sequence[str], *, expires_at: int) -> bool:
        """Atomically save `digest` as held and mark every member `digested` into it.

        False (and nothing written) when a member is no longer held: someone else dealt with it.
        """
        ...


class DeliveryGates(Protocol):
    """The two limits a delivery passes: a rule's digest window and a channel's rate limit."""

    def open_rule_window(self, customer_id: str, rule_id: str, *, now_ms: int, window_ms: int) -> int | None:
        """Open the rule's window until `now_ms + window_ms`: None when this call opened it, else
        the epoch ms at which the open window closes."""
        ...

    def take_channel_slot(self, customer_id: str, channel_id: str, *, now_ms: int, interval_ms: int) -> int | None:
        """Take the channel's next send slot: None when taken, else the epoch ms it frees up."""
        ...


class RuleHealthStore(Protocol):
    """Counts a rule's time-budget strikes and quarantines it (with its notice, atomically)."""

    def record_strike(self, customer_id: str, rule_id: str, *, version: int, now_ms: int, window_ms: int) -> int:
        """Count one invocation in which the rule exceeded its budget; returns the strikes of this
        version within the last `window_ms` (older strikes lapse)."""
        ...

    def quarantine(self, rule: Rule, *, reason: str, at_ms: int, notice: Notification, expires_at: int) -> bool:
        """Quarantine the rule (if still at `rule.version` and active) and queue `notice` in the
        outbox, in one transaction. True only for the call that quarantined it."""
        ...


class FunctionInvoker(Protocol):
    def invoke_async(self, function_name: str, payload: bytes) -> None:
        """Queue an `Event` invocation; raises `InvokeError` when it was not accepted."""
        ...


class Notifier(Protocol):
    def send(self, channel: Channel, notification: Notification) -> None:
        """Deliver one notification; raises `DeliveryError` when it cannot."""
        ...


class ChannelHealthStore(Protocol):
    """Where a channel's permanent delivery failures are recorded for the customer to see."""

    def record_delivery_failure(self, customer_id: str, channel_id: str, *, error: str, at_ms: int) -> None:
        """Note on the channel that a delivery failed for good, and why (never the secret URL)."""
        ...


class RejectSink(Protocol):
    def reject(self, records: Sequence[PoisonRecord]) -> None:
        """Set poison records aside durably (a dead-letter queue, or a local file)."""
        ...


class MetricsSink(Protocol):
    def count(self, name: str, value: float = 1) -> None: ...

    def timing(self, name: str, milliseconds: float) -> None:
        """One observation of a duration (a metric in milliseconds, read as percentiles)."""
        ...

    def flush(self) -> None: ...
