"""Kinesis record data -> CloudWatch Logs message, and every way that can break."""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Callable
from typing import Any

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.decoding import DecodedMessage, decode_record_data, decompress_gzip, parse_logs_message
from pipeline.errors import PoisonRecordError
from pipeline.models import LogsMessage
from tests import factories as f

OWNER = "111122223333"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _gzip_b64(raw: bytes) -> str:
    return _b64(gzip.compress(raw, mtime=0))


def _poison_reason(data_b64: str, **kwargs: Any) -> str:
    with pytest.raises(PoisonRecordError) as caught:
        decode_record_data(data_b64, **kwargs)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


def test_a_data_message_decodes_into_its_fields() -> None:
    # Given a subscription message with a multi-line event, as CloudWatch Logs writes it
    document = f.logs_message(
        OWNER,
        log_group="/aws/lambda/payments",
        log_stream="2026/11/28/[$LATEST]0123",
        events=[
            f.event("START RequestId: 1", timestamp=1_764_380_000_001, event_id="3" * 56),
            f.event("Traceback (most recent call last):\n  File x\nValueError: ü", event_id="4" * 56),
        ],
    )

    # When it is decoded
    message = decode_record_data(f.encode(document))

    # Then every field arrives, in order, and the multi-line message stays one event
    assert isinstance(message, DecodedMessage)
    assert not message.is_control
    assert (message.owner, message.log_group, message.log_stream) == (
        OWNER,
        "/aws/lambda/payments",
        "2026/11/28/[$LATEST]0123",
    )
    assert message.subscription_filters == ["logfan"]
    assert [e.id for e in message.log_events()] == ["3" * 56, "4" * 56]
    assert message.log_events()[0].timestamp == 1_764_380_000_001
    assert message.log_events()[1].message == "Traceback (most recent call last):\n  File x\nValueError: ü"


def test_numeric_event_ids_become_strings_and_unknown_fields_are_tolerated() -> None:
    # Given what moto sends: integer event ids, plus a field newer CloudWatch Logs versions add
    document = f.logs_message(
        OWNER,
        events=[{"id": 36_000_000_000_000_000, "timestamp": 1, "message": "m"}],
        policyLevel="ACCOUNT_LEVEL_POLICY",
    )

    # When it is decoded
    message = decode_record_data(f.encode(document))

    # Then the id is the digit string AWS would have sent
    assert message.log_events()[0].id == "36000000000000000"


