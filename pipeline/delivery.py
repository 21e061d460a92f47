"""Deliver notifications without flooding a channel and without losing one (pure over ports).

Every notification goes through the outbox. The first alert of a rule goes out at once and opens
the rule's digest window; the rule's further alerts within the window are held, and the
dispatcher (the scheduled sweeper) folds them into one digest when the window closes. A
channel's rate limit (Slack takes about one message per second per webhook) is a send slot per
channel: a short wait is waited out in-line, a longer one holds the notification back. A
transient failure holds it for a retry with backoff (or the receiver's `Retry-After`); a
permanent one is recorded as failed and on the channel, for the customer to see. Nothing is
dropped: a held notification stays in the outbox until it is sent, folded, or fails for good.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline.errors import DeliveryError, LogfanError
from pipeline.faults import NO_FAULTS, FaultPoints
from pipeline.models import Channel, ChannelType, Notification
from pipeline.ports import (
    ChannelHealthStore,
    Clock,
    ConfigStore,
    DeliveryGates,
    MatchStore,
    MetricsSink,
    NotificationStatus,
    Notifier,
    Outbox,
    OutboxEntry,
)

__all__ = [
    "DEFAULT_CHANNEL_INTERVALS_MS",
    "DeliveryDeps",
    "DeliveryPolicy",
    "DispatchDeps",
    "DispatchResult",
    "Sent",
    "attempt",
    "build_digest",
    "deliver_alert",
    "dispatch",
    "retry_delay_ms",
]

_log = logging.getLogger("logfan.delivery")

DAY_S = 86_400
MAX_DIGEST_MEMBERS = 99
"""A digest and its members are written in one DynamoDB transaction (at most 100 actions)."""

DEFAULT_CHANNEL_INTERVALS_MS: Mapping[ChannelType, int] = {ChannelType.SLACK: 1000}
"""Slack's incoming webhooks take about one message per second; other channels are not limited."""

Sent = Literal["sent", "held", "failed"]


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    digest_window_ms: int = 60_000
    """After a rule's alert goes out, its further alerts within this long are folded into a digest."""
    channel_intervals_ms: Mapping[ChannelType, int] = field(default_factory=lambda: dict(DEFAULT_CHANNEL_INTERVALS_MS))
    max_inline_wait_ms: int = 2_000
    """Wait this long at most for a channel's send slot before holding the notification back."""
    retry_base_ms: int = 30_000
    retry_max_ms: int = 3_600_000
    max_attempts: int = 8
    """Transient failures before a notification is given up as failed (and the channel flagged)."""
    digest_samples: int = 5
    ttl_days: int = 14

    def interval_ms(self, channel: Channel) -> int:
        return self.channel_intervals_ms.get(channel.type, 0)


@dataclass(frozen=True, slots=True)
class DeliveryDeps:
    outbox: MatchStore
    gates: DeliveryGates
    notifier: Notifier
    health: ChannelHealthStore
    metrics: MetricsSink
    clock: Clock
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    sleep: Callable[[float], None] = time.sleep
    faults: FaultPoints = NO_FAULTS
    jitter: Callable[[], float] = random.random

    def expires_at(self) -> int:
        return self.clock.now_ms() // 1000 + self.policy.ttl_days * DAY_S


def retry_delay_ms(attempts: int, policy: DeliveryPolicy, jitter: float, retry_after_s: float | None = None) -> int:
    """Exponential backoff with full jitter; the receiver's `Retry-After`, when longer, wins."""
    backoff = min(policy.retry_max_ms, policy.retry_base_ms * 2 ** max(0, attempts - 1))
    delay = int(backoff / 2 + jitter * backoff / 2)
    if retry_after_s is not None:
        delay = max(delay, int(retry_after_s * 1000))
    return delay


def _wait_for_slot(deps: DeliveryDeps, notification: Notification, channel: Channel, *, patient: bool) -> int | None:
    """Take the channel's send slot, waiting out a short wait. None when taken, else when it frees."""
    interval = deps.policy.interval_ms(channel)
    if interval <= 0:
        return None
    while True:
        now = deps.clock.now_ms()
        free_at = deps.gates.take_channel_slot(
            notification.customer_id, channel.channel_id, now_ms=now, interval_ms=interval
        )
        if free_at is None:
            return None
        wait_ms = free_at - now
        if wait_ms > deps.policy.max_inline_wait_ms and not patient:
            return free_at
        deps.sleep(max(wait_ms, 1) / 1000)


