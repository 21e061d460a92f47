"""Slack incoming webhooks: a readable message with the rule, the customer, where and how often it
matched, the first sample lines and a link to the log stream in the CloudWatch Logs console."""

from __future__ import annotations

from typing import Any

from pipeline.adapters.channels.base import USER_AGENT, DeliveryReceipt, Rendered, json_body
from pipeline.adapters.channels.http import HttpDelivery
from pipeline.models import Channel, ChannelType, Notification
from pipeline.notifications import console_url, iso, plural, summary

__all__ = ["SAMPLE_LINE_CHARS", "SlackSender", "render_slack"]

SAMPLE_LINE_CHARS = 300
"""Of each sample only its first line, cut to this many characters."""


def _mrkdwn(text: str) -> str:
    """Slack reads `<...>` as links and mentions (`<!channel>`); log lines must stay plain text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _groups(notification: Notification) -> str:
    return ", ".join(f"`{_mrkdwn(g)}`" for g in notification.log_groups)


def _headline(notification: Notification) -> str:
    name = f"*{_mrkdwn(notification.rule_name)}*"
    customer = f"`{_mrkdwn(notification.customer_id)}`"
    if notification.kind == "digest":
        return (
            f":bookmark_tabs: {name} digest: {plural(notification.count, 'matching log line')} in "
            f"{plural(notification.folded, 'alert')} for {customer} in {_groups(notification)} between "
            f"{iso(notification.first_timestamp)} and {iso(notification.last_timestamp)}, held back by the "
            "rule's digest window or the channel's rate limit"
        )
    if notification.kind == "test":
        return (
            f":white_check_mark: *Test notification* from logfan for {customer}: channel "
            f"`{_mrkdwn(notification.channel_id)}` works. {_mrkdwn(notification.detail)}"
        ).rstrip()
    if notification.kind == "quarantine":
        why = _mrkdwn(notification.detail) or "it kept exceeding its time budget"
        return f":no_entry: Rule {name} of {customer} was quarantined: {why}. Edit the rule to lift it."
    return (
        f":rotating_light: {name} matched {plural(notification.count, 'log line')} for {customer} in "
        f"{_groups(notification)}"
    )


def render_slack(notification: Notification, region: str) -> dict[str, Any]:
    """The message: a fallback `text` and blocks (headline, sample lines, console link and id)."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": _headline(notification)}}]
    footer = f"id `{notification.notification_id}`"
    if notification.samples:
        samples = "\n".join(
            f"> {_mrkdwn(m.message.splitlines()[0][:SAMPLE_LINE_CHARS]) if m.message else ''}"
            for m in notification.samples
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": samples}})
        first = notification.samples[0]
        link = console_url(region, first.log_group, first.log_stream, first.timestamp)
        footer = (
            f"<{link}|Open {_mrkdwn(first.log_stream)} in CloudWatch Logs> · "
            f"{iso(notification.first_timestamp)} to {iso(notification.last_timestamp)} · {footer}"
        )
    elif notification.kind in ("alert", "digest"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "_no sample_"}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return {"text": f"{_mrkdwn(summary(notification))} ({notification.notification_id})", "blocks": blocks}


def _headers(notification: Notification) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-Logfan-Notification-Id": notification.notification_id,
    }


class SlackSender:
    """POSTs the message to the channel's incoming-webhook URL (a secret: never logged)."""

    channel_type = ChannelType.SLACK

    def __init__(self, http: HttpDelivery, region: str) -> None:
        self._http = http
        self._region = region

    def render(self, channel: Channel, notification: Notification) -> Rendered:  # noqa: ARG002 - the port's shape
        return Rendered(body=render_slack(notification, self._region), headers=_headers(notification))

    def deliver(self, channel: Channel, notification: Notification) -> DeliveryReceipt:
        rendered = self.render(channel, notification)
        return self._http.post(
            channel, notification.notification_id, json_body(rendered.body), lambda: rendered.headers
        )
