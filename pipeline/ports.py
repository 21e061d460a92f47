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
    "FunctionInvoker",
    "MatchStore",
    "MetricsSink",
    "NotificationStatus",
    "Notifier",
    "RejectSink",
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

    def notification_status(self, notification_id: str) -> NotificationStatus | None: ...

    def save_notification(
        self, notification: Notification, status: NotificationStatus, *, expires_at: int, error: str = ""
    ) -> None: ...

    def iter_matches(self) -> Iterator[Match]: ...


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

    def flush(self) -> None: ...