def test_events_are_kept_encoded_exactly_as_the_payload_encoder_writes_them() -> None:
    # Given events in every shape the model accepts: keys in another order, a numeric id, escapes, wide characters
    document = f.logs_message(
        OWNER,
        events=[
            {"message": "keys out of order", "timestamp": 2, "id": "2" * 56},
            {"id": 42, "timestamp": 3, "message": "numeric id"},
            f.event('quote " backslash \\ tab \t nul \x00 del \x7f é € 中 😀 \u2028'),
        ],
    )

    # When it is decoded
    message = decode_record_data(f.encode(document))

    # Then the events are the bytes the payload encoder writes for the model's events, in the model's key order
    assert message.event_count == 3
    assert message.events_json == pydantic_core.to_json(LogsMessage.model_validate(document).log_events)
    assert message.log_events() == LogsMessage.model_validate(document).log_events


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.one_of(st.text(min_size=1, max_size=20), st.integers(min_value=0, max_value=2**63)),
            st.integers(min_value=-(2**63), max_value=2**64 - 1),
            st.text(max_size=200),
        ),
        max_size=6,
    )
)
def test_any_accepted_events_encode_as_the_model_does(events: list[tuple[str | int, int, str]]) -> None:
    # Given arbitrary text (every code point UTF-8 can carry), ids and timestamps
    document = f.logs_message(OWNER, events=[{"id": i, "timestamp": t, "message": m} for i, t, m in events])

    # When it is decoded
    message = decode_record_data(f.encode(document))

    # Then its events are byte for byte what pydantic, and `json.dumps`, write for the models
    models = LogsMessage.model_validate(document).log_events
    assert message.events_json == pydantic_core.to_json(models)
    assert message.events_json == json.dumps(
        [m.model_dump() for m in models], ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def _compact(document: dict[str, Any]) -> bytes:
    """A message as CloudWatch Logs writes it: compact JSON, UTF-8 as is, `logEvents` last."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _model_bytes(raw: bytes) -> bytes:
    return pydantic_core.to_json(LogsMessage.model_validate_json(raw).log_events)


def test_events_already_written_as_the_payload_writes_them_are_kept_in_the_message() -> None:
    # Given a compact message, as CloudWatch Logs writes it, with characters JSON escapes and wide ones
    raw = _compact(f.logs_message(OWNER, ['quote " backslash \\ tab \t nul \x00 esc \x1b é 😀 /', "plain"]))

    # When it is parsed
    message = parse_logs_message(raw)

    # Then its events are a view of the message itself, not a copy, holding the payload encoder's bytes
    assert message.events_json.obj is raw
    assert message.events_json == _model_bytes(raw)
    assert message.event_count == 2


def _uppercase_hex(raw: bytes) -> bytes:
    """`\\u001b` escapes written `\\u001B`, as some JSON writers do (a `\\\\` pair is a backslash, left alone)."""
    return re.sub(rb"(?<!\\)((?:\\\\)*)\\u([0-9a-f]{4})", lambda m: m.group(1) + b"\\u" + m.group(2).upper(), raw)


def _reordered(document: dict[str, Any]) -> bytes:
    events = [{"message": e["message"], "id": e["id"], "timestamp": e["timestamp"]} for e in document["logEvents"]]
    return _compact({**document, "logEvents": events})


def _duplicate_ids(document: dict[str, Any]) -> bytes:
    """Each event with a first `id` member the JSON's last one overrides."""
    raw = _compact(document)
    return raw.replace(b'{"id":', b'{"id":"overridden","id":')


# Ways to write the same message other than the payload's: every one must give the model's bytes.
OTHER_WRITERS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "json.dumps defaults": lambda d: json.dumps(d).encode(),
    "ascii escapes": lambda d: json.dumps(d, separators=(",", ":")).encode(),
    "uppercase hex escapes": lambda d: _uppercase_hex(json.dumps(d, separators=(",", ":")).encode()),
    "escaped slashes": lambda d: _compact(d).replace(b"/", b"\\/"),
    "event keys reordered": _reordered,
    "duplicate event ids": _duplicate_ids,
    "trailing newline": lambda d: _compact(d) + b"\n",
    "events not last": lambda d: _compact({"logEvents": d["logEvents"], **d}),
}


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12),
            st.integers(min_value=-(2**63), max_value=2**64 - 1),
            st.text(alphabet=st.one_of(st.sampled_from('"\\/\x00\x1b\x7f\n\té😀\u2028'), st.characters(codec="utf-8"))),
        ),
        max_size=5,
    ),
    writer=st.sampled_from(sorted(OTHER_WRITERS)),
)
def test_events_written_any_other_way_are_written_again_as_the_payload_writes_them(
    events: list[tuple[str, int, str]], writer: str
) -> None:
    # Given a message written compactly (as CloudWatch Logs does) and the same message written another way
    document = f.logs_message(OWNER, events=[{"id": i, "timestamp": t, "message": m} for i, t, m in events])
    compact = _compact(document)
    other = OTHER_WRITERS[writer](document)

    # When each is parsed
    as_written = parse_logs_message(compact)
    rewritten = parse_logs_message(other)

    # Then both hold exactly the bytes the payload encoder writes for the model's events
    assert as_written.events_json == _model_bytes(compact)
    assert rewritten.events_json == _model_bytes(other) == _model_bytes(compact)
    assert rewritten.log_events() == as_written.log_events()
    # And the compact message's events are kept in place
    assert as_written.events_json.obj is compact


