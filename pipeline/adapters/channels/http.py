"""HTTP delivery for Slack and webhooks: re-vetted targets, pinned connections, bounded retries.

Right before every attempt the URL is checked again (`pipeline.vetting.channel_url_problem`), its
host resolved, and every address it resolves to checked too; the request then goes to one of those
very addresses (TLS still verifies the host name), so a DNS answer that changes between the check
and the connection cannot redirect it inside. Redirects are never followed.

Every request has a timeout. 408, 429, 5xx and network errors are retried with full-jitter
exponential backoff, honouring `Retry-After` (seconds or an HTTP date), while the waits of one
delivery stay within `delivery_max_wait_s`; a receiver asking for longer gets a transient
`DeliveryError` with `retry_after_s` so the caller holds the notification back. Any other 4xx (and
3xx) is permanent. A URL is a secret (Slack carries its token in the path): no message, log line or
error here contains it.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol
from urllib.parse import urlsplit

from pipeline.adapters.channels.base import DeliveryReceipt
from pipeline.config import DeliverySettings
from pipeline.errors import DeliveryError
from pipeline.invoking import backoff_delay
from pipeline.models import Channel
from pipeline.vetting import channel_url_problem

__all__ = [
    "MAX_RESPONSE_BYTES",
    "HttpDelivery",
    "HttpPoster",
    "HttpResponse",
    "PinnedHttpPoster",
    "Resolver",
    "is_retryable_status",
    "parse_retry_after",
    "resolve_host",
]

_log = logging.getLogger("logfan.delivery")

MAX_RESPONSE_BYTES = 64 * 1024
"""What is read of a receiver's answer before the connection is closed (it is never shown)."""

Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> the addresses it resolves to now."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    retry_after: str | None = None
    """The `Retry-After` header as received."""


class HttpPoster(Protocol):
    """The socket layer: POST to `url`'s host at one of `addresses`, nothing else.

    Raises `OSError` (timeouts, refused connections, TLS failures) or `http.client.HTTPException`.
    """

    def post(
        self, url: str, addresses: Sequence[str], body: bytes, headers: Mapping[str, str], *, timeout_s: float
    ) -> HttpResponse: ...


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6), in the resolver's order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or an HTTP date); None when absent or
    unreadable. A date in the past means 0."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)


def is_retryable_status(status: int) -> bool:
    """408 and 429 and every 5xx may succeed later; anything else not 2xx never will."""
    return status in (408, 429) or 500 <= status < 600


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP to one vetted address (loopback, local development only)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to one vetted address; the certificate is still checked against the URL's host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class PinnedHttpPoster:
    """`HttpPoster` over `http.client`: connects to the given addresses only, follows no redirect."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._context = ssl_context or ssl.create_default_context()

    def post(
        self, url: str, addresses: Sequence[str], body: bytes, headers: Mapping[str, str], *, timeout_s: float
    ) -> HttpResponse:
        parts = urlsplit(url)
        host = parts.hostname or ""
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        failure: OSError = OSError("no address to connect to")
        for address in addresses:
            connection: http.client.HTTPConnection = (
                _PinnedHTTPSConnection(host, port, address, timeout_s, self._context)
                if secure
                else _PinnedHTTPConnection(host, port, address, timeout_s)
            )
            try:
                connection.connect()
            except OSError as exc:  # refused or unreachable: the host's next address
                connection.close()
                failure = exc
                continue
            try:
                connection.request("POST", path, body=body, headers=dict(headers))
                response = connection.getresponse()
                response.read(MAX_RESPONSE_BYTES)
                return HttpResponse(status=response.status, retry_after=response.getheader("Retry-After"))
            finally:
                connection.close()
        raise failure


def _network_failure(exc: BaseException) -> str:
    """What went wrong on the wire, in words that never carry the URL."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "could not resolve the host"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate not valid for the host"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"network error ({type(exc).__name__})"


class HttpDelivery:
    """POSTs one body to a channel's URL with re-vetting, timeouts and bounded retries.

    `sleep`, `now` (epoch seconds, for `Retry-After` dates) and `rng` (jitter) are injectable.
    """

    def __init__(
        self,
        poster: HttpPoster,
        settings: DeliverySettings,
        *,
        resolver: Resolver = resolve_host,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._poster = poster
        self._settings = settings
        self._resolve = resolver
        self._sleep = sleep
        self._now = now
        self._rng = rng

    def post(
        self, channel: Channel, notification_id: str, body: bytes, headers: Callable[[], Mapping[str, str]]
    ) -> DeliveryReceipt:
        """Deliver `body`; `headers()` is called for every attempt (a webhook signs each one afresh),
        and every attempt carries the same notification id."""
        label = f"{channel.type.value} channel {channel.channel_id}"
        url = channel.url or ""
        settings = self._settings
        waited = 0.0
        attempts = settings.delivery_max_attempts
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                addresses = self._vetted_addresses(url, label)
                response = self._poster.post(url, addresses, body, headers(), timeout_s=settings.delivery_timeout_s)
            except (OSError, http.client.HTTPException) as exc:
                failure = f"{label}: {_network_failure(exc)}"
            else:
                if 200 <= response.status < 300:
                    return DeliveryReceipt(
                        channel_id=channel.channel_id,
                        channel_type=channel.type,
                        notification_id=notification_id,
                        status=f"HTTP {response.status}",
                        attempts=attempt,
                    )
                failure = f"{label} answered HTTP {response.status}"
                if not is_retryable_status(response.status):
                    why = " (redirects are not followed)" if 300 <= response.status < 400 else ""
                    raise DeliveryError(f"{failure}{why}", permanent=True)
                retry_after = parse_retry_after(response.retry_after, self._now())
            if attempt == attempts:
                raise DeliveryError(f"{failure} ({attempts} attempts)", retry_after_s=retry_after)
            if retry_after is None:
                delay = backoff_delay(
                    attempt - 1, settings.delivery_backoff_s, settings.delivery_backoff_cap_s, self._rng
                )
                if waited + delay > settings.delivery_max_wait_s:
                    raise DeliveryError(f"{failure} ({attempt} attempts; no time left to retry in-line)")
            elif waited + retry_after > settings.delivery_max_wait_s:
                raise DeliveryError(
                    f"{failure}, asking to retry after {retry_after:g} s: longer than this delivery waits",
                    retry_after_s=retry_after,
                )
            else:
                delay = retry_after
            _log.info(
                "delivery attempt failed; retrying",
                extra={
                    "channel_id": channel.channel_id,
                    "notification_id": notification_id,
                    "attempt": attempt,
                    "error": failure,
                    "delay_s": round(delay, 3),
                },
            )
            self._sleep(delay)
            waited += delay

    def _vetted_addresses(self, url: str, label: str) -> list[str]:
        """The addresses this attempt may connect to; a refused target is a permanent failure, found
        before any socket is opened."""
        allow = self._settings.allow_loopback_channels
        problem = channel_url_problem(url, allow_loopback=allow)
        if problem is not None:
            raise DeliveryError(f"{label}: target refused: {problem}", permanent=True)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = list(self._resolve(parts.hostname or "", port))
        problem = channel_url_problem(url, allow_loopback=allow, addresses=addresses)
        if problem is not None:
            raise DeliveryError(f"{label}: target refused: {problem}", permanent=True)
        return addresses
