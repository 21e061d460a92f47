"""Notifications: their identity, their summary, and the exact bodies each channel type receives
(the pure rendering of `pipeline.adapters.channels.*`)."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from pipeline.adapters.channels.eventbridge import render_event
from pipeline.adapters.channels.slack import render_slack
from pipeline.adapters.channels.sns import render_sns
from pipeline.models import Channel, ChannelType, Match, Notification, Rule
from pipeline.notifications import (
    SAMPLE_MESSAGE_MAX_CHARS,
    WEBHOOK_SCHEMA,
    build_notification,
    build_test_notification,
    console_url,
    group_by_rule,
    notification_document,
    notification_id_for,
    notification_id_for_test,
)
from tests import factories as f

REGION = "eu-west-1"
SLACK = Channel(channel_id="ops-slack", type=ChannelType.SLACK, url="https://hooks.slack.com/services/T/B/X")
WEBHOOK = Channel(channel_id="hook", type=ChannelType.WEBHOOK, url="https://alerts.example.com/logfan")
SNS = Channel(channel_id="topic", type=ChannelType.SNS, topic_arn="arn:aws:sns:eu-west-1:111122223333:alerts")
BUS = Channel(channel_id="bus", type=ChannelType.EVENTBRIDGE, bus="acme-alerts")
RULE = f.rule("acme", "declines", "declined", name="Card declines", channel="ops-slack")


def _notification(
    matches: list[Match], *, rule: Rule = RULE, channel: Channel = SLACK, max_samples: int = 5
) -> Notification:
    return build_notification(
        rule,
        channel,
        notification_id_for(rule.customer_id, rule.rule_id, "b-1", "acme#0000", 0),
        matches,
        batch_id="b-1",
        subtask_id="acme#0000",
        max_samples=max_samples,
    )


def _mrkdwn_texts(body: dict[str, Any]) -> list[str]:
    texts = [body["text"]]
    for block in body["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(element["text"] for element in block.get("elements", []))
    return texts


# -- identity --------------------------------------------------------------------------------


def test_notification_id_is_deterministic() -> None:
    assert notification_id_for("acme", "declines", "b-1", "acme#0000", 0) == notification_id_for(
        "acme", "declines", "b-1", "acme#0000", 0
    )
    assert notification_id_for("acme", "declines", "b-1", "acme#0000", 0).startswith("n-")


def test_notification_id_differs_by_customer_rule_batch_subtask_and_part() -> None:
    base = notification_id_for("acme", "declines", "b-1", "acme#0000", 0)

    assert notification_id_for("globex", "declines", "b-1", "acme#0000", 0) != base
    assert notification_id_for("acme", "errors", "b-1", "acme#0000", 0) != base
    assert notification_id_for("acme", "declines", "b-2", "acme#0000", 0) != base
    assert notification_id_for("acme", "declines", "b-1", "acme#0001", 0) != base
    assert notification_id_for("acme", "declines", "b-1", "acme#0000", 1) != base


def test_group_by_rule_keeps_each_rules_matches_in_order() -> None:
    a1, b1, a2 = f.log_match(rule_id="a"), f.log_match(rule_id="b"), f.log_match(rule_id="a")

    assert group_by_rule([a1, b1, a2]) == {"a": [a1, a2], "b": [b1]}


# -- building --------------------------------------------------------------------------------


def test_build_notification_sorts_samples_by_time_and_caps_them() -> None:
    # Given seven matches arriving out of time order, from two log groups
    matches = [
        f.log_match(f"line {t}", timestamp=1_764_380_000_000 + t, log_group=f"/group/{t % 2}")
        for t in (5, 1, 7, 3, 2, 6, 4)
    ]

    # When summarised with three samples
    notification = _notification(matches, max_samples=3)

    # Then it counts all seven, spans the whole time range, and samples the earliest three
    assert notification.count == 7
    assert notification.first_timestamp == 1_764_380_000_001
    assert notification.last_timestamp == 1_764_380_000_007
    assert [s.message for s in notification.samples] == ["line 1", "line 2", "line 3"]
    assert notification.log_groups == ["/group/0", "/group/1"]
    assert (notification.customer_id, notification.rule_id, notification.rule_name) == (
        "acme",
        "declines",
        "Card declines",
    )
    assert (notification.channel_id, notification.channel_type) == ("ops-slack", ChannelType.SLACK)


def test_build_notification_orders_same_millisecond_matches_by_event_id() -> None:
    later, earlier = f.log_match("b", event_id="2" * 56), f.log_match("a", event_id="1" * 56)

    assert [s.message for s in _notification([later, earlier]).samples] == ["a", "b"]


def test_a_huge_sample_message_is_truncated_and_says_so() -> None:
    # Given a 50 KB line
    huge = "x" * 50_000

    # When it becomes a sample
    [sample] = _notification([f.log_match(huge)]).samples

    # Then the sample keeps the start of the line and marks the cut
    assert sample.message.startswith("x" * SAMPLE_MESSAGE_MAX_CHARS)
    assert sample.message.endswith("[truncated]")
    assert len(sample.message) < SAMPLE_MESSAGE_MAX_CHARS + 20


def test_a_sample_at_the_limit_is_kept_whole() -> None:
    exact = "y" * SAMPLE_MESSAGE_MAX_CHARS

    assert _notification([f.log_match(exact)]).samples[0].message == exact


# -- console links ---------------------------------------------------------------------------


def test_console_url_double_encodes_group_and_stream_the_way_the_console_does() -> None:
    url = console_url("us-east-1", "/aws/lambda/x", "2026/11/28/[$LATEST]abc", 1_764_380_060_000)

    assert url == (
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/"
        "$252Faws$252Flambda$252Fx/log-events/2026$252F11$252F28$252F$255B$2524LATEST$255Dabc"
        "$3Fstart$3D1764380000000"
    )


def test_console_url_never_starts_before_the_epoch() -> None:
    assert console_url("us-east-1", "g", "s", 10).endswith("$3Fstart$3D0")


# -- rendering -------------------------------------------------------------------------------


def test_slack_body_has_text_blocks_the_id_and_a_console_link() -> None:
    # Given a notification of two matches
    notification = _notification(
        [
            f.log_match("ERROR card declined\n  at charge()", log_group="/aws/lambda/pay", timestamp=1_764_380_000_000),
            f.log_match("ERROR card declined again", log_group="/aws/lambda/pay", timestamp=1_764_380_001_000),
        ]
    )

    # When rendered for Slack
    body = render_slack(notification, REGION)

    # Then it has a fallback text and blocks, both naming the notification id
    assert body["text"] == f"Card declines: 2 matches ({notification.notification_id})"
    assert isinstance(body["blocks"], list)
    assert body["blocks"]
    texts = _mrkdwn_texts(body)
    assert any(notification.notification_id in t for t in texts[1:])
    assert any("matched 2 log lines" in t and "`/aws/lambda/pay`" in t for t in texts)

    # And it shows each sample's first line only, and links to the stream in the right region
    assert any("> ERROR card declined\n> ERROR card declined again" in t for t in texts)
    assert not any("at charge()" in t for t in texts)
    link = console_url(REGION, "/aws/lambda/pay", "2026/11/28/[$LATEST]abc", 1_764_380_000_000)
    assert any(f"<{link}|" in t for t in texts)
    assert "$252Faws$252Flambda$252Fpay" in link


def test_slack_body_says_one_match_in_the_singular() -> None:
    body = render_slack(_notification([f.log_match()]), REGION)

    assert ": 1 match (" in body["text"]
    assert any("matched 1 log line " in t for t in _mrkdwn_texts(body))


def test_slack_body_escapes_log_content_so_it_cannot_mention_or_link() -> None:
    # Given log lines and a rule name carrying Slack control sequences
    rule = f.rule("acme", "r", "x", name="<!here> & friends")
    notification = _notification(
        [f.log_match("user <!channel> sent <https://evil.example|your bank> & more")], rule=rule
    )

    # When rendered for Slack
    texts = _mrkdwn_texts(render_slack(notification, REGION))

    # Then they arrive as plain text, escaped as Slack requires
    joined = "\n".join(texts)
    assert "<!channel>" not in joined
    assert "<!here>" not in joined
    assert "<https://evil.example" not in joined
    assert "&lt;!channel&gt;" in joined
    assert "&lt;!here&gt; &amp; friends" in joined


def test_webhook_body_is_the_documented_json_document() -> None:
    # Given a notification of two matches
    first = f.log_match("ERROR a", timestamp=1_764_380_000_000, owner="111122223333")
    second = f.log_match("ERROR b", timestamp=1_764_380_000_500)
    notification = _notification([second, first], channel=WEBHOOK)

    # When rendered for a webhook
    body = notification_document(notification)

    # Then it carries the schema, the id, the count and the samples, and is plain JSON
    assert json.loads(json.dumps(body)) == body
    assert body["schema"] == WEBHOOK_SCHEMA == "logfan.notification/v1"
    assert body["notification_id"] == notification.notification_id
    assert (body["customer_id"], body["rule_id"], body["rule_name"], body["count"]) == (
        "acme",
        "declines",
        "Card declines",
        2,
    )
    assert (body["batch_id"], body["subtask_id"]) == ("b-1", "acme#0000")
    assert (body["kind"], body["folded"], body["channel_id"], body["detail"]) == ("alert", 0, "hook", "")
    assert body["first_seen"] == "2025-11-29T01:33:20.000+00:00"
    assert body["last_seen"] == "2025-11-29T01:33:20.500+00:00"
    assert body["samples"] == [
        {
            "event_id": m.event_id,
            "owner": m.owner,
            "log_group": m.log_group,
            "log_stream": m.log_stream,
            "timestamp": m.timestamp,
            "message": m.message,
        }
        for m in (first, second)
    ]


def test_sns_arguments_carry_a_short_subject_the_json_and_attributes() -> None:
    # Given a rule whose name is far longer than an SNS subject allows
    rule = f.rule("acme", "declines", "x", name="Card declines " * 20)
    notification = _notification([f.log_match(), f.log_match()], rule=rule, channel=SNS)

    # When rendered for SNS
    body = render_sns(notification)

    # Then the subject fits, the message is the webhook document, and the attributes identify it
    assert body["Subject"].startswith("logfan: Card declines")
    assert len(body["Subject"]) <= 100
    message = json.loads(body["Message"])
    assert message["notification_id"] == notification.notification_id
    assert message["schema"] == WEBHOOK_SCHEMA
    assert message["count"] == 2
    assert body["MessageAttributes"] == {
        "customer_id": {"DataType": "String", "StringValue": "acme"},
        "rule_id": {"DataType": "String", "StringValue": "declines"},
        "notification_id": {"DataType": "String", "StringValue": notification.notification_id},
        "kind": {"DataType": "String", "StringValue": "alert"},
    }


def test_sns_subject_has_no_line_breaks_or_control_characters() -> None:
    # Given a rule name written as a YAML block scalar (a trailing newline) with a tab
    rule = f.rule("acme", "r", "x", name="Card\tdeclines\n")

    # When rendered for SNS
    subject = render_sns(_notification([f.log_match()], rule=rule, channel=SNS))["Subject"]

    # Then SNS will accept the subject
    assert not any(unicodedata.category(c) == "Cc" for c in subject)
    assert subject == "logfan: Card declines  matched 1"


def test_sns_message_keeps_non_ascii_as_utf8() -> None:
    body = render_sns(_notification([f.log_match("Zahlung für Überweisung fehlgeschlagen")], channel=SNS))

    assert "für Überweisung" in body["Message"]


# -- digests, tests and quarantine notices ----------------------------------------------------


def _digest() -> Notification:
    alert = _notification(
        [
            f.log_match("ERROR card declined", timestamp=1_764_380_000_000),
            f.log_match("ERROR card declined again", timestamp=1_764_380_100_000),
        ]
    )
    return alert.model_copy(
        update={
            "notification_id": "d-1",
            "kind": "digest",
            "count": 42,
            "folded": 7,
            "last_timestamp": 1_764_383_600_000,
        }
    )


def test_a_digest_reads_as_a_digest_on_slack() -> None:
    body = render_slack(_digest(), REGION)

    texts = _mrkdwn_texts(body)
    assert body["text"] == "Card declines: digest of 42 matches in 7 alerts (d-1)"
    assert any(
        "digest: 42 matching log lines in 7 alerts for `acme`" in t
        and "between 2025-11-29T01:33:20.000+00:00 and 2025-11-29T02:33:20.000+00:00" in t
        and "held back by the rule's digest window or the channel's rate limit" in t
        for t in texts
    )
    assert any("> ERROR card declined\n> ERROR card declined again" in t for t in texts)


def test_a_digest_document_and_sns_message_say_kind_and_folded() -> None:
    digest = _digest()

    document = notification_document(digest)
    sns = render_sns(digest)

    assert (document["kind"], document["count"], document["folded"]) == ("digest", 42, 7)
    assert sns["Subject"] == "logfan: Card declines: digest of 42 matches in 7 alerts"
    assert sns["MessageAttributes"]["kind"] == {"DataType": "String", "StringValue": "digest"}
    assert json.loads(sns["Message"]) == document


def _test_notification(channel: Channel) -> Notification:
    return build_test_notification(
        "acme",
        channel,
        notification_id=notification_id_for_test("acme", channel.channel_id, "nonce"),
        now_ms=1_764_380_000_000,
    )


def test_a_test_notification_reads_as_a_test_and_has_no_samples() -> None:
    notification = _test_notification(SLACK)

    body = render_slack(notification, REGION)

    assert notification.notification_id.startswith("t-")
    assert (notification.kind, notification.count, notification.samples) == ("test", 0, [])
    assert body["text"] == f"logfan test notification for channel ops-slack ({notification.notification_id})"
    texts = _mrkdwn_texts(body)
    assert any("*Test notification* from logfan for `acme`: channel `ops-slack` works." in t for t in texts)
    assert not any("CloudWatch Logs" in t or "_no sample_" in t for t in texts)


def test_test_notification_ids_are_fresh_per_send_and_never_an_alerts() -> None:
    assert notification_id_for_test("acme", "ops", "a") != notification_id_for_test("acme", "ops", "b")
    assert notification_id_for_test("acme", "ops", "a") != notification_id_for("acme", "ops", "a", "", 0)


def test_a_test_notification_on_sns_has_no_empty_attribute() -> None:
    body = render_sns(_test_notification(SNS))

    assert body["Subject"] == "logfan: logfan test notification for channel topic"
    assert all(attribute["StringValue"] for attribute in body["MessageAttributes"].values())
    assert body["MessageAttributes"]["kind"]["StringValue"] == "test"


def test_a_quarantine_notice_says_why_and_how_to_lift_it() -> None:
    notice = _notification([f.log_match()]).model_copy(
        update={"kind": "quarantine", "count": 0, "samples": [], "detail": "it ran over its time budget 3 times"}
    )

    texts = _mrkdwn_texts(render_slack(notice, REGION))

    assert any("was quarantined: it ran over its time budget 3 times. Edit the rule to lift it." in t for t in texts)


# -- EventBridge ------------------------------------------------------------------------------


def test_an_event_carries_source_detail_type_and_the_document() -> None:
    notification = _notification([f.log_match()], channel=BUS)

    entry = render_event(BUS, notification)
    custom = render_event(BUS.model_copy(update={"detail_type": "acme.alert"}), notification)

    assert (entry["Source"], entry["DetailType"]) == ("logfan", "logfan.notification")
    assert json.loads(entry["Detail"]) == notification_document(notification)
    assert custom["DetailType"] == "acme.alert"
    assert "EventBusName" not in entry
