"""The `Notifier` port over every channel type: one sender per type, picked by `channel.type`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from pipeline.adapters.channels.base import ChannelSender, DeliveryReceipt, Rendered
from pipeline.adapters.channels.eventbridge import EventBridgeSender, EventsClient
from pipeline.adapters.channels.http import HttpDelivery, HttpPoster, PinnedHttpPoster, Resolver, resolve_host
from pipeline.adapters.channels.slack import SlackSender
from pipeline.adapters.channels.sns import SnsSender
from pipeline.adapters.channels.webhook import WebhookSender
from pipeline.config import DeliverySettings
from pipeline.errors import ConfigurationError, DeliveryError
from pipeline.models import Channel, Notification

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

__all__ = ["ChannelNotifier", "build_channel_notifier", "session_notifier"]

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


class ChannelNotifier:
    """Delivers (or just renders) a notification with the sender of its channel's type."""

    def __init__(self, senders: Iterable[ChannelSender]) -> None:
        self._senders = {sender.channel_type: sender for sender in senders}

    def _sender(self, channel: Channel) -> ChannelSender:
        sender = self._senders.get(channel.type)
        if sender is None:
            raise DeliveryError(
                f"channel {channel.channel_id}: no sender for type {channel.type.value}", permanent=True
            )
        return sender

    def render(self, channel: Channel, notification: Notification) -> Rendered:
        """Exactly what `deliver` would send, without sending it."""
        return self._sender(channel).render(channel, notification)

    def deliver(self, channel: Channel, notification: Notification) -> DeliveryReceipt:
        """Send it and say how it went; raises `DeliveryError`."""
        return self._sender(channel).deliver(channel, notification)

    def send(self, channel: Channel, notification: Notification) -> None:
        self.deliver(channel, notification)


def build_channel_notifier(
    settings: DeliverySettings,
    *,
    region: str,
    sns_client: SNSClient | None = None,
    events_client: EventsClient | None = None,
    poster: HttpPoster | None = None,
    resolver: Resolver = resolve_host,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    rng: Callable[[], float] = random.random,
) -> ChannelNotifier:
    """Every channel type: Slack and webhooks over `poster` (default: pinned `http.client`), SNS and
    EventBridge over the given clients (a channel of a type without its client fails permanently).
    `sleep`, `clock` (epoch seconds) and `rng` are for tests."""
    http = HttpDelivery(poster or PinnedHttpPoster(), settings, resolver=resolver, sleep=sleep, now=clock, rng=rng)
    return ChannelNotifier(
        [
            SlackSender(http, region),
            WebhookSender(http, clock),
            SnsSender(sns_client),
            EventBridgeSender(events_client),
        ]
    )


def session_notifier(
    settings: DeliverySettings, *, region: str | None = None, endpoint_url: str | None = None
) -> ChannelNotifier:
    """Every channel type on clients of its own (the CLI): the default credentials chain, or
    `endpoint_url` (else AWS_ENDPOINT_URL) for SNS and EventBridge."""
    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        raise ConfigurationError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    return build_channel_notifier(
        settings,
        region=session.region_name,
        sns_client=session.client("sns", endpoint_url=endpoint_url or None, config=SDK_CONFIG),
        events_client=session.client("events", endpoint_url=endpoint_url or None, config=SDK_CONFIG),
    )
