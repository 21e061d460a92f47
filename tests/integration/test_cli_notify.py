"""`logfan notify test` against moto's server (the config table, SNS) and a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import boto3
import pytest

from pipeline.cli import main
from pipeline.signing import verify_signature
from tests.receiver import LocalReceiver, Reply, local_receiver

SECRET = "lfs_notify-test-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[LocalReceiver]:
    with local_receiver() as running:
        yield running


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _customer(capsys: pytest.CaptureFixture[str], *channel: str) -> None:
    assert _run(capsys, "customers", "add", "acme", "--account", "111122223333")[0] == 0
    added = _run(capsys, "channels", "add", "--customer", "acme", *channel, "--allow-loopback-channels")
    assert added[0] == 0, added[2]


def test_a_test_notification_reaches_a_webhook_signed(
    endpoint: str, receiver: LocalReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a webhook channel on the receiver, with a known secret
    _customer(capsys, "hook", "--type", "webhook", "--url", receiver.url("/hooks/s3cr3t"), "--secret", SECRET)

    # When a test notification is sent through it
    status, out, err = _run(
        capsys, "notify", "test", "--customer", "acme", "--channel", "hook", "--allow-loopback-channels"
    )

    # Then the receiver got a signed `test` document, and the CLI says so with the id
    assert status == 0, err
    (request,) = receiver.requests
    document = json.loads(request.body)
    assert (document["kind"], document["customer_id"], document["channel_id"], document["count"]) == (
        "test",
        "acme",
        "hook",
        0,
    )
    assert verify_signature(
        SECRET, request.headers["X-Logfan-Timestamp"], request.body, request.headers["X-Logfan-Signature"], time.time()
    )
    assert "acme/hook (webhook): delivered, HTTP 200 after 1 attempt(s)" in out
    assert f"notification id {document['notification_id']}" in out
    assert "s3cr3t" not in out and SECRET not in out


def test_a_refusing_receiver_exits_1_with_why(
    endpoint: str, receiver: LocalReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.reply(Reply(404))
    _customer(capsys, "hook", "--type", "webhook", "--url", receiver.url("/hooks/s3cr3t"))

    status, out, _ = _run(
        capsys, "notify", "test", "--customer", "acme", "--channel", "hook", "--allow-loopback-channels"
    )

    assert status == 1
    assert "NOT delivered (permanent): webhook channel hook answered HTTP 404" in out
    assert "s3cr3t" not in out


def test_without_the_local_setting_a_loopback_channel_is_refused_before_sending(
    endpoint: str, receiver: LocalReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    _customer(capsys, "hook", "--type", "webhook", "--url", receiver.url())

    status, out, _ = _run(capsys, "notify", "test", "--customer", "acme", "--channel", "hook")

    assert status == 1
    assert "target refused" in out
    assert receiver.requests == []


def test_a_test_notification_reaches_an_sns_topic_on_the_emulated_account(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an SNS channel whose topic has a queue subscribed
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    sns, sqs = session.client("sns", endpoint_url=endpoint), session.client("sqs", endpoint_url=endpoint)
    topic = sns.create_topic(Name=f"alerts-{os.urandom(3).hex()}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"sub-{os.urandom(3).hex()}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    _customer(capsys, "topic", "--type", "sns", "--topic-arn", topic)

    # When a test notification is sent
    status, out, err = _run(capsys, "notify", "test", "--customer", "acme", "--channel", "topic")

    # Then the subscriber got it, marked as a test
    assert status == 0, err
    (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["MessageAttributes"]["kind"]["Value"] == "test"
    assert json.loads(envelope["Message"])["kind"] == "test"
    assert f"receiver id {envelope['MessageId']}" in out


def test_an_unknown_channel_is_an_error(endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    _customer(capsys, "hook", "--type", "webhook", "--url", "https://alerts.acme.example/x")

    status, _, err = _run(capsys, "notify", "test", "--customer", "acme", "--channel", "nope")

    assert status == 2
    assert "has no channel 'nope'" in err
