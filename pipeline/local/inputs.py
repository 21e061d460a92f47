"""Replay inputs -> the Kinesis records CloudWatch Logs would have put into the stream.

Accepted, by file (a directory means every such file inside, recursively, in name order):
- a Lambda Kinesis event (`{"Records": [...]}`, .json): each record's data goes in as it is;
- decoded CloudWatch Logs subscription messages (.json object or list, .jsonl/.ndjson lines):
  gzipped as CloudWatch Logs does;
- plain-text logs (.log/.txt, or any other file named explicitly): one event per line, with the
  owner / log group / log stream given by the caller.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import regex

from pipeline.adapters.kinesis_publisher import OutgoingRecord
from pipeline.errors import LogfanError

__all__ = ["InputError", "PlainTextSource", "read_inputs"]

JSON_SUFFIXES = {".json"}
JSON_LINES_SUFFIXES = {".jsonl", ".ndjson"}
TEXT_SUFFIXES = {".log", ".txt"}
EVENTS_PER_MESSAGE = 500
MESSAGE_MAX_BYTES = 256 * 1024
_TIMESTAMP = regex.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})?)")
DEFAULT_START_MS = 1_764_547_200_000
"""2025-12-01T00:00:00Z: the clock for plain-text lines that carry no timestamp of their own."""


class InputError(LogfanError):
    """An input that cannot be read at all."""


@dataclass(frozen=True, slots=True)
class PlainTextSource:
    owner: str = "123456789012"
    log_group: str | None = None
    """Default: /replay/<file stem>."""
    log_stream: str | None = None
    """Default: the file name."""


def _gzip(document: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode(), mtime=0)


def _partition_key(document: dict[str, Any]) -> str:
    return f"{document.get('owner', '')}:{document.get('logGroup', '')}"[:256] or "logfan"


def _event_id(name: str, line_number: int) -> str:
    digits = int(hashlib.sha256(f"{name}:{line_number}".encode()).hexdigest(), 16) % 10**56
    return f"{digits:056d}"


def _timestamp_ms(line: str) -> int | None:
    found = _TIMESTAMP.match(line)
    if not found:
        return None
    text = found.group(1).replace(",", ".").replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)


def _plain_text(path: Path, source: PlainTextSource) -> Iterator[OutgoingRecord]:
    header = {
        "messageType": "DATA_MESSAGE",
        "owner": source.owner,
        "logGroup": source.log_group or f"/replay/{path.stem}",
        "logStream": source.log_stream or path.name,
        "subscriptionFilters": ["logfan-replay"],
    }
    events: list[dict[str, Any]] = []
    size = 0
    clock = DEFAULT_START_MS
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        clock = _timestamp_ms(line) or clock + 1
        event = {"id": _event_id(path.name, number), "timestamp": clock, "message": line}
        event_size = len(line.encode()) + 100
        if events and (len(events) == EVENTS_PER_MESSAGE or size + event_size > MESSAGE_MAX_BYTES):
            yield OutgoingRecord(_partition_key(header), _gzip({**header, "logEvents": events}))
            events, size = [], 0
        events.append(event)
        size += event_size
    if events:
        yield OutgoingRecord(_partition_key(header), _gzip({**header, "logEvents": events}))


def _kinesis_event(path: Path, document: dict[str, Any]) -> Iterator[OutgoingRecord]:
    for index, record in enumerate(document["Records"]):
        try:
            data = record["kinesis"]["data"]
            partition_key = record["kinesis"].get("partitionKey") or "logfan"
        except (KeyError, TypeError):
            raise InputError(f"{path}: Records[{index}] has no kinesis.data") from None
        try:
            raw = binascii.a2b_base64(data, strict_mode=True)
        except (binascii.Error, ValueError):
            # A stream only holds bytes: keep the broken text as the record's bytes, still poison.
            raw = str(data).encode()
        yield OutgoingRecord(partition_key, raw)


def _json_document(path: Path, document: Any, where: str) -> Iterator[OutgoingRecord]:
    if isinstance(document, dict) and "Records" in document:
        yield from _kinesis_event(path, document)
    elif isinstance(document, dict) and "messageType" in document:
        yield OutgoingRecord(_partition_key(document), _gzip(document))
    elif isinstance(document, list):
        for index, item in enumerate(document):
            yield from _json_document(path, item, f"{where}[{index}]")
    else:
        raise InputError(f"{path}{where}: neither a Kinesis event nor a CloudWatch Logs subscription message")


def _read_file(path: Path, source: PlainTextSource) -> list[OutgoingRecord]:
    try:
        if path.suffix in JSON_SUFFIXES:
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: not valid JSON: {exc}") from None
            return list(_json_document(path, document, ""))
        if path.suffix in JSON_LINES_SUFFIXES:
            records: list[OutgoingRecord] = []
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    document = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{number}: not valid JSON: {exc}") from None
                records.extend(_json_document(path, document, f":{number}"))
            return records
        return list(_plain_text(path, source))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text: {exc.reason}") from None


def _expand(path: Path) -> list[Path]:
    if path.is_dir():
        suffixes = JSON_SUFFIXES | JSON_LINES_SUFFIXES | TEXT_SUFFIXES
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    return [path]


def read_inputs(paths: list[Path], source: PlainTextSource | None = None) -> list[tuple[Path, list[OutgoingRecord]]]:
    """Every input file with the records it yields, in a stable order; raises `InputError`."""
    plain = source or PlainTextSource()
    files = [file for path in paths for file in _expand(path)]
    if not files:
        raise InputError(f"no input files found in {', '.join(str(p) for p in paths)}")
    return [(file, _read_file(file, plain)) for file in files]