def test_the_account_level_policy_field_is_tolerated_and_other_unknown_fields_get_the_models_verdict() -> None:
    # Given messages with the field account-level subscriptions add, and with a field nobody knows
    with_policy = _compact({**f.logs_message(OWNER, ["a"]), "policyLevel": "ACCOUNT_LEVEL_POLICY"})
    with_unknown = _compact({**f.logs_message(OWNER, ["b"]), "newField": {"nested": [1, 2.5, None]}})

    # Then both decode to the model's events
    assert parse_logs_message(with_policy).events_json == _model_bytes(with_policy)
    assert parse_logs_message(with_unknown).events_json == _model_bytes(with_unknown)


def test_bytes_that_are_not_utf8_anywhere_in_the_message_are_poison() -> None:
    # Given a valid message but for an unknown field whose string is not UTF-8 (a decoder that skips unknown
    # fields unread would accept it)
    raw = b'{"junk":"caf\xe9",' + _compact(f.logs_message(OWNER, ["x"]))[1:]

    # Then the record is refused, as the model refuses it
    assert "not UTF-8" in _poison_reason(_gzip_b64(raw))


ODD_EVENTS = [
    {"id": "1", "timestamp": 1, "message": "m", "extra": "x"},
    {"id": "1", "timestamp": True, "message": "m"},
    {"id": "1", "timestamp": 1.0, "message": "m"},
    {"id": "1", "timestamp": 1.5, "message": "m"},
    {"id": "1", "timestamp": "1", "message": "m"},
    {"id": 1.5, "timestamp": 1, "message": "m"},
    {"id": True, "timestamp": 1, "message": "m"},
    {"id": "", "timestamp": 1, "message": "m"},
    {"id": "1", "timestamp": 2**70, "message": "m"},
    {"id": "1", "timestamp": 1, "message": None},
    {"id": "1", "message": "m", "timestamp": 1},
    ["not", "an", "event"],
]


@pytest.mark.parametrize("odd", ODD_EVENTS, ids=[json.dumps(e) for e in ODD_EVENTS])
def test_events_of_any_other_shape_get_the_models_verdict(odd: Any) -> None:
    # Given a message whose second event is not plainly a string id, an int timestamp and a string message
    document = f.logs_message(OWNER, events=[f.event("ok"), odd])
    data = f.encode(document)

    # Then decoding accepts what the model accepts, with the model's values, and refuses the rest saying where
    try:
        expected = LogsMessage.model_validate_json(json.dumps(document))
    except ValidationError:
        reason = _poison_reason(data)
        assert reason.startswith("not a CloudWatch Logs message")
        assert "logEvents.1" in reason
    else:
        assert decode_record_data(data).events_json == pydantic_core.to_json(expected.log_events)


def test_a_control_message_decodes_and_says_so() -> None:
    # Given the health check CloudWatch Logs sends when a subscription is created
    data = f.encode(f.control_message())

    # When it is decoded
    message = decode_record_data(data)

    # Then it is recognisable as control, not data
    assert message.is_control
    assert message.owner == "CloudwatchLogs"


def test_invalid_base64_is_poison() -> None:
    assert _poison_reason("this is not base64!!").startswith("invalid base64")


def test_base64_of_something_that_is_not_gzip_is_poison() -> None:
    assert _poison_reason(_b64(b'{"messageType": "DATA_MESSAGE"}')).startswith("not gzip")


def test_an_empty_record_is_poison() -> None:
    assert _poison_reason("").startswith("not gzip")


