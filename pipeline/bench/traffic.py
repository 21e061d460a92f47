"""Realistic CloudWatch Logs traffic and customer rules for the benchmark, deterministic by seed.

What a multi-tenant log pipeline really carries: Lambda runtime framing (START / END / REPORT) from
Python, Node.js and .NET functions, Powertools JSON lines, nginx access lines, Java app-server
lines and multi-line tracebacks, about 100 events per subscription message (one log stream per
Kinesis record, as CloudWatch Logs writes it). Each customer gets rules of the shapes people
write (literal phrases, alternations, `all` rules, case-insensitive rules, lookbehind, log-group
scopes); a chosen fraction of events is an alert line one of those rules fires on, and the rest
is ordinary traffic that shares their vocabulary (ERROR lines, REPORT lines) without firing them.
"""

from __future__ import annotations

import fnmatch
import json
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.models import Channel, ChannelType, Customer, Rule

__all__ = ["BenchRule", "Tenant", "TrafficGenerator", "cloudwatch_gzip", "make_rules", "make_tenants"]

START_MS = 1_795_874_400_000
CHANNEL = "bench-webhook"


@dataclass(frozen=True, slots=True)
class BenchRule:
    """A rule and a maker of a log line it fires on (with the log group that line belongs in)."""

    rule: Rule
    alert: Callable[[random.Random], tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Tenant:
    customer: Customer
    rules: tuple[BenchRule, ...]

    @property
    def customer_id(self) -> str:
        return self.customer.customer_id


def _hex(rng: random.Random, length: int) -> str:
    return f"{rng.getrandbits(4 * length):0{length}x}"


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    minutes, sec = divmod(seconds % 86_400, 60)
    hours, minute = divmod(minutes, 60)
    return f"2026-11-28T{hours:02d}:{minute:02d}:{sec:02d}.{millis:03d}Z"


# -- rule shapes: (patterns, match, ignore_case, log group globs) and the alert line each fires on --------------------


def _rule_shape(index: int) -> tuple[list[str], str, bool, list[str], Callable[[random.Random], tuple[str, str]]]:
    """The index-th rule a customer writes; `index` makes its literal parts unique to it."""
    n = index
    svc = f"svc{n:03d}"
    kind = n % 10
    if kind == 0:
        return (
            [rf"Task timed out after \d+(\.\d+)? seconds.*{svc}"],
            "any",
            False,
            [],
            lambda r: (
                f"{_iso(START_MS)} {_uuid(r)} Task timed out after {r.randint(3, 900)}.02 seconds fn={svc}",
                "/aws/lambda/x",
            ),
        )
    if kind == 1:
        return (
            [rf'"level":"ERROR".*"service":"{svc}"', "CreditCardExpired|InsufficientFunds"],
            "all",
            False,
            ["/aws/lambda/*"],
            lambda _r: (
                json.dumps(
                    {"level": "ERROR", "message": "Payment declined", "service": svc, "reason": "CreditCardExpired"}
                ),
                "/aws/lambda/payments",
            ),
        )
    if kind == 2:
        return (
            [rf"\bpayment\s+(failed|declined)\b.*\border={svc}-\d+"],
            "any",
            True,
            [],
            lambda r: (
                f"WARN  [exec-{r.randint(1, 9)}] c.i.PaymentService - Payment FAILED order={svc}-{r.randint(1, 99999)}",
                "/app/server",
            ),
        )
    if kind == 3:
        return (
            [rf'"(GET|POST) /{svc}/[^"]*" 5\d\d \d+ '],
            "any",
            False,
            ["/ecs/*"],
            lambda r: (
                f'10.0.0.{r.randint(2, 250)} - - [28/Nov/2026:14:00:17 +0000] "POST /{svc}/checkout HTTP/1.1" 503 157 "-" "curl/8.4"',
                "/ecs/web",
            ),
        )
    if kind == 4:
        return (
            [rf"System\.\w+Exception\b.*\n.*\bat {svc.capitalize()}\."],
            "any",
            False,
            [],
            lambda r: (
                f"fail\tSystem.InvalidOperationException: Sequence contains no elements\n   at {svc.capitalize()}.Handler.Run() in /src/H.cs:line {r.randint(1, 300)}",
                "/aws/lambda/billing",
            ),
        )
    if kind == 5:
        return (
            [rf"(?<=Max Memory Used: )\d{{4,}} MB.*fn={svc}\b"],
            "any",
            False,
            [],
            lambda r: (
                f"REPORT RequestId: {_uuid(r)}\tDuration: 10.00 ms\tMax Memory Used: {r.randint(1000, 9999)} MB fn={svc}",
                "/aws/lambda/x",
            ),
        )
    if kind == 6:
        return (
            [rf"(?m)^\[ERROR\].*{svc}", r"(?m)^Traceback \(most recent call last\):"],
            "all",
            False,
            [],
            lambda _r: (
                f"[ERROR] KeyError: '{svc}'\nTraceback (most recent call last):\n  File \"/var/task/app.py\", line 4, in handler",
                "/aws/lambda/x",
            ),
        )
    if kind == 7:
        return (
            [rf"\bstatus=5\d\d\b.*upstream={svc}", rf"upstream={svc}.*timeout"],
            "any",
            False,
            [],
            lambda _r: (f'level=error msg="upstream call failed" upstream={svc} status=504 error=timeout', "/ecs/app"),
        )
    if kind == 8:
        return (
            [rf"OutOfMemoryError.*{svc}|{svc}.*heap space"],
            "any",
            True,
            [],
            lambda _r: (f"ERROR [main] java.lang.OutOfMemoryError: Java heap space in {svc.upper()}", "/app/server"),
        )
    return (
        [rf"\bERROR\b.*\b{svc}\b.*\b(?:deadlock|lock wait timeout)\b"],
        "any",
        False,
        [],
        lambda r: (
            f"{_iso(START_MS)}\t{_uuid(r)}\tERROR\t{svc} lock wait timeout exceeded; try restarting transaction",
            "/aws/lambda/x",
        ),
    )


def make_rules(customer_id: str, count: int) -> tuple[BenchRule, ...]:
    rules = []
    for index in range(count):
        patterns, match, ignore_case, globs, alert = _rule_shape(index)
        rule = Rule(
            customer_id=customer_id,
            rule_id=f"r{index:03d}",
            patterns=patterns,
            match=match,
            ignore_case=ignore_case,
            log_groups=globs,
            channel=CHANNEL,
        )
        rules.append(BenchRule(rule, alert))
    return tuple(rules)


def make_tenants(customers: int, rules_per_customer: int) -> list[Tenant]:
    """`customers` tenants with two AWS accounts each and the same rule shapes."""
    tenants = []
    for index in range(customers):
        customer_id = f"cust{index:03d}"
        accounts = [f"{100_000_000_000 + 2 * index:012d}", f"{100_000_000_001 + 2 * index:012d}"]
        customer = Customer(
            customer_id=customer_id,
            name=f"Customer {index}",
            accounts=accounts,
            channels=[Channel(channel_id=CHANNEL, type=ChannelType.WEBHOOK, url="https://hooks.example.com/bench")],
        )
        tenants.append(Tenant(customer, make_rules(customer_id, rules_per_customer)))
    return tenants


# -- ordinary traffic ------------------------------------------------------------------------------------------------

_PATHS = ["/api/cart", "/api/orders?page=2", "/static/app.3f9c.js", "/healthz", "/api/checkout", "/"]
_WORDS = ["inventory", "ledger", "invoice", "session", "checkout", "catalog", "shipping", "profile"]


def _python(r: random.Random, at: int, request_id: str) -> str:
    level = r.choices(["INFO", "WARNING", "ERROR"], [90, 8, 2])[0]
    word = r.choice(_WORDS)
    return f"[{level}]\t{_iso(at)}\t{request_id}\tloaded {r.randint(1, 500)} {word} rows from ddb in {r.random() * 90:.2f} ms\n"


def _node(r: random.Random, at: int, request_id: str) -> str:
    level = r.choices(["INFO", "WARN", "ERROR"], [90, 8, 2])[0]
    return f"{_iso(at)}\t{request_id}\t{level}\t{r.choice(['GET', 'POST'])} {r.choice(_PATHS)} items={r.randint(0, 9)} total={r.random() * 200:.2f}\n"


def _powertools(r: random.Random, at: int, request_id: str) -> str:
    record = {
        "level": r.choices(["INFO", "WARNING", "ERROR"], [90, 8, 2])[0],
        "location": f"handler:{r.randint(10, 300)}",
        "message": f"{r.choice(_WORDS)} updated",
        "timestamp": _iso(at),
        "service": f"svc{r.randint(900, 999)}",
        "cold_start": False,
        "function_request_id": request_id,
        "xray_trace_id": f"1-{at // 1000:08x}-{_hex(r, 24)}",
        "UserTier": r.choice(["Standard", "Gold", "BigBucksCustomer"]),
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


def _nginx(r: random.Random, _at: int, _request_id: str) -> str:
    status = r.choices([200, 201, 304, 404], [80, 5, 10, 5])[0]
    return (
        f'10.0.{r.randint(0, 3)}.{r.randint(2, 250)} - - [28/Nov/2026:14:00:17 +0000] "{r.choice(["GET", "POST"])} '
        f'{r.choice(_PATHS)} HTTP/1.1" {status} {r.randint(0, 90_000)} "-" "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6)" '
        f"rt={r.random():.3f}"
    )


def _java(r: random.Random, at: int, _request_id: str) -> str:
    level = r.choices(["INFO ", "WARN ", "ERROR"], [90, 8, 2])[0]
    return f"{_iso(at)} {level} [http-nio-8080-exec-{r.randint(1, 20)}] c.i.{r.choice(_WORDS)}.Service - handled in {r.randint(1, 900)} ms"


def _traceback(r: random.Random, at: int, request_id: str) -> str:
    frames = "".join(
        f'  File "/var/task/{r.choice(_WORDS)}.py", line {r.randint(1, 400)}, in {r.choice(_WORDS)}\n    x = y[{r.randint(0, 9)}]\n'
        for _ in range(r.randint(2, 5))
    )
    return f"[WARNING]\t{_iso(at)}\t{request_id}\tretrying after error\nTraceback (most recent call last):\n{frames}IndexError: list index out of range\n"


_SOURCES: list[tuple[str, Callable[[random.Random, int, str], str], bool]] = [
    ("/aws/lambda/payments", _powertools, True),
    ("/aws/lambda/checkout-api", _node, True),
    ("/aws/lambda/report-export", _python, True),
    ("/aws/lambda/billing-dotnet", _node, True),
    ("/ecs/web", _nginx, False),
    ("/app/server", _java, False),
]


@dataclass
class TrafficGenerator:
    """Subscription messages (the decoded JSON of Kinesis records) for `tenants`, deterministic by `seed`."""

    tenants: list[Tenant]
    seed: int = 7
    events_per_record: int = 100
    match_rate: float = 0.01
    unclaimed_share: float = 0.02
    """Records of an account no customer claims (trial accounts whose subscription outlived them)."""
    _rng: random.Random = field(init=False)
    _serial: int = field(init=False, default=0)
    _clock_ms: int = field(init=False, default=START_MS)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _event(self, message: str) -> dict[str, Any]:
        self._serial += 1
        self._clock_ms += self._rng.randint(0, 3)
        event_id = f"{self._clock_ms << 40 | self._serial:056d}"
        return {"id": event_id, "timestamp": self._clock_ms, "message": message}

    def message(self) -> dict[str, Any]:
        """One subscription message: ~`events_per_record` events of one log stream of one account."""
        r = self._rng
        unclaimed = r.random() < self.unclaimed_share
        tenant = r.choice(self.tenants)
        owner = "999900001111" if unclaimed else r.choice(tenant.customer.accounts)
        log_group, make_line, is_lambda = r.choice(_SOURCES)
        request_id = _uuid(r)
        events: list[dict[str, Any]] = []
        count = max(1, self.events_per_record + r.randint(-10, 10))
        alerts = [
            rule
            for rule in tenant.rules
            if not rule.rule.log_groups or any(fnmatch.fnmatchcase(log_group, g) for g in rule.rule.log_groups)
        ]
        for position in range(count):
            at = self._clock_ms
            if is_lambda and position % 25 == 0:
                request_id = _uuid(r)
                line = f"START RequestId: {request_id} Version: $LATEST\n"
            elif is_lambda and position % 25 == 24:
                line = (
                    f"REPORT RequestId: {request_id}\tDuration: {r.random() * 900:.2f} ms\tBilled Duration: 901 ms\t"
                    f"Memory Size: 1024 MB\tMax Memory Used: {r.randint(60, 990)} MB\t\n"
                )
            elif alerts and r.random() < self.match_rate:
                line, _ = r.choice(alerts).alert(r)
            elif r.random() < 0.01:
                line = _traceback(r, at, request_id)
            else:
                line = make_line(r, at, request_id)
            events.append(self._event(line))
        return {
            "messageType": "DATA_MESSAGE",
            "owner": owner,
            "logGroup": log_group,
            "logStream": f"2026/11/28/[$LATEST]{_hex(r, 32)}",
            "subscriptionFilters": ["logfan"],
            "logEvents": events,
        }

    def messages(self, count: int) -> Iterator[dict[str, Any]]:
        for _ in range(count):
            yield self.message()

    def lines(self, count: int) -> list[tuple[str, str]]:
        """(log group, message) pairs: the matching benchmark's corpus."""
        out: list[tuple[str, str]] = []
        while len(out) < count:
            document = self.message()
            out.extend((document["logGroup"], event["message"]) for event in document["logEvents"])
        return out[:count]


def cloudwatch_gzip(document: dict[str, Any], level: int = 6) -> bytes:
    """One gzip member as CloudWatch Logs writes it (no mtime, no name)."""
    data = json.dumps(document, separators=(",", ":")).encode()
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    return b"\x1f\x8b\x08" + bytes(7) + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
