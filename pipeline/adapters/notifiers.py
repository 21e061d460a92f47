"""Channel delivery: kept as the name the IAM check and older imports use; the channels themselves
live in `pipeline.adapters.channels` (one module per channel type)."""

from __future__ import annotations

from pipeline.adapters.channels import IAM_ACTIONS, ChannelNotifier, DeliveryReceipt, build_channel_notifier
from pipeline.adapters.channels.http import HttpPoster, HttpResponse, PinnedHttpPoster

__all__ = [
    "IAM_ACTIONS",
    "ChannelNotifier",
    "DeliveryReceipt",
    "HttpPoster",
    "HttpResponse",
    "PinnedHttpPoster",
    "build_channel_notifier",
]
