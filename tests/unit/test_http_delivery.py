"""HTTP delivery's rules without a network: re-vetting before any connection, what is retried and
how long it waits (`Retry-After`, full-jitter backoff, the in-line bound)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from pipeline.adapters.channels.http import HttpDelivery, HttpResponse, is_retryable_status, parse_retry_after
from pipeline.config import DeliverySettings
from pipeline.errors import DeliveryError
from pipeline.models import Channel, ChannelType

NOW = 1_800_000_000.0
SETTINGS = DeliverySettings(
    delivery_timeout_s=1.0,
    delivery_max_attempts=4,
    delivery_backoff_s=0.5,
    delivery_backoff_cap_s=4.0,
    delivery_max_wait_s=5.0,
)


class ScriptedPoster:
    """The socket layer's stand-in: answers in order, remembers where it was asked to connect."""

    def __init__(self, *answers: HttpResponse | OSError) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[Sequence[str], Mapping[str, str]]] = []

    def post(
        self, url: str, addresses: Sequence[str], body: bytes, headers: Mapping[str, str], *, timeout_s: float
    ) -> HttpResponse:
        assert timeout_s == SETTINGS.delivery_timeout_s
        self.calls.append((addresses, headers))
        answer = self.answers.pop(0) if self.answers else HttpResponse(200)
        if isinstance(answer, OSError):
            raise answer
        return answer


class Resolver:
    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses) or ["93.184.215.14"]
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.addresses


def _delivery(
    poster: ScriptedPoster,
    resolver: Resolver | None = None,
    settings: DeliverySettings = SETTINGS,
    waits: list[float] | None = None,
) -> HttpDelivery:
    return HttpDelivery(
        poster,
        settings,
        resolver=resolver or Resolver(),
        sleep=(waits if waits is not None else []).append,
        now=lambda: NOW,
        rng=lambda: 1.0,
    )


def _hook(url: str = "https://hooks.example.com/T/s3cr3t") -> Channel:
    return Channel(channel_id="hook", type=ChannelType.WEBHOOK, url=url)


def _post(delivery: HttpDelivery, channel: Channel | None = None) -> None:
    delivery.post(channel or _hook(), "n-1", b"{}", lambda: {"X-Logfan-Notification-Id": "n-1"})


# -- re-vetting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/hook",
        "https://localhost/hook",
        "http://127.0.0.1:8080/hook",
        "http://hooks.example.com/hook",
    ],
)
def test_a_non_public_target_is_refused_before_resolving_or_connecting(url: str) -> None:
    poster, resolver = ScriptedPoster(), Resolver()

    with pytest.raises(DeliveryError) as raised:
        _post(_delivery(poster, resolver), _hook(url))

    assert raised.value.permanent
    assert "target refused" in str(raised.value)
    assert url not in str(raised.value)
    assert (poster.calls, resolver.asked) == ([], [])


@pytest.mark.parametrize("address", ["169.254.169.254", "10.1.2.3", "127.0.0.1", "::1", "fd00::1", "::ffff:10.0.0.1"])
def test_a_public_name_resolving_to_an_internal_address_is_refused_before_connecting(address: str) -> None:
    # Given a public-looking name whose DNS answer now points inside (rebinding)
    poster = ScriptedPoster()

    # When delivering
    with pytest.raises(DeliveryError) as raised:
        _post(_delivery(poster, Resolver("93.184.215.14", address)))

    # Then no connection is made at all
    assert raised.value.permanent
    assert "resolves to an address that is not a public address" in str(raised.value)
    assert poster.calls == []


def test_the_connection_goes_to_the_addresses_that_were_vetted() -> None:
    poster = ScriptedPoster()

    _post(_delivery(poster, Resolver("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")))

    ((addresses, _),) = poster.calls
    assert list(addresses) == ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]


