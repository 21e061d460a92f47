"""SNS topics: the `logfan.notification/v1` document as the message, with attributes subscribers can
filter on (`customer_id`, `rule_id`, `notification_id`, `kind`)."""

from __future__ import annotations

import json
import unicodedata
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.adapters.channels.base import DeliveryReceipt, Rendered
from pipeline.errors import DeliveryError
from pipeline.models import Channel, ChannelType, Notification
from pipeline.notifications import notification_document, summary

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

__all__ = ["IAM_ACTIONS", "PERMANENT_CODES", "SnsSender", "render_sns"]

IAM_ACTIONS = frozenset({"sns:Publish"})

PERMANENT_CODES = frozenset(
    {
        "NotFound",
        "NotFoundException",
        "AuthorizationError",
        "AuthorizationErrorException",
        "InvalidParameter",
        "InvalidParameterException",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "KMSDisabled",
        "KMSDisabledException",
        "KMSNotFound",
        "KMSNotFoundException",
        "KMSAccessDenied",
        "KMSAccessDeniedException",
        "EndpointDisabled",
        "EndpointDisabledException",
        "InvalidSecurity",
        "InvalidSecurityException",
    }
)
"""Publish errors no retry fixes (a gone topic, no permission, a refused message); the rest
(throttling, internal errors, KMS throttling) are transient."""


def _subject(text: str) -> str:
    """SNS rejects a Subject with line breaks or control characters, or longer than 100 characters."""
    return "".join(" " if unicodedata.category(char) == "Cc" else char for char in text)[:100]


def _attribute(value: str) -> dict[str, str]:
    # SNS refuses an empty String attribute: a test notification has no rule id.
    return {"DataType": "String", "StringValue": value or "-"}


def render_sns(notification: Notification) -> dict[str, Any]:
    """The `Publish` arguments other than the topic."""
    subject = (
        f"logfan: {notification.rule_name} matched {notification.count}"
        if notification.kind == "alert"
        else f"logfan: {summary(notification)}"
    )
    return {
        "Subject": _subject(subject),
        "Message": json.dumps(notification_document(notification), ensure_ascii=False),
        "MessageAttributes": {
            "customer_id": _attribute(notification.customer_id),
            "rule_id": _attribute(notification.rule_id),
            "notification_id": _attribute(notification.notification_id),
            "kind": _attribute(notification.kind),
        },
    }


class SnsSender:
    """Publishes to the channel's topic. boto3's standard retries handle throttling in-line."""

    channel_type = ChannelType.SNS

    def __init__(self, client: SNSClient | None) -> None:
        self._client = client

    def render(self, channel: Channel, notification: Notification) -> Rendered:  # noqa: ARG002 - the port's shape
        return Rendered(body=render_sns(notification))

    def deliver(self, channel: Channel, notification: Notification) -> DeliveryReceipt:
        label = f"sns channel {channel.channel_id}"
        if self._client is None:
            raise DeliveryError(f"{label}: no SNS client configured", permanent=True)
        if not channel.topic_arn:
            raise DeliveryError(f"{label}: no topic_arn", permanent=True)
        try:
            response = self._client.publish(TopicArn=channel.topic_arn, **render_sns(notification))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise DeliveryError(f"{label}: {code or 'error'}", permanent=code in PERMANENT_CODES) from exc
        except BotoCoreError as exc:
            raise DeliveryError(f"{label}: {type(exc).__name__}") from exc
        return DeliveryReceipt(
            channel_id=channel.channel_id,
            channel_type=channel.type,
            notification_id=notification.notification_id,
            status="published",
            message_id=response.get("MessageId"),
        )
