"""Kinesis record data -> CloudWatch Logs subscription message (pure).

The data blob of a CloudWatch Logs subscription record is base64 (added by Lambda's Kinesis event)
of a gzip member holding one JSON message. Every way that chain can break turns into a
`PoisonRecordError` with a one-line reason; nothing else escapes.

The fan-out never looks inside a log event, so it builds no model per event. msgspec decodes a
message straight into typed structs, checking every field's type in C as it parses, and writes the
events back exactly as a sub-task payload carries them. CloudWatch Logs writes compact JSON, so
those bytes are usually already in the message: then the events are kept as a view of it and the
copy is dropped. `LogsMessage` stays the contract: whatever the typed decode refuses goes through
it, so what is accepted, and every reason for refusing, is the model's.
"""

from __future__ import annotations

import binascii
import json
import re
import zlib
from typing import Annotated, Literal

import msgspec
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

_LOG_EVENTS: TypeAdapter[list[LogEvent]] = TypeAdapter(list[LogEvent])


class _PlainEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A `LogEvent` as a data message carries it; fields in the model's order, so it encodes as the model does.

    Numeric ids (moto sends them) and the empty ids of control messages are left to the model.
    """

    id: Annotated[str, msgspec.Meta(min_length=1)]
    timestamp: int
    message: str


class _PlainMessage(msgspec.Struct, forbid_unknown_fields=True, gc=False, rename="camel"):
    """`LogsMessage` as CloudWatch Logs writes it.

    Unknown fields are refused rather than skipped: msgspec skips a field unread, UTF-8 unchecked,
    where the model refuses a message that is not UTF-8 throughout.
    """

    message_type: Literal["DATA_MESSAGE", "CONTROL_MESSAGE"]
    owner: str
    log_group: str
    log_stream: str
    subscription_filters: list[str]
    log_events: list[_PlainEvent]
    policy_level: str = ""
    """Sent for account-level subscription policies; ignored, as the model ignores it."""


_PLAIN_MESSAGES = msgspec.json.Decoder(_PlainMessage)
_EVENTS_ENCODER = msgspec.json.Encoder()


class DecodedMessage(msgspec.Struct, frozen=True, gc=False):
    """A validated subscription message whose events stay encoded.

    `events_json` is the JSON array of its events exactly as `routing.encode_payload` writes them
    in a sub-task (`{"id":"..","timestamp":..,"message":".."}` each, ids as strings), so routing
    sizes and splices them without an object per event. It is a read-only view: usually of the
    decompressed message itself, which already holds those bytes.

    A frozen struct rather than a frozen dataclass: there is one per record, and a struct is built
    in a fraction of the time and left out of the garbage collector's rounds (it holds no cycle).
    """

    message_type: Literal["DATA_MESSAGE", "CONTROL_MESSAGE"]
    owner: str
    log_group: str
    log_stream: str
    subscription_filters: list[str]
    event_count: int
    events_json: memoryview

    @property
    def is_control(self) -> bool:
        return self.message_type == "CONTROL_MESSAGE"

    def log_events(self) -> list[LogEvent]:
        """The events as models, parsed back from `events_json` (for tests and diagnosis, not the fan-out)."""
        return _LOG_EVENTS.validate_json(bytes(self.events_json))


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

    The common case (string ids, every field of exactly the model's type) is decoded into typed
    structs. Anything else (numeric ids, control messages, unknown fields, a wrong type, bad JSON)
    goes through `LogsMessage`, which accepts or refuses it and says why.
    """
    try:
        message = _PLAIN_MESSAGES.decode(raw)
    except ValueError:  # msgspec.DecodeError, or UnicodeDecodeError for a string that is not UTF-8
        return _from_model(_validate_with_model(raw))
    encoded = _EVENTS_ENCODER.encode(message.log_events)
    # The events are the message's last member as CloudWatch Logs writes it: `...,"logEvents":[...]}`.
    # Where the bytes there are the very bytes just written, keep those and drop the copy.
    at = len(raw) - 1 - len(encoded)
    events_json = memoryview(raw)[at:-1] if at >= 0 and raw.startswith(encoded, at) else memoryview(encoded)
    return _decoded(message, events_json)


def _from_model(message: LogsMessage) -> DecodedMessage:
    return _decoded(message, memoryview(pydantic_core.to_json(message.log_events)))


def _decoded(message: _PlainMessage | LogsMessage, events_json: memoryview) -> DecodedMessage:
    return DecodedMessage(
        message_type=message.message_type,
        owner=message.owner,
        log_group=message.log_group,
        log_stream=message.log_stream,
        subscription_filters=message.subscription_filters,
        event_count=len(message.log_events),
        events_json=events_json,
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
