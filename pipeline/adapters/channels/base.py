"""What every channel module provides: render a notification, deliver it, say how it went."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.models import Channel, ChannelType, Notification

__all__ = ["USER_AGENT", "ChannelSender", "DeliveryReceipt", "Rendered", "json_body"]

USER_AGENT = "logfan-notifier/1"


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a channel receives for one notification, target aside (URLs and secrets are not in it).

    `body`: the JSON an HTTP channel receives, or the arguments of the AWS call. `headers`: the HTTP
    headers; values only known when sending (the timestamp, the signature) appear as placeholders.
    """

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """How a delivery went: `status` in words (`HTTP 200`, `published`), the receiver's id if any."""

    channel_id: str
    channel_type: ChannelType
    notification_id: str
    status: str
    attempts: int = 1
    message_id: str | None = None
    """SNS `MessageId` or EventBridge `EventId`."""


class ChannelSender(Protocol):
    """One channel type. Adding a channel is one module implementing this, registered in `registry`."""

    @property
    def channel_type(self) -> ChannelType: ...

    def render(self, channel: Channel, notification: Notification) -> Rendered:
        """Pure: exactly what `deliver` sends (the local capture writes it)."""
        ...

    def deliver(self, channel: Channel, notification: Notification) -> DeliveryReceipt:
        """Send it; raises `DeliveryError` (`permanent`, `retry_after_s`) when it cannot."""
        ...


def json_body(body: dict[str, Any]) -> bytes:
    """The bytes an HTTP channel receives (and a webhook signature covers)."""
    return json.dumps(body, ensure_ascii=False).encode()
