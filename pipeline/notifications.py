"""Turn matches into notifications, and what every channel shares about them (pure).

One notification per (rule, sub-task part). Its `notification_id` is derived from the customer,
rule, batch, sub-task and part it reports on, so a re-run of the same sub-task produces the same id
and receivers can deduplicate on it. How each channel type renders a notification lives with the
channel (`pipeline.adapters.channels.<type>`); the `logfan.notification/v1` document that webhooks,
SNS and EventBridge carry is defined here, once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pipeline.models import Channel, Match, Notification, Rule

__all__ = [
    "SAMPLE_MESSAGE_MAX_CHARS",
    "WEBHOOK_SCHEMA",
    "build_notification",
    "build_test_notification",
    "console_url",
    "group_by_rule",
    "iso",
    "notification_document",
    "notification_id_for",
    "notification_id_for_test",
    "plural",
    "summary",
]

SAMPLE_MESSAGE_MAX_CHARS = 1000
WEBHOOK_SCHEMA = "logfan.notification/v1"


def notification_id_for(customer_id: str, rule_id: str, batch_id: str, subtask_id: str, part: int) -> str:
    """The identity of the one notification a rule gets from one part of one sub-task.

    Not derived from the events it reports: which events a run finds can differ between a crashed
    run and its retry (an evaluation that timed out once may not the next time), and the retry
    must send the very notification whose matches the crashed run already claimed.
    """
    digest = hashlib.sha256("\n".join([customer_id, rule_id, batch_id, subtask_id, str(part)]).encode()).hexdigest()
    return f"n-{digest[:32]}"


def group_by_rule(matches: Iterable[Match]) -> dict[str, list[Match]]:
    grouped: dict[str, list[Match]] = {}
    for match in matches:
        grouped.setdefault(match.rule_id, []).append(match)
    return grouped


def _sample(match: Match) -> Match:
    if len(match.message) <= SAMPLE_MESSAGE_MAX_CHARS:
        return match
    return match.model_copy(update={"message": match.message[:SAMPLE_MESSAGE_MAX_CHARS] + "…[truncated]"})


def build_notification(
    rule: Rule,
    channel: Channel,
    notification_id: str,
    matches: Sequence[Match],
    *,
    batch_id: str,
    subtask_id: str,
    max_samples: int,
) -> Notification:
    """Summarise one rule's matches: count, time span, log groups and the first few lines."""
    ordered = sorted(matches, key=lambda m: (m.timestamp, m.event_id))
    return Notification(
        notification_id=notification_id,
        customer_id=rule.customer_id,
        rule_id=rule.rule_id,
        rule_name=rule.display_name,
        channel_id=channel.channel_id,
        channel_type=channel.type,
        batch_id=batch_id,
        subtask_id=subtask_id,
        count=len(ordered),
        log_groups=sorted({m.log_group for m in ordered}),
        first_timestamp=ordered[0].timestamp,
        last_timestamp=ordered[-1].timestamp,
        samples=[_sample(m) for m in ordered[:max_samples]],
    )


def console_url(region: str, log_group: str, log_stream: str, timestamp_ms: int) -> str:
    """A CloudWatch Logs console link to the log stream, a minute before the event."""

    def encode(text: str) -> str:
        return quote(quote(text, safe=""), safe="").replace("%", "$")

    start = max(0, timestamp_ms - 60_000)
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
        f"{encode(log_group)}/log-events/{encode(log_stream)}$3Fstart$3D{start}"
    )


def iso(timestamp_ms: int) -> str:
    """Epoch ms as ISO 8601 UTC with milliseconds, as the webhook document writes times."""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def notification_id_for_test(customer_id: str, channel_id: str, nonce: str) -> str:
    """A fresh id per test send (`nonce`: anything unique), distinct from every alert's id."""
    digest = hashlib.sha256("\n".join(["test", customer_id, channel_id, nonce]).encode()).hexdigest()
    return f"t-{digest[:32]}"


def build_test_notification(customer_id: str, channel: Channel, *, notification_id: str, now_ms: int) -> Notification:
    """What `logfan notify test` sends: no rule, no matches, and says so."""
    return Notification(
        notification_id=notification_id,
        kind="test",
        detail="A test notification sent with `logfan notify test`: the channel is reachable. No rule fired.",
        customer_id=customer_id,
        rule_id="",
        rule_name="logfan test notification",
        channel_id=channel.channel_id,
        channel_type=channel.type,
        batch_id="",
        subtask_id="",
        count=0,
        log_groups=[],
        first_timestamp=now_ms,
        last_timestamp=now_ms,
        samples=[],
    )


def notification_document(notification: Notification) -> dict[str, Any]:
    """The `logfan.notification/v1` document: a webhook's body, an SNS message, an EventBridge detail.

    A stable, documented schema (docs/webhooks.md): fields are only ever added.
    """
    return {
        "schema": WEBHOOK_SCHEMA,
        "notification_id": notification.notification_id,
        "kind": notification.kind,
        "customer_id": notification.customer_id,
        "rule_id": notification.rule_id,
        "rule_name": notification.rule_name,
        "channel_id": notification.channel_id,
        "count": notification.count,
        "folded": notification.folded,
        "detail": notification.detail,
        "log_groups": notification.log_groups,
        "first_seen": iso(notification.first_timestamp),
        "last_seen": iso(notification.last_timestamp),
        "batch_id": notification.batch_id,
        "subtask_id": notification.subtask_id,
        "samples": [
            {
                "event_id": m.event_id,
                "owner": m.owner,
                "log_group": m.log_group,
                "log_stream": m.log_stream,
                "timestamp": m.timestamp,
                "message": m.message,
            }
            for m in notification.samples
        ],
    }


def plural(count: int, word: str, suffix: str = "s") -> str:
    """`1 match`, `2 matches`: `plural(n, "match", "es")`."""
    return f"{count} {word}{'' if count == 1 else suffix}"


def summary(notification: Notification) -> str:
    """One plain line saying what the notification is (subjects, fallback texts, CLI output)."""
    name = notification.rule_name
    if notification.kind == "digest":
        return (
            f"{name}: digest of {plural(notification.count, 'match', 'es')} in {plural(notification.folded, 'alert')}"
        )
    if notification.kind == "test":
        return f"logfan test notification for channel {notification.channel_id}"
    if notification.kind == "quarantine":
        return f"{name}: rule quarantined"
    return f"{name}: {plural(notification.count, 'match', 'es')}"
