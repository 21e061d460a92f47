"""Channel delivery: Slack and webhooks over HTTPS, SNS through boto3 (the `Notifier` port).

A later issue hardens delivery (signatures, digests, rate limits); what holds already: a timeout on
every HTTP call, 4xx is a permanent failure, 429/5xx/network errors are transient, and secrets
(webhook URLs) never appear in errors or logs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import DeliveryError
from pipeline.models import Channel, ChannelType, Notification
from pipeline.notifications import render

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

__all__ = ["ChannelNotifier", "HttpPoster", "UrllibPoster"]

IAM_ACTIONS = frozenset({"sns:Publish"})
"""IAM actions this adapter's calls need (Slack and webhooks are plain HTTPS)."""

HTTP_TIMEOUT_S = 5.0


class HttpPoster:
    """POST a JSON body; returns the HTTP status. A seam for tests and the local runtime."""

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:  # pragma: no cover - interface
        raise NotImplementedError


class UrllibPoster(HttpPoster):
    def __init__(self, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"network error: {type(exc).__name__}") from None


class ChannelNotifier:
    """Delivers a notification to whichever channel type it is addressed to."""

    def __init__(self, poster: HttpPoster, sns_client: SNSClient | None, region: str) -> None:
        self._poster = poster
        self._sns = sns_client
        self._region = region

    def send(self, channel: Channel, notification: Notification) -> None:
        body = render(notification, channel, region=self._region)
        if channel.type is ChannelType.SNS:
            self._publish(channel, body)
            return
        assert channel.url is not None
        status = self._poster.post(
            channel.url,
            json.dumps(body, ensure_ascii=False).encode(),
            {"Content-Type": "application/json", "X-Logfan-Notification-Id": notification.notification_id},
        )
        if 200 <= status < 300:
            return
        permanent = 400 <= status < 500 and status not in (408, 429)
        raise DeliveryError(
            f"{channel.type.value} channel {channel.channel_id} answered HTTP {status}", permanent=permanent
        )

    def _publish(self, channel: Channel, body: dict[str, Any]) -> None:
        if self._sns is None:
            raise DeliveryError("no SNS client configured", permanent=True)
        assert channel.topic_arn is not None
        try:
            self._sns.publish(TopicArn=channel.topic_arn, **body)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            permanent = code in {"NotFound", "AuthorizationError", "InvalidParameter", "KMSDisabled"}
            raise DeliveryError(f"sns channel {channel.channel_id}: {code}", permanent=permanent) from exc
        except BotoCoreError as exc:
            raise DeliveryError(f"sns channel {channel.channel_id}: {type(exc).__name__}") from exc
