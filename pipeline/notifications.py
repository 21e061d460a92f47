"""Turn matches into notifications and render them per channel type (pure).

One notification per (rule, sub-task part). Its `notification_id` is derived from the customer,
rule, batch, sub-task and part it reports on, so a re-run of the same sub-task produces the same id
and receivers can deduplicate on it.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pipeline.models import Channel, ChannelType, Match, Notification, Rule

__all__ = [
    "SAMPLE_MESSAGE_MAX_CHARS",
    "WEBHOOK_SCHEMA",
    "build_notification",
    "console_url",
    "group_by_rule",
    "notification_id_for",
    "render",
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


def _mrkdwn(text: str) -> str:
    """Slack reads `<...>` as links and mentions (`<!channel>`); log lines must stay plain text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sns_subject(text: str) -> str:
    """SNS rejects a Subject with line breaks or control characters, or longer than 100 characters."""
    return "".join(" " if unicodedata.category(char) == "Cc" else char for char in text)[:100]


def _iso(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _document(notification: Notification) -> dict[str, Any]:
    return {
        "schema": WEBHOOK_SCHEMA,
        "notification_id": notification.notification_id,
        "customer_id": notification.customer_id,
        "rule_id": notification.rule_id,
        "rule_name": notification.rule_name,
        "count": notification.count,
        "log_groups": notification.log_groups,
        "first_seen": _iso(notification.first_timestamp),
        "last_seen": _iso(notification.last_timestamp),
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


def _slack(notification: Notification, region: str) -> dict[str, Any]:
    first = notification.samples[0]
    link = console_url(region, first.log_group, first.log_stream, first.timestamp)
    plural = "es" if notification.count != 1 else ""
    headline = (
        f":rotating_light: *{_mrkdwn(notification.rule_name)}* matched {notification.count} "
        f"log line{'s' if plural else ''} for `{notification.customer_id}` in "
        f"{', '.join(f'`{_mrkdwn(g)}`' for g in notification.log_groups)}"
    )
    samples = "\n".join(
        f"> {_mrkdwn(m.message.splitlines()[0][:300]) if m.message else ''}" for m in notification.samples
    )
    return {
        "text": (
            f"{_mrkdwn(notification.rule_name)}: {notification.count} match{plural} ({notification.notification_id})"
        ),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {"type": "section", "text": {"type": "mrkdwn", "text": samples or "_no sample_"}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": (
                            f"<{link}|Open {_mrkdwn(first.log_stream)} in CloudWatch Logs> · "
                            f"{_iso(notification.first_timestamp)} to {_iso(notification.last_timestamp)} · "
                            f"id `{notification.notification_id}`"
                        ),
                    }
                ],
            },
        ],
    }


def render(notification: Notification, channel: Channel, *, region: str) -> dict[str, Any]:
    """The exact body the channel receives: Slack blocks, the webhook JSON, or SNS publish arguments."""
    if channel.type is ChannelType.SLACK:
        return _slack(notification, region)
    document = _document(notification)
    if channel.type is ChannelType.WEBHOOK:
        return document
    return {
        "Subject": _sns_subject(f"logfan: {notification.rule_name} matched {notification.count}"),
        "Message": json.dumps(document, ensure_ascii=False),
        "MessageAttributes": {
            "customer_id": {"DataType": "String", "StringValue": notification.customer_id},
            "rule_id": {"DataType": "String", "StringValue": notification.rule_id},
            "notification_id": {"DataType": "String", "StringValue": notification.notification_id},
        },
    }
