"""Kinesis record data -> CloudWatch Logs subscription message (pure).

The data blob of a CloudWatch Logs subscription record is base64 (added by Lambda's Kinesis event)
of a gzip member holding one JSON message. Every way that chain can break turns into a
`PoisonRecordError` with a one-line reason; nothing else escapes.

The fan-out never looks inside a log event, so it builds no object per event: a message's events
are checked where they lie in the parsed JSON and kept re-encoded, as the bytes a sub-task payload
carries them in. `LogsMessage` stays the contract: whatever the quick check does not vouch for is
validated by it, so what is accepted, and every reason for refusing, is the model's.
"""

from __future__ import annotations

import binascii
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pydantic_core
from pydantic import TypeAdapter, ValidationError

from pipeline.errors import PoisonRecordError
from pipeline.models import LogEvent, LogsMessage

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "DecodedMessage",
    "decode_record_data",
    "decompress_gzip",
    "parse_logs_message",
]

DEFAULT_MAX_DECOMPRESSED_BYTES = 32 * 1024 * 1024
"""A Kinesis record holds at most 1 MiB; anything inflating past this is a bomb, not logs."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""JSON `\\ud800`-style escapes decode to code points that cannot be encoded as UTF-8 again."""

_MESSAGE_TYPES = ("DATA_MESSAGE", "CONTROL_MESSAGE")

_LOG_EVENTS: TypeAdapter[list[LogEvent]] = TypeAdapter(list[LogEvent])


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    """A validated subscription message whose events stay encoded.

    `events_json` is the JSON array of its events exactly as `routing.encode_payload` writes them
    in a sub-task (`{"id":"..","timestamp":..,"message":".."}` each, ids as strings), so routing
    sizes and splices them without an object per event.
    """

    message_type: Literal["DATA_MESSAGE", "CONTROL_MESSAGE"]
    owner: str
    log_group: str
    log_stream: str
    subscription_filters: list[str]
    event_count: int
    events_json: bytes

    @property
    def is_control(self) -> bool:
        return self.message_type == "CONTROL_MESSAGE"

    def log_events(self) -> list[LogEvent]:
        """The events as models, parsed back from `events_json` (for tests and diagnosis, not the fan-out)."""
        return _LOG_EVENTS.validate_json(self.events_json)


