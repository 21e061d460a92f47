"""Slack and webhook delivery over real sockets to a receiver on 127.0.0.1: signatures, retries,
`Retry-After`, permanent failures, timeouts, and targets refused before any connection."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.adapters.channels import ChannelNotifier, build_channel_notifier
from pipeline.config import DeliverySettings
from pipeline.errors import DeliveryError
from pipeline.models import Channel, ChannelType, Notification
from pipeline.notifications import WEBHOOK_SCHEMA, build_notification, notification_id_for
from pipeline.signing import verify_signature
from tests import factories as f
from tests.receiver import LocalReceiver, Reply, local_receiver

SECRET = "whsec-test-0123456789abcdef"
FAST = DeliverySettings(
    allow_loopback_channels=True,
    delivery_timeout_s=2.0,
    delivery_max_attempts=3,
    delivery_backoff_s=0.01,
    delivery_backoff_cap_s=0.05,
    delivery_max_wait_s=5.0,
)


@pytest.fixture
def receiver() -> Iterator[LocalReceiver]:
    with local_receiver() as running:
        yield running


def _webhook(receiver: LocalReceiver, *, secret: str | None = SECRET) -> Channel:
    return Channel(channel_id="hook", type=ChannelType.WEBHOOK, url=receiver.url("/hooks/s3cr3t-path"), secret=secret)


def _notification(channel: Channel) -> Notification:
    rule = f.rule("acme", "declines", "declined", name="Card declines", channel=channel.channel_id)
    return build_notification(
        rule,
        channel,
        notification_id_for("acme", "declines", "b-1", "acme#0000", 0),
        [f.log_match("ERROR card declined", rule_id="declines")],
        batch_id="b-1",
        subtask_id="acme#0000",
        max_samples=3,
    )


def _notifier(settings: DeliverySettings = FAST, **kwargs: Any) -> ChannelNotifier:
    return build_channel_notifier(settings, region="us-east-1", **kwargs)


def _assert_signed(request: Any, secret: str = SECRET) -> None:
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["x-logfan-signature"].startswith("v1=")
    assert verify_signature(
        secret, headers["x-logfan-timestamp"], request.body, headers["x-logfan-signature"], now=time.time()
    )


def test_a_webhook_receives_the_signed_document(receiver: LocalReceiver) -> None:
    # Given a webhook channel with a signing secret
    channel = _webhook(receiver)
    notification = _notification(channel)

    # When a notification is delivered
    receipt = _notifier().deliver(channel, notification)

    # Then the receiver got the v1 document, signed, with the notification id in a header
    (request,) = receiver.requests
    assert (receipt.status, receipt.attempts) == ("HTTP 200", 1)
    assert request.path == "/hooks/s3cr3t-path"
    document = json.loads(request.body)
    assert document["schema"] == WEBHOOK_SCHEMA
    assert (document["notification_id"], document["kind"], document["count"]) == (
        notification.notification_id,
        "alert",
        1,
    )
    assert request.headers["X-Logfan-Notification-Id"] == notification.notification_id
    _assert_signed(request)
    assert not verify_signature(
        "another-secret-0123456789",
        request.headers["X-Logfan-Timestamp"],
        request.body,
        request.headers["X-Logfan-Signature"],
        now=time.time(),
    )


def test_a_server_error_is_retried_with_the_same_notification_id(receiver: LocalReceiver) -> None:
    # Given a receiver that fails once with a 500
    receiver.reply(Reply(500))
    channel = _webhook(receiver)

    # When delivering (real sleeps: the backoff is 10 ms at most)
    receipt = _notifier().deliver(channel, _notification(channel))

    # Then the second attempt got through, carrying the same id and body, each attempt signed
    first, second = receiver.requests
    assert receipt.attempts == 2
    assert first.headers["X-Logfan-Notification-Id"] == second.headers["X-Logfan-Notification-Id"]
    assert json.loads(first.body) == json.loads(second.body)
    _assert_signed(first)
    _assert_signed(second)


def test_retry_after_seconds_is_honoured_over_the_socket(receiver: LocalReceiver) -> None:
    # Given a receiver answering 429 with Retry-After: 1 once
    receiver.reply(Reply(429, {"Retry-After": "1"}))
    waits: list[float] = []
    channel = _webhook(receiver)

    # When delivering with a recorded sleep
    receipt = _notifier(sleep=waits.append).deliver(channel, _notification(channel))

    # Then it waited exactly what the receiver asked, then delivered
    assert waits == [1.0]
    assert receipt.attempts == 2
    assert len(receiver.requests) == 2


def test_a_retry_after_longer_than_the_inline_wait_is_handed_back(receiver: LocalReceiver) -> None:
    # Given a receiver asking for two minutes
    receiver.reply(Reply(429, {"Retry-After": "120"}))
    waits: list[float] = []
    channel = _webhook(receiver)

    # When delivering
    with pytest.raises(DeliveryError) as raised:
        _notifier(sleep=waits.append).deliver(channel, _notification(channel))

    # Then it did not wait: a transient error says how long the receiver wants
    assert not raised.value.permanent
    assert raised.value.retry_after_s == 120.0
    assert waits == []
    assert len(receiver.requests) == 1


def test_a_client_error_is_permanent_and_never_repeated(receiver: LocalReceiver) -> None:
    receiver.reply(Reply(400))
    channel = _webhook(receiver)

    with pytest.raises(DeliveryError) as raised:
        _notifier().deliver(channel, _notification(channel))

    assert raised.value.permanent
    assert "HTTP 400" in str(raised.value)
    assert "s3cr3t-path" not in str(raised.value)
    assert len(receiver.requests) == 1


def test_a_redirect_is_not_followed(receiver: LocalReceiver) -> None:
    receiver.reply(Reply(302, {"Location": "http://169.254.169.254/latest/meta-data/"}))
    channel = _webhook(receiver)

    with pytest.raises(DeliveryError, match="redirects are not followed") as raised:
        _notifier().deliver(channel, _notification(channel))

    assert raised.value.permanent
    assert len(receiver.requests) == 1


def test_a_hung_receiver_times_out(receiver: LocalReceiver) -> None:
    # Given a receiver that never answers in time, twice
    receiver.reply(Reply(hang_s=5), Reply(hang_s=5))
    settings = FAST.model_copy(update={"delivery_timeout_s": 0.2, "delivery_max_attempts": 2})
    channel = _webhook(receiver)

    # When delivering with a short timeout
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        _notifier(settings).deliver(channel, _notification(channel))

    # Then each attempt gave up after the timeout: a transient failure
    assert "timed out (2 attempts)" in str(raised.value)
    assert not raised.value.permanent
    assert time.monotonic() - started < 3
    assert len(receiver.requests) == 2


def test_slack_gets_the_message_blocks(receiver: LocalReceiver) -> None:
    channel = Channel(channel_id="ops", type=ChannelType.SLACK, url=receiver.url("/services/T/B/s3cr3t"))

    _notifier().deliver(channel, _notification(channel))

    (request,) = receiver.requests
    body = json.loads(request.body)
    assert body["text"].startswith("Card declines: 1 match (n-")
    assert "X-Logfan-Signature" not in request.headers


def test_a_webhook_without_a_secret_is_sent_unsigned(receiver: LocalReceiver) -> None:
    channel = _webhook(receiver, secret=None)

    _notifier().deliver(channel, _notification(channel))

    (request,) = receiver.requests
    assert "X-Logfan-Signature" not in request.headers
    assert request.headers["X-Logfan-Timestamp"].isdigit()


def test_localhost_is_refused_without_the_local_setting_before_connecting(receiver: LocalReceiver) -> None:
    # Given the receiver on 127.0.0.1 and delivery settings as on AWS
    channel = _webhook(receiver)
    settings = FAST.model_copy(update={"allow_loopback_channels": False})

    # When delivering to it
    with pytest.raises(DeliveryError) as raised:
        _notifier(settings).deliver(channel, _notification(channel))

    # Then it is refused for good and nothing reached the receiver
    assert raised.value.permanent
    assert "target refused" in str(raised.value)
    assert receiver.requests == []


def test_the_captured_rendering_is_what_the_receiver_gets(receiver: LocalReceiver) -> None:
    channel = _webhook(receiver)
    notification = _notification(channel)
    notifier = _notifier()

    rendered = notifier.render(channel, notification)
    notifier.deliver(channel, notification)

    (request,) = receiver.requests
    assert json.loads(request.body) == rendered.body
    sent = {name: request.headers[name] for name in rendered.headers}
    assert {k: v for k, v in sent.items() if k not in ("X-Logfan-Timestamp", "X-Logfan-Signature")} == {
        k: v for k, v in rendered.headers.items() if k not in ("X-Logfan-Timestamp", "X-Logfan-Signature")
    }
    assert SECRET not in json.dumps(rendered.headers)
