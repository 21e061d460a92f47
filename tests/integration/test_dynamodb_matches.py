"""DynamoDBMatchStore on moto: the match / notification outbox."""

from __future__ import annotations

from pipeline.adapters.dynamodb_common import from_item, to_item
from pipeline.adapters.dynamodb_matches import MESSAGE_MAX_BYTES, DynamoDBMatchStore
from pipeline.local.aws import LocalAws
from pipeline.models import ChannelType, Match, Notification
from pipeline.ports import NotificationStatus

EXPIRES_AT = 1_900_000_000


def _match(event: int, message: str = "ERROR boom", rule_id: str = "errors") -> Match:
    return Match(
        customer_id="acme",
        rule_id=rule_id,
        event_id=f"{event:056d}",
        owner="111122223333",
        log_group="/aws/lambda/checkout",
        log_stream="2026/11/28/[$LATEST]abc",
        timestamp=1_764_380_000_000 + event,
        message=message,
    )


def _claim(store: DynamoDBMatchStore, matches: list[Match], notification_id: str) -> list[Match]:
    return store.claim_matches(matches, notification_id, batch_id="b-1", subtask_id="acme#0000", expires_at=EXPIRES_AT)


def _notification(notification_id: str = "n-1") -> Notification:
    matches = [_match(1)]
    return Notification(
        notification_id=notification_id,
        customer_id="acme",
        rule_id="errors",
        rule_name="Errors",
        channel_id="ops",
        channel_type=ChannelType.WEBHOOK,
        batch_id="b-1",
        subtask_id="acme#0000",
        count=1,
        log_groups=["/aws/lambda/checkout"],
        first_timestamp=matches[0].timestamp,
        last_timestamp=matches[0].timestamp,
        samples=matches,
    )


def test_claim_matches_returns_new_matches_and_records_each_once(aws: LocalAws) -> None:
    store = DynamoDBMatchStore(aws.dynamodb, "logfan-matches")
    matches = [_match(1), _match(2), _match(2, rule_id="timeouts")]

    claimed = _claim(store, matches, "n-1")

    assert claimed == matches
    assert sorted(store.iter_matches(), key=lambda m: m.match_key) == sorted(matches, key=lambda m: m.match_key)


def test_a_rerun_of_the_same_notification_gets_its_matches_again(aws: LocalAws) -> None:
    store = DynamoDBMatchStore(aws.dynamodb, "logfan-matches")
    matches = [_match(1), _match(2)]
    _claim(store, matches, "n-1")

    again = _claim(store, matches, "n-1")

    assert again == matches
    assert len(list(store.iter_matches())) == 2


def test_matches_owned_by_another_notification_are_left_out(aws: LocalAws) -> None:
    # Given event 2 was already notified under another notification (a re-chunked retry)
    store = DynamoDBMatchStore(aws.dynamodb, "logfan-matches")
    _claim(store, [_match(2)], "n-earlier")

    # When a notification covering events 1..3 claims them
    claimed = _claim(store, [_match(1), _match(2), _match(3)], "n-later")

    # Then it gets only the ones nobody had, and event 2 stays with its first owner
    assert claimed == [_match(1), _match(3)]
    item = aws.dynamodb.get_item(TableName="logfan-matches", Key=to_item({"match_key": _match(2).match_key}))["Item"]
    assert from_item(item)["notification_id"] == "n-earlier"


def test_an_oversized_message_is_stored_truncated_on_a_character_boundary(aws: LocalAws) -> None:
    store = DynamoDBMatchStore(aws.dynamodb, "logfan-matches")
    # One ASCII byte then two-byte characters: the byte limit falls in the middle of a character.
    huge = "a" + "é" * (MESSAGE_MAX_BYTES // 2 + 100)
    matches = [_match(1, message=huge), _match(2, message="short é")]

    claimed = _claim(store, matches, "n-1")

    assert claimed == matches  # the caller keeps the full message for its notification
    stored = {
        document["event_id"]: document
        for document in (from_item(item) for item in aws.dynamodb.scan(TableName="logfan-matches")["Items"])
    }
    cut = stored[_match(1).event_id]
    assert cut["message_truncated"] is True
    assert len(cut["message"].encode()) <= MESSAGE_MAX_BYTES
    assert len(cut["message"].encode()) > MESSAGE_MAX_BYTES - 4
    assert huge.startswith(cut["message"])
    assert (stored[_match(2).event_id]["message"], stored[_match(2).event_id]["message_truncated"]) == (
        "short é",
        False,
    )


def _status(store: DynamoDBMatchStore, notification_id: str) -> NotificationStatus | None:
    entry = store.load_notification(notification_id)
    return None if entry is None else entry.status


def test_notification_status_round_trip(aws: LocalAws) -> None:
    store = DynamoDBMatchStore(aws.dynamodb, "logfan-matches")
    notification = _notification()

    unknown = _status(store, "n-1")
    store.save_notification(notification, NotificationStatus.PENDING, expires_at=EXPIRES_AT)
    pending = store.load_notification("n-1")
    store.save_notification(notification, NotificationStatus.SENT, expires_at=EXPIRES_AT)
    sent = _status(store, "n-1")

    assert pending is not None and pending.notification == notification
    assert (unknown, pending.status, sent) == (None, NotificationStatus.PENDING, NotificationStatus.SENT)
    assert list(store.iter_matches()) == []  # notifications are not matches


def test_a_failed_notification_keeps_its_error(aws: LocalAws) -> None:
    store = DynamoDBMatchStore(aws.dynamodb, "logfan-matches")

    store.save_notification(_notification("n-2"), NotificationStatus.FAILED, expires_at=EXPIRES_AT, error="HTTP 410")

    assert _status(store, "n-2") is NotificationStatus.FAILED
    item = aws.dynamodb.get_item(TableName="logfan-matches", Key=to_item({"match_key": "notification#n-2"}))["Item"]
    document = from_item(item)
    assert document["error"] == "HTTP 410"
    assert Notification.model_validate(document["notification"]) == _notification("n-2")