def attempt(deps: DeliveryDeps, notification: Notification, channel: Channel, *, attempts: int = 0) -> Sent:
    """Send once and record the outcome in the outbox: sent, held for a retry, or failed."""
    expires_at = deps.expires_at()
    try:
        deps.notifier.send(channel, notification)
        deps.faults.reached("parser.after_send", notification.notification_id)
    except DeliveryError as exc:
        deps.metrics.count("NotificationFailures")
        tries = attempts + 1
        if exc.permanent or tries >= deps.policy.max_attempts:
            why = str(exc) if exc.permanent else f"gave up after {tries} attempts: {exc}"
            _log.error(
                "notification failed permanently",
                extra={"notification_id": notification.notification_id, "channel_id": channel.channel_id, "error": why},
            )
            deps.outbox.save_notification(notification, NotificationStatus.FAILED, expires_at=expires_at, error=why)
            deps.health.record_delivery_failure(
                notification.customer_id, channel.channel_id, error=why, at_ms=deps.clock.now_ms()
            )
            deps.metrics.count("NotificationsFailed")
            return "failed"
        delay = retry_delay_ms(tries, deps.policy, deps.jitter(), exc.retry_after_s)
        _log.warning(
            "notification failed transiently; held for a retry",
            extra={"notification_id": notification.notification_id, "error": str(exc), "retry_in_ms": delay},
        )
        deps.outbox.save_notification(
            notification,
            NotificationStatus.HELD,
            expires_at=expires_at,
            error=str(exc),
            hold_until=deps.clock.now_ms() + delay,
            attempts=tries,
            held_for="retry",
        )
        deps.metrics.count("NotificationRetriesScheduled")
        return "held"
    deps.outbox.save_notification(notification, NotificationStatus.SENT, expires_at=expires_at)
    deps.faults.reached("parser.after_mark_sent", notification.notification_id)
    deps.metrics.count("NotificationsSent")
    return "sent"


def deliver_alert(
    deps: DeliveryDeps, notification: Notification, channel: Channel, previous: OutboxEntry | None
) -> Sent:
    """A parser's alert: send it now, or hold it back for the rule's digest or the channel's slot.

    `previous` is the outbox entry an earlier, crashed run of the same notification left
    `pending`: that run may have sent it, so it goes out again under the same id (receivers
    deduplicate on it), carrying the larger of the two reports.
    """
    if previous is not None:
        if previous.notification.count >= notification.count:
            notification = previous.notification
        return attempt(deps, notification, channel, attempts=previous.attempts)
    now = deps.clock.now_ms()
    held_for = "window"
    hold_until: int | None = None
    if deps.policy.digest_window_ms > 0:
        hold_until = deps.gates.open_rule_window(
            notification.customer_id, notification.rule_id, now_ms=now, window_ms=deps.policy.digest_window_ms
        )
    if hold_until is None:
        # This alert opened its rule's window: only the channel's rate limit can still hold it.
        held_for = "slot"
        hold_until = _wait_for_slot(deps, notification, channel, patient=False)
    if hold_until is not None:
        deps.outbox.save_notification(
            notification,
            NotificationStatus.HELD,
            expires_at=deps.expires_at(),
            hold_until=hold_until,
            held_for=held_for,
        )
        deps.metrics.count("NotificationsHeld")
        return "held"
    deps.outbox.save_notification(notification, NotificationStatus.PENDING, expires_at=deps.expires_at())
    return attempt(deps, notification, channel)


def build_digest(members: Sequence[Notification], *, max_samples: int) -> Notification:
    """Fold one rule's held alerts into one message; its id follows from the alerts it folds."""
    ids = sorted(member.notification_id for member in members)
    digest_id = "d-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]
    latest = max(members, key=lambda member: member.last_timestamp)
    samples = sorted((s for member in members for s in member.samples), key=lambda m: (m.timestamp, m.event_id))
    return Notification(
        notification_id=digest_id,
        kind="digest",
        folded=len(members),
        customer_id=latest.customer_id,
        rule_id=latest.rule_id,
        rule_name=latest.rule_name,
        channel_id=latest.channel_id,
        channel_type=latest.channel_type,
        batch_id="",
        subtask_id="",
        count=sum(member.count for member in members),
        log_groups=sorted({group for member in members for group in member.log_groups}),
        first_timestamp=min(member.first_timestamp for member in members),
        last_timestamp=max(member.last_timestamp for member in members),
        samples=samples[:max_samples],
    )


@dataclass(frozen=True, slots=True)
class DispatchDeps:
    delivery: DeliveryDeps
    outbox: Outbox
    config: ConfigStore


@dataclass(slots=True)
class DispatchResult:
    due: int = 0
    sent: int = 0
    digests: int = 0
    folded: int = 0
    held: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, outcome: Sent) -> None:
        if outcome == "sent":
            self.sent += 1
        elif outcome == "held":
            self.held += 1
        else:
            self.failed += 1