def test_loopback_is_allowed_only_with_the_local_setting() -> None:
    poster = ScriptedPoster()
    local = SETTINGS.model_copy(update={"allow_loopback_channels": True})

    _post(_delivery(poster, Resolver("127.0.0.1"), local), _hook("http://localhost:8080/hook"))

    assert len(poster.calls) == 1


# -- retries ----------------------------------------------------------------------------------


def test_server_errors_and_network_errors_are_retried_with_growing_full_jitter_backoff() -> None:
    # Given a receiver that fails three times in three ways, then answers
    poster = ScriptedPoster(HttpResponse(503), ConnectionResetError(), HttpResponse(408))
    waits: list[float] = []

    # When delivering (the jitter draws its maximum)
    receipt = _delivery(poster, waits=waits).post(_hook(), "n-1", b"{}", lambda: {"X-Logfan-Notification-Id": "n-1"})

    # Then the waits double from the base, and every attempt carried the same id
    assert waits == [0.5, 1.0, 2.0]
    assert receipt.attempts == 4
    assert {headers["X-Logfan-Notification-Id"] for _, headers in poster.calls} == {"n-1"}


def test_a_backoff_beyond_the_inline_wait_hands_the_notification_back() -> None:
    # Given a receiver failing every time, and 1.2 s of in-line waiting allowed
    poster = ScriptedPoster(HttpResponse(500), HttpResponse(500), HttpResponse(500), HttpResponse(500))
    waits: list[float] = []
    settings = SETTINGS.model_copy(update={"delivery_max_wait_s": 1.2})

    # When delivering: 0.5 s, then 1 s more would pass the bound
    with pytest.raises(DeliveryError) as raised:
        _post(_delivery(poster, settings=settings, waits=waits))

    # Then it stops waiting and hands back a transient failure (the caller retries it later)
    assert waits == [0.5]
    assert "HTTP 500 (2 attempts; no time left to retry in-line)" in str(raised.value)
    assert not raised.value.permanent
    assert raised.value.retry_after_s is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_client_errors_are_permanent(status: int) -> None:
    poster = ScriptedPoster(HttpResponse(status))

    with pytest.raises(DeliveryError) as raised:
        _post(_delivery(poster))

    assert raised.value.permanent
    assert len(poster.calls) == 1


def test_retry_after_as_an_http_date_is_honoured() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 3, tz=UTC), usegmt=True)
    poster = ScriptedPoster(HttpResponse(503, retry_after=when))
    waits: list[float] = []

    _post(_delivery(poster, waits=waits))

    assert waits == [3.0]


def test_retry_after_beyond_what_is_left_of_the_inline_wait_is_handed_back() -> None:
    # Given a receiver asking for 2 s, then for 4 s more: 6 s in all, over the 5 s bound
    poster = ScriptedPoster(HttpResponse(429, retry_after="2"), HttpResponse(429, retry_after="4"))
    waits: list[float] = []

    with pytest.raises(DeliveryError) as raised:
        _post(_delivery(poster, waits=waits))

    assert waits == [2.0]
    assert raised.value.retry_after_s == 4.0
    assert not raised.value.permanent


def test_the_last_attempts_retry_after_is_passed_on() -> None:
    settings = SETTINGS.model_copy(update={"delivery_max_attempts": 1})

    with pytest.raises(DeliveryError) as raised:
        _post(_delivery(ScriptedPoster(HttpResponse(503, retry_after="30")), settings=settings))

    assert raised.value.retry_after_s == 30.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        (" 17 ", 17.0),
        ("soon", None),
        ("-5", None),
        (format_datetime(datetime.fromtimestamp(NOW + 90, tz=UTC), usegmt=True), 90.0),
        (format_datetime(datetime.fromtimestamp(NOW - 90, tz=UTC), usegmt=True), 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(("status", "retryable"), [(408, True), (429, True), (500, True), (503, True), (599, True),
                                                   (400, False), (404, False), (301, False), (200, False)])  # fmt: skip
def test_which_statuses_are_worth_retrying(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
