"""Kinesis record data -> CloudWatch Logs subscription message (pure).

The data blob of a CloudWatch Logs subscription record is base64 (added by Lambda's Kinesis event)
of a gzip member holding one JSON message. Every way that chain can break turns into a
`PoisonRecordError` with a one-line reason; nothing else escapes.
"""

from __future__ import annotations

import binascii
import json
import re
import zlib

from pydantic import ValidationError

from pipeline.errors import PoisonRecordError
from pipeline.models import LogsMessage

__all__ = ["DEFAULT_MAX_DECOMPRESSED_BYTES", "decode_record_data", "decompress_gzip", "parse_logs_message"]

DEFAULT_MAX_DECOMPRESSED_BYTES = 32 * 1024 * 1024
"""A Kinesis record holds at most 1 MiB; anything inflating past this is a bomb, not logs."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""JSON `\\ud800`-style escapes decode to code points that cannot be encoded as UTF-8 again."""


def decode_record_data(data_b64: str, *, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES) -> LogsMessage:
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


def parse_logs_message(raw: bytes) -> LogsMessage:
    """Parse and validate the JSON of one subscription message.

    The common case is validated straight from the bytes (pydantic's parser, no intermediate dicts);
    it refuses lone surrogates itself. Anything it refuses goes through the slow path, which says why.
    """
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
