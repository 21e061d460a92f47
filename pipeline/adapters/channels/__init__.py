"""Notification channels: one module per channel type, behind the `Notifier` port.

`slack`, `webhook` (signed), `sns` and `eventbridge` each render and deliver one notification;
`http` holds what Slack and webhooks share (re-vetted, pinned, bounded retries); `registry` picks a
sender by `channel.type`. Adding a channel type is one module implementing `base.ChannelSender`,
listed in `registry.build_channel_notifier`.
"""

from __future__ import annotations

from pipeline.adapters.channels import eventbridge, sns
from pipeline.adapters.channels.base import ChannelSender, DeliveryReceipt, Rendered
from pipeline.adapters.channels.registry import ChannelNotifier, build_channel_notifier, session_notifier

__all__ = [
    "IAM_ACTIONS",
    "ChannelNotifier",
    "ChannelSender",
    "DeliveryReceipt",
    "Rendered",
    "build_channel_notifier",
    "session_notifier",
]

IAM_ACTIONS = sns.IAM_ACTIONS | eventbridge.IAM_ACTIONS
"""What delivering needs of IAM (Slack and webhooks are plain HTTPS)."""
