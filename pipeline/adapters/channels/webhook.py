"""Webhooks: the `logfan.notification/v1` JSON document, signed with the channel's secret.

Headers: `X-Logfan-Notification-Id` (the same on every retry: deduplicate on it),
`X-Logfan-Timestamp` (unix seconds of this attempt) and `X-Logfan-Signature: v1=<hex>`, HMAC-SHA256
over `f"{timestamp}.{body}"` with the channel's secret (`pipeline.signing`; docs/webhooks.md). A
channel registered before secrets existed has none and is sent unsigned, with a warning in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline.adapters.channels.base import USER_AGENT, DeliveryReceipt, Rendered, json_body
from pipeline.adapters.channels.http import HttpDelivery
from pipeline.models import Channel, ChannelType, Notification
from pipeline.notifications import notification_document
from pipeline.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_header

__all__ = ["NOTIFICATION_ID_HEADER", "SIGNATURE_PLACEHOLDER", "TIMESTAMP_PLACEHOLDER", "WebhookSender", "headers"]

_log = logging.getLogger("logfan.delivery")

NOTIFICATION_ID_HEADER = "X-Logfan-Notification-Id"
TIMESTAMP_PLACEHOLDER = "<unix seconds at sending>"
SIGNATURE_PLACEHOLDER = "v1=<hex HMAC-SHA256 of timestamp.body with the channel's secret>"


def headers(notification: Notification, *, timestamp: str, signature: str | None) -> dict[str, str]:
    """The request's headers; `signature` None for a channel without a secret."""
    found = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        NOTIFICATION_ID_HEADER: notification.notification_id,
        TIMESTAMP_HEADER: timestamp,
    }
    if signature is not None:
        found[SIGNATURE_HEADER] = signature
    return found


class WebhookSender:
    """POSTs the signed document to the channel's URL; `clock` (epoch seconds) stamps each attempt."""

    channel_type = ChannelType.WEBHOOK

    def __init__(self, http: HttpDelivery, clock: Callable[[], float] = time.time) -> None:
        self._http = http
        self._clock = clock

    def render(self, channel: Channel, notification: Notification) -> Rendered:
        signature = SIGNATURE_PLACEHOLDER if channel.has_secret else None
        return Rendered(
            body=notification_document(notification),
            headers=headers(notification, timestamp=TIMESTAMP_PLACEHOLDER, signature=signature),
        )

    def deliver(self, channel: Channel, notification: Notification) -> DeliveryReceipt:
        body = json_body(notification_document(notification))
        secret = channel.secret
        if not secret:
            _log.warning(
                "webhook channel has no signing secret: sent unsigned (register it again to get one)",
                extra={"channel_id": channel.channel_id, "customer_id": notification.customer_id},
            )

        def attempt_headers() -> dict[str, str]:
            timestamp = str(int(self._clock()))
            signature = signature_header(secret, timestamp, body) if secret else None
            return headers(notification, timestamp=timestamp, signature=signature)

        return self._http.post(channel, notification.notification_id, body, attempt_headers)