def decode_record_data(
    data_b64: str, *, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
) -> DecodedMessage:
    """Decode one record's base64 data into a validated subscription message."""
    try:
        compressed = binascii.a2b_base64(data_b64, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise PoisonRecordError(f"invalid base64: {exc}") from None
    return parse_logs_message(decompress_gzip(compressed, max_decompressed_bytes=max_decompressed_bytes))


def decompress_gzip(compressed: bytes, *, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES) -> bytes:
    """Inflate one gzip member, refusing truncated streams, trailing garbage and bombs."""
    if not compressed.startswith(b"\x1f\x8b"):
        raise PoisonRecordError("not gzip: missing gzip magic bytes")
    inflater = zlib.decompressobj(wbits=_GZIP_WBITS)
    try:
        raw = inflater.decompress(compressed, max_decompressed_bytes)
    except zlib.error as exc:
        raise PoisonRecordError(f"corrupt gzip: {exc}") from None
    if inflater.unconsumed_tail:
        raise PoisonRecordError(f"decompressed size exceeds {max_decompressed_bytes} bytes")
    if not inflater.eof:
        raise PoisonRecordError("truncated gzip stream")
    if inflater.unused_data:
        # CloudWatch Logs writes exactly one member; a second one would otherwise be dropped unread.
        raise PoisonRecordError(f"trailing data after the gzip stream: {len(inflater.unused_data)} bytes")
    return raw


def parse_logs_message(raw: bytes) -> DecodedMessage:
    """Parse and validate the JSON of one subscription message.

    The common case (string ids, events shaped exactly like `LogEvent`) is checked on the parsed
    JSON in place. Anything else (numeric ids, control messages, a wrong type, bad JSON) goes
    through `LogsMessage`, which accepts or refuses it and says why.
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = None
    quick = _plain_message(document) if type(document) is dict else None
    return quick if quick is not None else _from_model(_validate_with_model(raw))


def _plain_message(document: dict[str, Any]) -> DecodedMessage | None:
    """The message when every field already has exactly the model's type and shape; else None."""
    message_type = document.get("messageType")
    owner = document.get("owner")
    log_group = document.get("logGroup")
    log_stream = document.get("logStream")
    filters = document.get("subscriptionFilters")
    events = document.get("logEvents")
    if (
        message_type not in _MESSAGE_TYPES
        or type(owner) is not str
        or type(log_group) is not str
        or type(log_stream) is not str
        or type(filters) is not list
        or type(events) is not list
        or not all(type(name) is str for name in filters)
        or not _plain_events(events)
    ):
        return None
    events_json = orjson.dumps(events)
    if not _in_model_order(events_json, len(events)):
        return None
    return DecodedMessage(
        message_type=message_type,
        owner=owner,
        log_group=log_group,
        log_stream=log_stream,
        subscription_filters=filters,
        event_count=len(events),
        events_json=events_json,
    )


def _plain_events(events: list[Any]) -> bool:
    """Every event a dict of exactly `id` (a non-empty string), `timestamp` (an int), `message` (a string)."""
    text, integer, mapping = str, int, dict  # locals: this loop runs once per log event
    for event in events:
        if type(event) is not mapping or len(event) != 3:
            return False
        try:
            event_id, timestamp, message = event["id"], event["timestamp"], event["message"]
        except KeyError:
            return False
        if type(event_id) is not text or not event_id or type(timestamp) is not integer or type(message) is not text:
            return False
    return True


def _in_model_order(events_json: bytes, count: int) -> bool:
    """Whether `_plain_events` events were encoded with their keys in `LogEvent`'s order.

    Checked on the bytes, cheaper than on each dict. A quote inside a JSON string is always
    escaped, so `"},{"id":"` only matches structure: one event ending in a string value and the
    next opening with its id. Every event opening with its id and closing with a string (of its
    other two values only the message is one) is exactly id, timestamp, message.
    """
    if not count:
        return True
    return (
        events_json.startswith(b'[{"id":"')
        and events_json.endswith(b'"}]')
        and events_json.count(b'"},{"id":"') == count - 1
    )


def _from_model(message: LogsMessage) -> DecodedMessage:
    return DecodedMessage(
        message_type=message.message_type,
        owner=message.owner,
        log_group=message.log_group,
        log_stream=message.log_stream,
        subscription_filters=message.subscription_filters,
        event_count=len(message.log_events),
        events_json=pydantic_core.to_json(message.log_events),
    )


def _validate_with_model(raw: bytes) -> LogsMessage:
    """The model's verdict. Straight from the bytes first; what that refuses goes the slow way, which says why."""
    try:
        return LogsMessage.model_validate_json(raw)
    except ValidationError:
        return _parse_logs_message_explained(raw)


def _parse_logs_message_explained(raw: bytes) -> LogsMessage:
    try:
        document = json.loads(raw)
    except UnicodeDecodeError:
        raise PoisonRecordError("not JSON: payload is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise PoisonRecordError(f"not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(document, dict):
        raise PoisonRecordError(f"not a CloudWatch Logs message: JSON {type(document).__name__}, not an object")
    try:
        message = LogsMessage.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}" for error in exc.errors()[:5]
        )
        raise PoisonRecordError(f"not a CloudWatch Logs message: {problems}") from None
    _require_encodable(message)
    return message


def _require_encodable(message: LogsMessage) -> None:
    """Reject lone surrogates here: routing re-encodes every string as UTF-8 and would crash on them."""
    for name, text in (("owner", message.owner), ("logGroup", message.log_group), ("logStream", message.log_stream)):
        if _LONE_SURROGATE.search(text):
            raise PoisonRecordError(f"not UTF-8: {name} holds a lone surrogate")
    for index, event in enumerate(message.log_events):
        if _LONE_SURROGATE.search(event.message) or _LONE_SURROGATE.search(event.id):
            raise PoisonRecordError(f"not UTF-8: logEvents.{index} holds a lone surrogate")
