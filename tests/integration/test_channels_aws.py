"""SNS and EventBridge delivery on moto: what a subscriber's queue receives, and how refusals classify."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from pipeline.adapters.channels import build_channel_notifier
from pipeline.config import DeliverySettings
from pipeline.errors import DeliveryError
from pipeline.local.aws import LOCAL_REGION, LocalAws
from pipeline.models import Channel, ChannelType, Notification
from pipeline.notifications import build_notification, notification_document, notification_id_for
from tests import factories as f


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


def _queue(aws: LocalAws, name: str) -> tuple[str, str]:
    url = aws.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _received(aws: LocalAws, url: str) -> list[dict[str, Any]]:
    messages = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def _events() -> Any:
    return boto3.client("events", region_name=LOCAL_REGION)


def test_sns_delivers_the_document_with_filterable_attributes(aws: LocalAws) -> None:
    # Given a topic with a queue subscribed
    topic = aws.sns.create_topic(Name="acme-alerts")["TopicArn"]
    url, arn = _queue(aws, "acme-alerts-subscriber")
    aws.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    channel = Channel(channel_id="topic", type=ChannelType.SNS, topic_arn=topic)
    notification = _notification(channel)

    # When the notification is delivered to the topic
    receipt = build_channel_notifier(DeliverySettings(), region=LOCAL_REGION, sns_client=aws.sns).deliver(
        channel, notification
    )

    # Then the subscriber gets the v1 document and the attributes to filter on
    (envelope,) = _received(aws, url)
    assert receipt.status == "published"
    assert receipt.message_id == envelope["MessageId"]
    assert json.loads(envelope["Message"]) == notification_document(notification)
    assert envelope["Subject"] == "logfan: Card declines matched 1"
    assert {name: value["Value"] for name, value in envelope["MessageAttributes"].items()} == {
        "customer_id": "acme",
        "rule_id": "declines",
        "notification_id": notification.notification_id,
        "kind": "alert",
    }


def test_a_missing_topic_is_a_permanent_failure(aws: LocalAws) -> None:
    channel = Channel(
        channel_id="topic", type=ChannelType.SNS, topic_arn=f"arn:aws:sns:{LOCAL_REGION}:123456789012:gone"
    )

    with pytest.raises(DeliveryError) as raised:
        build_channel_notifier(DeliverySettings(), region=LOCAL_REGION, sns_client=aws.sns).deliver(
            channel, _notification(channel)
        )

    assert raised.value.permanent
    assert "sns channel topic: NotFound" in str(raised.value)


def test_eventbridge_puts_the_event_on_the_bus(aws: LocalAws) -> None:
    # Given a bus with a rule sending logfan's events to a queue
    events = _events()
    bus = events.create_event_bus(Name="acme-alerts")["EventBusArn"]
    url, arn = _queue(aws, "acme-alert-events")
    events.put_rule(Name="from-logfan", EventBusName="acme-alerts", EventPattern=json.dumps({"source": ["logfan"]}))
    events.put_targets(Rule="from-logfan", EventBusName="acme-alerts", Targets=[{"Id": "queue", "Arn": arn}])
    channel = Channel(channel_id="bus", type=ChannelType.EVENTBRIDGE, bus=bus, detail_type="acme.alert")
    notification = _notification(channel)

    # When the notification is delivered to the bus (by ARN)
    receipt = build_channel_notifier(DeliverySettings(), region=LOCAL_REGION, events_client=events).deliver(
        channel, notification
    )

    # Then the rule's target gets the event: source, detail type, the document as detail
    (event,) = _received(aws, url)
    assert receipt.message_id == event["id"]
    assert (event["source"], event["detail-type"]) == ("logfan", "acme.alert")
    assert event["detail"] == notification_document(notification)


def test_eventbridge_default_detail_type_on_a_bus_by_name(aws: LocalAws) -> None:
    events = _events()
    events.create_event_bus(Name="globex")
    url, arn = _queue(aws, "globex-events")
    events.put_rule(Name="all", EventBusName="globex", EventPattern=json.dumps({"source": ["logfan"]}))
    events.put_targets(Rule="all", EventBusName="globex", Targets=[{"Id": "queue", "Arn": arn}])
    channel = Channel(channel_id="bus", type=ChannelType.EVENTBRIDGE, bus="globex")

    build_channel_notifier(DeliverySettings(), region=LOCAL_REGION, events_client=events).deliver(
        channel, _notification(channel)
    )

    (event,) = _received(aws, url)
    assert event["detail-type"] == "logfan.notification"


def test_a_missing_bus_is_a_permanent_failure(aws: LocalAws) -> None:
    channel = Channel(channel_id="bus", type=ChannelType.EVENTBRIDGE, bus="no-such-bus")

    with pytest.raises(DeliveryError) as raised:
        build_channel_notifier(DeliverySettings(), region=LOCAL_REGION, events_client=_events()).deliver(
            channel, _notification(channel)
        )

    assert raised.value.permanent
    assert "ResourceNotFoundException" in str(raised.value)


class _RefusingEvents:
    """An EventBridge answer moto never gives: the call accepted, the entry refused."""

    def __init__(self, code: str) -> None:
        self.code = code

    def put_events(self, *, Entries: Any) -> dict[str, Any]:
        return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": self.code, "ErrorMessage": "refused"}]}


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        ("ThrottlingException", False),
        ("InternalFailure", False),
        ("AccessDeniedException", True),
        ("NotAuthorizedForSourceException", True),
        ("InvalidArgument", True),
    ],
)
def test_a_refused_entry_is_classified_by_its_error_code(code: str, permanent: bool) -> None:
    channel = Channel(channel_id="bus", type=ChannelType.EVENTBRIDGE, bus="acme")

    with pytest.raises(DeliveryError) as raised:
        build_channel_notifier(DeliverySettings(), region=LOCAL_REGION, events_client=_RefusingEvents(code)).deliver(
            channel, _notification(channel)
        )

    assert raised.value.permanent is permanent
    assert f"event refused: {code}" in str(raised.value)


def test_a_channel_type_without_its_client_fails_permanently() -> None:
    channel = Channel(channel_id="bus", type=ChannelType.EVENTBRIDGE, bus="acme")

    with pytest.raises(DeliveryError) as raised:
        build_channel_notifier(DeliverySettings(), region=LOCAL_REGION).deliver(channel, _notification(channel))

    assert raised.value.permanent
