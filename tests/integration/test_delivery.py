"""Digest windows, channel rate limits, retries and the dispatcher, over the outbox on moto."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest

from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.adapters.dynamodb_gates import DynamoDBDeliveryGates
from pipeline.adapters.dynamodb_matches import DynamoDBMatchStore
from pipeline.delivery import (
    MAX_DIGEST_MEMBERS,
    DeliveryDeps,
    DeliveryPolicy,
    DispatchDeps,
    build_digest,
    deliver_alert,
    dispatch,
    retry_delay_ms,
)
from pipeline.errors import DeliveryError
from pipeline.faults import InjectedCrash
from pipeline.local.aws import LocalAws
from pipeline.models import Channel, ChannelType, Notification
from pipeline.notifications import build_notification, notification_id_for
from pipeline.observability import CountingMetrics
from pipeline.ports import NotificationStatus
from tests import factories as f

T0 = 1_795_000_000_000
WINDOW_MS = 60_000


@dataclass
class FakeClock:
    now: int = T0

    def now_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@dataclass
class RecordingChannel:
    """The receiving end: what arrived, in order; `fail` makes deliveries raise first."""

    sent: list[Notification] = field(default_factory=list)
    fail: list[DeliveryError] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)

    def send(self, channel: Channel, notification: Notification) -> None:
        self.attempts[notification.notification_id] += 1
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append(notification)


@dataclass
class RecordingHealth:
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    def record_delivery_failure(self, customer_id: str, channel_id: str, *, error: str, at_ms: int) -> None:
        self.failures.append((customer_id, channel_id, error))


@dataclass
class Rig:
    delivery: DeliveryDeps
    dispatcher: DispatchDeps
    outbox: DynamoDBMatchStore
    clock: FakeClock
    channel: RecordingChannel
    health: RecordingHealth
    webhook: Channel
    slack: Channel
    config: DynamoDBConfigStore


_ids = itertools.count()


@pytest.fixture
def rig(aws: LocalAws) -> Rig:
    names = aws.names
    config = DynamoDBConfigStore(aws.dynamodb, names.config_table)
    webhook = Channel(channel_id="ops", type=ChannelType.WEBHOOK, url="https://hooks.example.com/x")
    slack = Channel(channel_id="chat", type=ChannelType.SLACK, url="https://hooks.slack.com/services/T/B/x")
    config.put_customer(f.customer("acme", ["111122223333"]).model_copy(update={"channels": [webhook, slack]}))
    clock = FakeClock()
    outbox = DynamoDBMatchStore(aws.dynamodb, names.matches_table)
    channel = RecordingChannel()
    health = RecordingHealth()
    delivery = DeliveryDeps(
        outbox=outbox,
        gates=DynamoDBDeliveryGates(aws.dynamodb, names.matches_table),
        notifier=channel,
        health=health,
        metrics=CountingMetrics(),
        clock=clock,
        policy=DeliveryPolicy(digest_window_ms=WINDOW_MS, channel_intervals_ms={ChannelType.SLACK: 1000}),
        sleep=clock.sleep,
        jitter=lambda: 0.5,
    )
    return Rig(delivery, DispatchDeps(delivery, outbox, config), outbox, clock, channel, health, webhook, slack, config)


def alert(rig: Rig, *, rule_id: str = "errors", count: int = 2, channel: Channel | None = None) -> Notification:
    """A fresh alert of one sub-task, its matches claimed in the outbox as the parser does."""
    target = channel or rig.webhook
    subtask = f"acme#{next(_ids):04d}"
    matches = [f.log_match(f"ERROR {i}", rule_id=rule_id, timestamp=rig.clock.now - 1000 + i) for i in range(count)]
    notification_id = notification_id_for("acme", rule_id, "b-1", subtask, 0)
    claimed = rig.outbox.claim_matches(matches, notification_id, batch_id="b-1", subtask_id=subtask, expires_at=0)
    return build_notification(
        f.rule("acme", rule_id, "ERROR", channel=target.channel_id),
        target,
        notification_id,
        claimed,
        batch_id="b-1",
        subtask_id=subtask,
        max_samples=3,
    )


def test_a_rules_first_alert_goes_out_and_the_next_ones_wait_for_a_digest(rig: Rig) -> None:
    # Given three alerts of one rule within a minute
    first, second, third = alert(rig), alert(rig, count=5), alert(rig, count=1)

    # When the parsers deliver them as they come
    outcomes = [deliver_alert(rig.delivery, n, rig.webhook, None) for n in (first, second, third)]

    # Then only the first went out; the others wait until its window closes
    assert outcomes == ["sent", "held", "held"]
    assert [n.notification_id for n in rig.channel.sent] == [first.notification_id]
    held = rig.outbox.held_notifications(due_before_ms=2**62)
    assert {e.hold_until for e in held} == {T0 + WINDOW_MS}

    # When the dispatcher runs inside the window, nothing goes out
    assert dispatch(rig.dispatcher).sent == 0

    # When it runs after the window, the two are folded into one digest that says so
    rig.clock.now = T0 + WINDOW_MS
    result = dispatch(rig.dispatcher)

    assert (result.digests, result.folded, result.sent) == (1, 2, 1)
    digest = rig.channel.sent[-1]
    assert (digest.kind, digest.folded, digest.count) == ("digest", 2, 6)
    assert digest.notification_id == build_digest([second, third], max_samples=5).notification_id
    assert rig.outbox.unnotified() == []
    assert {e.notification.notification_id: e.status for e in rig.outbox.outbox()} == {
        first.notification_id: NotificationStatus.SENT,
        second.notification_id: NotificationStatus.DIGESTED,
        third.notification_id: NotificationStatus.DIGESTED,
        digest.notification_id: NotificationStatus.SENT,
    }


def test_a_flood_of_ten_thousand_matches_in_a_minute_is_a_handful_of_messages(rig: Rig) -> None:
    # Given 100 sub-tasks of 100 matches each within one minute, every one an alert of one rule
    # (one match of each is recorded in the outbox: moto slows down with every item a table holds)
    alerts = [alert(rig, count=1).model_copy(update={"count": 100}) for _ in range(100)]
    for index, notification in enumerate(alerts):
        rig.clock.now = T0 + index * 500
        deliver_alert(rig.delivery, notification, rig.webhook, None)

    # When the dispatcher runs after the window
    rig.clock.now = T0 + WINDOW_MS + 1
    dispatch(rig.dispatcher)

    # Then a handful of messages carry every match, each reported once
    messages = rig.channel.sent
    assert [(m.kind, m.folded) for m in messages] == [("alert", 0), ("digest", MAX_DIGEST_MEMBERS)]
    assert sum(m.count for m in messages) == 10_000
    assert rig.outbox.unnotified() == []


def test_a_channel_slot_is_waited_for_in_line_when_it_is_close(rig: Rig) -> None:
    # Given two rules on one Slack channel, which takes one message a second
    one, two = alert(rig, rule_id="one", channel=rig.slack), alert(rig, rule_id="two", channel=rig.slack)

    # When both alert at once
    outcomes = [deliver_alert(rig.delivery, n, rig.slack, None) for n in (one, two)]

    # Then the second waited out the second instead of being held back
    assert outcomes == ["sent", "sent"]
    assert rig.clock.now == T0 + 1000


def test_a_channel_slot_too_far_away_holds_the_alert_back(rig: Rig) -> None:
    rig.delivery = replace(rig.delivery, policy=replace(rig.delivery.policy, max_inline_wait_ms=100))
    rig.dispatcher = replace(rig.dispatcher, delivery=rig.delivery)
    one, two = alert(rig, rule_id="one", channel=rig.slack), alert(rig, rule_id="two", channel=rig.slack)

    assert [deliver_alert(rig.delivery, n, rig.slack, None) for n in (one, two)] == ["sent", "held"]
    (held,) = rig.outbox.held_notifications(due_before_ms=2**62)
    assert held.hold_until == T0 + 1000

    # The next dispatcher run after the slot frees sends it as itself (one alert is no digest)
    rig.clock.now = T0 + 1000
    assert dispatch(rig.dispatcher).sent == 1
    assert rig.channel.sent[-1].notification_id == two.notification_id


def test_a_transient_failure_is_retried_after_backoff_or_retry_after_under_the_same_id(rig: Rig) -> None:
    # Given a receiver that throttles twice, once asking for two minutes
    rig.channel.fail = [DeliveryError("HTTP 503"), DeliveryError("HTTP 429", retry_after_s=120)]
    notification = alert(rig)

    # When the parser delivers it
    assert deliver_alert(rig.delivery, notification, rig.webhook, None) == "held"
    (entry,) = rig.outbox.held_notifications(due_before_ms=2**62)
    assert (entry.attempts, entry.hold_until) == (1, T0 + retry_delay_ms(1, rig.delivery.policy, 0.5))

    # When the dispatcher retries when due, the receiver asks for two minutes
    rig.clock.now = entry.hold_until
    dispatch(rig.dispatcher)
    (entry,) = rig.outbox.held_notifications(due_before_ms=2**62)
    assert (entry.attempts, entry.hold_until) == (2, rig.clock.now + 120_000)

    # Then the third try delivers it, under the id it had from the start
    rig.clock.now = entry.hold_until
    assert dispatch(rig.dispatcher).sent == 1
    assert rig.channel.attempts == Counter({notification.notification_id: 3})
    assert rig.outbox.unnotified() == []


def test_a_permanent_failure_is_recorded_on_the_notification_and_the_channel(rig: Rig) -> None:
    rig.channel.fail = [DeliveryError("webhook channel ops answered HTTP 410", permanent=True)]
    notification = alert(rig)

    assert deliver_alert(rig.delivery, notification, rig.webhook, None) == "failed"

    entry = rig.outbox.load_notification(notification.notification_id)
    assert entry is not None and entry.status is NotificationStatus.FAILED and "410" in entry.error
    assert rig.health.failures == [("acme", "ops", "webhook channel ops answered HTTP 410")]
    assert rig.outbox.held_notifications(due_before_ms=2**62) == []


def test_retries_give_up_after_the_last_attempt_and_say_so(rig: Rig) -> None:
    rig.delivery = replace(rig.delivery, policy=replace(rig.delivery.policy, max_attempts=2))
    rig.dispatcher = replace(rig.dispatcher, delivery=rig.delivery)
    rig.channel.fail = [DeliveryError("network error: TimeoutError")] * 2
    notification = alert(rig)

    deliver_alert(rig.delivery, notification, rig.webhook, None)
    dispatch(rig.dispatcher, drain=True)

    entry = rig.outbox.load_notification(notification.notification_id)
    assert entry is not None and entry.status is NotificationStatus.FAILED
    assert entry.error.startswith("gave up after 2 attempts")
    assert len(rig.health.failures) == 1


def test_a_crash_after_folding_sends_the_same_digest_on_the_next_run(rig: Rig) -> None:
    first, second, third = alert(rig), alert(rig), alert(rig)
    for notification in (first, second, third):
        deliver_alert(rig.delivery, notification, rig.webhook, None)

    class CrashAfterFold:
        def reached(self, point: str, key: str) -> None:
            if point == "dispatcher.after_fold":
                raise InjectedCrash(point)

    crashing = replace(rig.delivery, faults=CrashAfterFold())
    with pytest.raises(InjectedCrash):
        dispatch(replace(rig.dispatcher, delivery=crashing), drain=True)
    assert len(rig.channel.sent) == 1

    # The digest waits in the outbox; the next run sends it (not a digest of a digest)
    result = dispatch(rig.dispatcher, drain=True)
    assert (result.sent, result.digests) == (1, 0)
    digest = rig.channel.sent[-1]
    assert (digest.kind, digest.folded) == ("digest", 2)
    assert dispatch(rig.dispatcher, drain=True).due == 0
    assert rig.outbox.unnotified() == []


def test_a_rerun_of_a_crashed_send_resends_the_larger_report_under_the_same_id(rig: Rig) -> None:
    # Given a run that saved its alert of 4 matches as pending and died (maybe after sending)
    four = alert(rig, count=4)
    rig.outbox.save_notification(four, NotificationStatus.PENDING, expires_at=0)
    previous = rig.outbox.load_notification(four.notification_id)

    # When the retry found only 3 of them (an evaluation timed out this time)
    three = four.model_copy(update={"count": 3, "samples": four.samples[:3]})
    deliver_alert(rig.delivery, three, rig.webhook, previous)

    # Then the retry sends the first report again, window or not
    assert [(n.notification_id, n.count) for n in rig.channel.sent] == [(four.notification_id, 4)]


def test_held_alerts_of_a_deleted_channel_fail_instead_of_waiting_forever(rig: Rig) -> None:
    deliver_alert(rig.delivery, alert(rig), rig.webhook, None)
    held = alert(rig)
    deliver_alert(rig.delivery, held, rig.webhook, None)
    rig.config.delete_channel("acme", "ops")

    result = dispatch(rig.dispatcher, drain=True)

    assert result.failed == 1
    entry = rig.outbox.load_notification(held.notification_id)
    assert entry is not None and entry.status is NotificationStatus.FAILED and "no longer exists" in entry.error


def test_a_digest_sums_its_alerts_and_its_id_does_not_depend_on_their_order() -> None:
    members = [
        Notification.model_validate(
            {
                "notification_id": f"n-{i:032d}",
                "customer_id": "acme",
                "rule_id": "errors",
                "rule_name": "errors",
                "channel_id": "ops",
                "channel_type": "webhook",
                "batch_id": "b",
                "subtask_id": f"acme#{i:04d}",
                "count": 1,
                "log_groups": ["/g"],
                "first_timestamp": i,
                "last_timestamp": i,
                "samples": [],
            }
        )
        for i in range(3)
    ]

    digest = build_digest(members, max_samples=5)

    assert (digest.kind, digest.count, digest.folded, digest.first_timestamp, digest.last_timestamp) == (
        "digest",
        3,
        3,
        0,
        2,
    )
    assert build_digest(list(reversed(members)), max_samples=5).notification_id == digest.notification_id