def test_a_truncated_gzip_stream_is_poison() -> None:
    # Given a gzip member cut in half (a partial write)
    compressed = gzip.compress(json.dumps(f.logs_message(OWNER, ["x" * 200])).encode(), mtime=0)

    # Then it is refused as truncated, not parsed as whatever came out
    assert "truncated gzip" in _poison_reason(_b64(compressed[: len(compressed) // 2]))
    assert "truncated gzip" in _poison_reason(_b64(compressed[:-4]))


def test_a_corrupt_gzip_body_is_poison() -> None:
    assert _poison_reason(_b64(b"\x1f\x8b\x08\x00" + b"\xff" * 40)).startswith("corrupt gzip")


def test_trailing_data_after_the_gzip_member_is_poison() -> None:
    # Given a valid member followed by a second one whose events would otherwise be dropped unread
    member = gzip.compress(json.dumps(f.logs_message(OWNER, ["a"])).encode(), mtime=0)

    # Then the record is refused rather than half-read
    assert "trailing data" in _poison_reason(_b64(member + member))
    assert "trailing data" in _poison_reason(_b64(member + b"garbage"))


def test_gzip_of_text_that_is_not_json_is_poison() -> None:
    assert _poison_reason(_gzip_b64(b"2026-11-28 ERROR plain text")).startswith("not JSON")


def test_gzip_of_bytes_that_are_not_utf8_is_poison() -> None:
    reason = _poison_reason(_gzip_b64('{"owner": "café"}'.encode("latin-1")))

    assert "not UTF-8" in reason


def test_json_that_is_not_an_object_is_poison() -> None:
    reason = _poison_reason(_gzip_b64(b'[{"messageType": "DATA_MESSAGE"}]'))

    assert "not an object" in reason
    assert "list" in reason


@pytest.mark.parametrize("missing", ["logEvents", "owner", "logGroup", "messageType"])
def test_json_missing_a_required_field_is_poison_naming_the_field(missing: str) -> None:
    # Given a message without one required field
    document = f.logs_message(OWNER, ["x"])
    del document[missing]

    # Then the reason names that field
    reason = _poison_reason(f.encode(document))

    assert reason.startswith("not a CloudWatch Logs message")
    assert missing in reason


def test_an_event_missing_its_message_is_poison_naming_the_path() -> None:
    document = f.logs_message(OWNER, events=[{"id": "1", "timestamp": 1}])

    assert "logEvents.0.message" in _poison_reason(f.encode(document))


def test_an_unknown_message_type_is_poison() -> None:
    reason = _poison_reason(f.encode(f.logs_message(OWNER, ["x"], messageType="METRIC_MESSAGE")))

    assert "messageType" in reason


def test_a_lone_surrogate_escape_is_poison_rather_than_a_crash_downstream() -> None:
    # Given JSON whose `\ud800` escape decodes to a code point UTF-8 cannot encode
    raw = json.dumps(f.logs_message(OWNER, ["before \ud800 after"])).encode()
    assert b"\\ud800" in raw

    # Then the record is poison here, instead of a UnicodeEncodeError when routing sizes it
    assert "lone surrogate" in _poison_reason(_gzip_b64(raw))


def test_a_gzip_bomb_is_poison() -> None:
    # Given 8 MiB of zeros that compress to a few KiB
    bomb = _gzip_b64(b"0" * (8 * 1024 * 1024))

    # When it is decoded with a 1 MiB ceiling
    reason = _poison_reason(bomb, max_decompressed_bytes=1024 * 1024)

    # Then it is refused as too large
    assert "exceeds 1048576 bytes" in reason


def test_the_size_ceiling_is_inclusive() -> None:
    # Given a member that inflates to exactly N bytes
    raw = json.dumps(f.logs_message(OWNER, ["x"])).encode()
    compressed = gzip.compress(raw, mtime=0)

    # Then N is allowed and N - 1 is not
    assert decompress_gzip(compressed, max_decompressed_bytes=len(raw)) == raw
    with pytest.raises(PoisonRecordError, match="exceeds"):
        decompress_gzip(compressed, max_decompressed_bytes=len(raw) - 1)