def _groups(entries: Iterable[OutboxEntry]) -> dict[tuple[str, str, str], list[OutboxEntry]]:
    grouped: dict[tuple[str, str, str], list[OutboxEntry]] = {}
    for entry in entries:
        n = entry.notification
        grouped.setdefault((n.customer_id, n.rule_id, n.channel_id), []).append(entry)
    return grouped


def dispatch(deps: DispatchDeps, *, drain: bool = False) -> DispatchResult:
    """Deliver what the outbox holds and is due: retries one by one, a rule's held alerts as a digest.

    `drain` delivers everything held now, windows and retry times notwithstanding (still one
    message per channel slot): the local runtime's last step, where no later run would come.
    """
    delivery = deps.delivery
    now = delivery.clock.now_ms()
    due = deps.outbox.held_notifications(due_before_ms=2**62 if drain else now + 1)
    result = DispatchResult(due=len(due))
    channels: dict[str, dict[str, Channel]] = {}
    for (customer_id, rule_id, channel_id), entries in _groups(due).items():
        try:
            if customer_id not in channels:
                config = deps.config.load_customer(customer_id)
                channels[customer_id] = {} if config is None else {c.channel_id: c for c in config.customer.channels}
            channel = channels[customer_id].get(channel_id)
            if channel is None:
                _give_up(delivery, entries, f"channel {channel_id!r} no longer exists", result)
                continue
            _dispatch_group(delivery, deps.outbox, channel, entries, drain=drain, result=result)
        except LogfanError as exc:
            # One customer's trouble (a throttled table, a broken channel) never stops the others.
            _log.error(
                "dispatch failed for a rule; the next run retries", extra={"rule_id": rule_id, "error": str(exc)}
            )
            result.errors.append(f"{customer_id}/{rule_id}: {exc}")
    delivery.metrics.count("NotificationsDispatched", result.sent)
    delivery.metrics.count("DigestsSent", result.digests)
    return result


def _give_up(delivery: DeliveryDeps, entries: Sequence[OutboxEntry], why: str, result: DispatchResult) -> None:
    for entry in entries:
        delivery.outbox.save_notification(
            entry.notification, NotificationStatus.FAILED, expires_at=delivery.expires_at(), error=why
        )
        delivery.metrics.count("NotificationsFailed")
        result.failed += 1


def _dispatch_group(
    delivery: DeliveryDeps,
    outbox: Outbox,
    channel: Channel,
    entries: Sequence[OutboxEntry],
    *,
    drain: bool,
    result: DispatchResult,
) -> None:
    # Retries, digests, notices and alerts that own their window go out as themselves (under
    # their own id); alerts held by their rule's window fold into a digest.
    def folds(entry: OutboxEntry) -> bool:
        return entry.notification.kind == "alert" and entry.held_for in ("window", "")

    singles = [e for e in entries if not folds(e)]
    alerts = [e for e in entries if folds(e)]
    for entry in singles:
        if _wait_for_slot(delivery, entry.notification, channel, patient=drain) is not None:
            return  # the channel is busy: everything of this group waits for the next run
        result.count(attempt(delivery, entry.notification, channel, attempts=entry.attempts))
    if not alerts:
        return
    first = alerts[0].notification
    window = delivery.policy.digest_window_ms
    if window > 0 and not drain:
        now = delivery.clock.now_ms()
        if delivery.gates.open_rule_window(first.customer_id, first.rule_id, now_ms=now, window_ms=window) is not None:
            return  # an alert of this rule went out meanwhile; fold these after its window
    ordered = sorted(alerts, key=lambda e: (e.notification.first_timestamp, e.notification.notification_id))
    pieces = -(-len(ordered) // MAX_DIGEST_MEMBERS)
    for index in range(pieces):
        # Even pieces: 199 alerts are three digests of 66-67, not 99 + 99 + a lone alert.
        chunk = [e.notification for e in ordered[index * len(ordered) // pieces : (index + 1) * len(ordered) // pieces]]
        if _wait_for_slot(delivery, chunk[0], channel, patient=drain) is not None:
            return
        if len(chunk) == 1:
            result.count(attempt(delivery, chunk[0], channel))
            continue
        digest = build_digest(chunk, max_samples=delivery.policy.digest_samples)
        if not outbox.fold_into_digest(digest, [n.notification_id for n in chunk], expires_at=delivery.expires_at()):
            continue  # another dispatcher folded some of them first
        delivery.faults.reached("dispatcher.after_fold", digest.notification_id)
        result.digests += 1
        result.folded += len(chunk)
        result.count(attempt(delivery, digest, channel))
