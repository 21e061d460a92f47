"""`logfan notify test`: send a test notification through a customer's channel, for real.

The channel is read from the config table (of the default credentials chain, or of `--endpoint-url`
/ AWS_ENDPOINT_URL) and delivered by the very code the functions use: re-vetted target, timeouts,
retries, the webhook signature. The outcome is printed; the exit status is 0 when it was delivered.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from pipeline.adapters.channels import session_notifier
from pipeline.adapters.dynamodb_config import config_store
from pipeline.config import DeliverySettings, RulesSettings
from pipeline.errors import DeliveryError, NotFoundError
from pipeline.notifications import build_test_notification, notification_id_for_test

__all__ = ["register"]


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")


def _notify_test(args: argparse.Namespace) -> int:
    table = args.table or RulesSettings().config_table
    channel = config_store(table, region=args.region, endpoint_url=args.endpoint_url).get_channel(
        args.customer, args.channel
    )
    if channel is None:
        raise NotFoundError(f"customer {args.customer!r} has no channel {args.channel!r}")
    settings = DeliverySettings()
    if args.allow_loopback_channels:
        settings = settings.model_copy(update={"allow_loopback_channels": True})
    notifier = session_notifier(settings, region=args.region, endpoint_url=args.endpoint_url)
    notification = build_test_notification(
        args.customer,
        channel,
        notification_id=notification_id_for_test(args.customer, channel.channel_id, uuid.uuid4().hex),
        now_ms=time.time_ns() // 1_000_000,
    )
    label = f"{args.customer}/{channel.channel_id} ({channel.type.value})"
    try:
        receipt = notifier.deliver(channel, notification)
    except DeliveryError as exc:
        kind = "permanent" if exc.permanent else "transient"
        later = f"; the receiver asks to retry after {exc.retry_after_s:g} s" if exc.retry_after_s is not None else ""
        _write(f"{label}: NOT delivered ({kind}): {exc}{later}")
        _write(f"notification id {notification.notification_id}")
        return 1
    received = f", receiver id {receipt.message_id}" if receipt.message_id else ""
    _write(f"{label}: delivered, {receipt.status} after {receipt.attempts} attempt(s){received}")
    _write(f"notification id {notification.notification_id}")
    return 0


def register(subcommands: Any) -> None:
    """Add `notify test` to the `logfan` command line."""
    notify = subcommands.add_parser("notify", help="try a customer's notification channels")
    actions = notify.add_subparsers(dest="notify_command", required=True)
    description = "send a test notification (kind test) through one of a customer's channels, for real"
    test = actions.add_parser("test", help=description, description=description)
    test.add_argument("--customer", required=True, metavar="C", help="customer id")
    test.add_argument("--channel", required=True, metavar="X", help="channel id")
    test.add_argument("--endpoint-url", default=None, help="AWS endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    test.add_argument("--region", default=None, help="AWS region (default: the SDK's configuration)")
    test.add_argument("--table", default=None, help="config table (default: LOGFAN_CONFIG_TABLE, else logfan-config)")
    test.add_argument(
        "--allow-loopback-channels", action="store_true", help="local development: deliver to 127.0.0.1 / localhost"
    )
    test.set_defaults(run=_notify_test)
