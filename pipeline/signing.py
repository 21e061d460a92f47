"""Webhook signatures (pure): how logfan signs a webhook body and how a receiver checks it.

logfan sends `X-Logfan-Timestamp: <unix seconds>` and `X-Logfan-Signature: v1=<hex>`, where `<hex>` is
HMAC-SHA256, keyed with the channel's secret, over `f"{timestamp}.{body}"` (the raw body bytes as
sent). A receiver recomputes it, compares in constant time, and refuses timestamps more than a few
minutes away from its own clock, so a captured request cannot be replayed later. See docs/webhooks.md.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "SIGNATURE_VERSION",
    "TIMESTAMP_HEADER",
    "sign",
    "signature_header",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Logfan-Signature"
TIMESTAMP_HEADER = "X-Logfan-Timestamp"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
"""Receivers refuse a timestamp further than this from their clock (5 minutes)."""


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str, timestamp: str | int, body: str | bytes) -> str:
    """The hex HMAC-SHA256 of `f"{timestamp}.{body}"` keyed with `secret`."""
    message = str(timestamp).encode() + b"." + _bytes(body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: str | int, body: str | bytes) -> str:
    """The `X-Logfan-Signature` value: `v1=<hex>`."""
    return f"{SIGNATURE_VERSION}={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: str | bytes,
    header: str,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """True when `header` (the `X-Logfan-Signature` value) signs `timestamp` and `body` with `secret`,
    and `timestamp` (the `X-Logfan-Timestamp` value, unix seconds) is within `tolerance_s` of `now`.

    `header` may carry several comma-separated `v1=` signatures (e.g. while a secret is rotated);
    one match is enough. Every comparison is constant-time.
    """
    stamp = timestamp.strip()
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance_s:
        return False
    expected = sign(secret, stamp, body)
    found = False
    for part in header.split(","):
        version, _, value = part.strip().partition("=")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value.strip().lower().encode(), expected.encode()):
            found = True
    return found
