"""EventBridge buses: one event per notification, `Source` "logfan", `DetailType` the channel's
(default `logfan.notification`), `Detail` the `logfan.notification/v1` document.

`PutEvents` can accept the call and still refuse the entry: `FailedEntryCount` and the entry's
`ErrorCode` say so. `InternalFailure` and `ThrottlingException` are worth retrying; the rest
(`AccessDeniedException`, `NotAuthorizedForSourceException`, `InvalidArgument`, ...) never succeed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.channels.base import DeliveryReceipt, Rendered
from pipeline.errors import DeliveryError
from pipeline.models import Channel, ChannelType, Notification
from pipeline.notifications import notification_document

__all__ = [
    "DEFAULT_DETAIL_TYPE",
    "IAM_ACTIONS",
    "SOURCE",
    "EventBridgeSender",
    "EventsClient",
    "render_event",
]

IAM_ACTIONS = frozenset({"events:PutEvents"})

SOURCE = "logfan"
DEFAULT_DETAIL_TYPE = "logfan.notification"
RETRYABLE_ENTRY_CODES = frozenset({"InternalFailure", "ThrottlingException"})
TRANSIENT_CALL_CODES = frozenset(
    {"ThrottlingException", "InternalException", "InternalFailure", "ServiceUnavailable", "RequestLimitExceeded"}
)


class EventsClient(Protocol):
    """The one call of a boto3 `events` client this adapter makes."""

    def put_events(self, *, Entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]: ...


def render_event(channel: Channel, notification: Notification) -> dict[str, Any]:
    """The `PutEvents` entry other than the bus."""
    return {
        "Source": SOURCE,
        "DetailType": channel.detail_type or DEFAULT_DETAIL_TYPE,
        "Detail": json.dumps(notification_document(notification), ensure_ascii=False),
    }


class EventBridgeSender:
    """Puts the event on the channel's bus (a name, or an ARN for another account's bus)."""

    channel_type = ChannelType.EVENTBRIDGE

    def __init__(self, client: EventsClient | None) -> None:
        self._client = client

    def render(self, channel: Channel, notification: Notification) -> Rendered:
        return Rendered(body=render_event(channel, notification))

    def deliver(self, channel: Channel, notification: Notification) -> DeliveryReceipt:
        label = f"eventbridge channel {channel.channel_id}"
        if self._client is None:
            raise DeliveryError(f"{label}: no EventBridge client configured", permanent=True)
        entry = {**render_event(channel, notification), "EventBusName": channel.bus}
        try:
            response = self._client.put_events(Entries=[entry])
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise DeliveryError(f"{label}: {code or 'error'}", permanent=code not in TRANSIENT_CALL_CODES) from exc
        except BotoCoreError as exc:
            raise DeliveryError(f"{label}: {type(exc).__name__}") from exc
        entries = list(response.get("Entries") or [])
        result: Mapping[str, Any] = entries[0] if entries else {}
        code = str(result.get("ErrorCode") or "")
        if code:
            message = str(result.get("ErrorMessage") or "")[:200]
            raise DeliveryError(
                f"{label}: event refused: {code}{': ' + message if message else ''}",
                permanent=code not in RETRYABLE_ENTRY_CODES,
            )
        if int(response.get("FailedEntryCount") or 0) or not result.get("EventId"):
            raise DeliveryError(f"{label}: event not accepted (no EventId)")
        return DeliveryReceipt(
            channel_id=channel.channel_id,
            channel_type=channel.type,
            notification_id=notification.notification_id,
            status="put",
            message_id=str(result["EventId"]),
        )
