"""Where local replay puts what would leave AWS: poison records and channel messages, as JSON lines."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.models import Channel, Notification, PoisonRecord
from pipeline.notifications import render

__all__ = ["CapturingNotifier", "JsonlRejectSink", "JsonlWriter"]


class JsonlWriter:
    """Appends JSON lines from many threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")

    def write(self, document: dict[str, Any]) -> None:
        line = json.dumps(document, ensure_ascii=False, sort_keys=True)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


class JsonlRejectSink:
    """The local dead-letter destination for poison records (`rejected.jsonl`)."""

    def __init__(self, writer: JsonlWriter) -> None:
        self._writer = writer

    def reject(self, records: Sequence[PoisonRecord]) -> None:
        for record in records:
            self._writer.write({"kind": "poison_record", **record.model_dump(mode="json")})


class CapturingNotifier:
    """Renders each notification exactly as its channel would receive it, into `notifications.jsonl`.

    Channel targets (webhook URLs are secrets) are not written, only the channel id and type.
    Like a receiver that honours the contract, it keeps the first delivery of each
    `notification_id` and counts the redeliveries (at-least-once delivery after a crash between
    sending and recording the send).
    """

    def __init__(self, writer: JsonlWriter, region: str) -> None:
        self._writer = writer
        self._region = region
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.redeliveries = 0

    def send(self, channel: Channel, notification: Notification) -> None:
        with self._lock:
            if notification.notification_id in self._seen:
                self.redeliveries += 1
                return
            self._seen.add(notification.notification_id)
        self._writer.write(
            {
                "notification_id": notification.notification_id,
                "customer_id": notification.customer_id,
                "rule_id": notification.rule_id,
                "channel_id": channel.channel_id,
                "channel_type": channel.type.value,
                "count": notification.count,
                "body": render(notification, channel, region=self._region),
            }
        )
