"""Where local replay puts what would leave AWS: poison records and channel messages, as JSON lines."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.adapters.channels import ChannelNotifier, DeliveryReceipt, build_channel_notifier
from pipeline.config import DeliverySettings
from pipeline.errors import DeliveryError
from pipeline.models import Channel, Notification, PoisonRecord

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

    Each line holds the body (Slack blocks, the webhook document, the SNS or EventBridge request) and,
    for HTTP channels, the headers; what is only known when sending (a webhook's timestamp and
    signature) is a placeholder. Channel targets and secrets (webhook URLs, signing secrets) are never
    written, only the channel id and type. Like a receiver that honours the contract, it keeps the
    first delivery of each `notification_id` and counts the redeliveries (at-least-once delivery after
    a crash between sending and recording the send).

    With `deliver_with` (`logfan replay --deliver`) every notification is also really delivered
    through it, redeliveries included; a line records each first success (`delivery`: status,
    attempts, the receiver's id), and failures are kept in `failures` and raised on as `DeliveryError`.
    """

    def __init__(self, writer: JsonlWriter, region: str, *, deliver_with: ChannelNotifier | None = None) -> None:
        self._writer = writer
        self._renderer = deliver_with or build_channel_notifier(DeliverySettings(), region=region)
        self._deliver = deliver_with is not None
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.redeliveries = 0
        self.failures: list[dict[str, Any]] = []

    def send(self, channel: Channel, notification: Notification) -> None:
        rendered = self._renderer.render(channel, notification)
        receipt: DeliveryReceipt | None = None
        if self._deliver:
            try:
                receipt = self._renderer.deliver(channel, notification)
            except DeliveryError as exc:
                with self._lock:
                    self.failures.append(
                        {
                            "notification_id": notification.notification_id,
                            "customer_id": notification.customer_id,
                            "channel_id": channel.channel_id,
                            "channel_type": channel.type.value,
                            "error": str(exc),
                            "permanent": exc.permanent,
                            "retry_after_s": exc.retry_after_s,
                        }
                    )
                raise
        with self._lock:
            if notification.notification_id in self._seen:
                self.redeliveries += 1
                return
            self._seen.add(notification.notification_id)
        document: dict[str, Any] = {
            "notification_id": notification.notification_id,
            "kind": notification.kind,
            "customer_id": notification.customer_id,
            "rule_id": notification.rule_id,
            "channel_id": channel.channel_id,
            "channel_type": channel.type.value,
            "count": notification.count,
            "folded": notification.folded,
            "body": rendered.body,
        }
        if rendered.headers:
            document["headers"] = rendered.headers
        if receipt is not None:
            document["delivery"] = {
                "status": receipt.status,
                "attempts": receipt.attempts,
                "message_id": receipt.message_id,
            }
        self._writer.write(document)
