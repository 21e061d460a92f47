"""Rule and channel vetting at registration (pure): what a customer registers cannot hurt anyone else.

Customer patterns run inside the shared parser. At registration a rule must compile under `regex`,
stay within size limits (per rule and per customer), and survive a probe: each pattern is searched,
under a time bound, in adversarial lines built from its own literals and from the characters
catastrophic backtracking feeds on (long runs of one character, separators, near-misses with the
last character missing). A pattern that needs longer than the bound on any of them is rejected with
the input that showed it, e.g. `^(.*?,){11}P` on a line of commas. The run-time bounds of
`pipeline.matching` still apply to whatever slips through.

Channel targets must be https URLs of public hosts; loopback, link-local (169.254.169.254), private
and other non-global addresses and obviously internal names are refused. Registration checks the URL
as written (no DNS lookups); delivery checks it again right before connecting, together with every
address the host resolves to then (`channel_url_problem(..., addresses=...)`), and connects only to
those. A URL is a secret (Slack webhooks carry their token in the path), so no message here ever
contains it.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import regex

from pipeline.errors import RejectedError
from pipeline.matching import compile_rule
from pipeline.models import Channel, ChannelType, Customer, Rule

__all__ = [
    "ProbeInput",
    "VettingLimits",
    "probe_inputs",
    "vet_channel",
    "vet_customer",
    "vet_rule",
    "vet_rules",
]

_METACHARACTERS = frozenset("\\.^$*+?{}[]()|")
_RUN_CHARACTERS = "a0 ,=:;/-._\t\"'x"
"""Characters whose long runs exercise `.*`, `\\w+`, `\\d+`, `\\s*` and separator-driven groups."""
_TERMINATORS = ("", "!", "\x00", "\n")
_SEPARATED = ("a,", "a ", "a=", "a:", "a;", "a|", "a/", "a\t", "1,", "1 ", "ab")
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan", ".intranet")
_INTERNAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "instance-data"})
_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True, slots=True)
class VettingLimits:
    """What one rule, one customer and the probe may cost; `RulesSettings` builds it from the environment."""

    max_pattern_chars: int = 1024
    max_patterns_per_rule: int = 8
    max_log_groups_per_rule: int = 20
    max_rules_per_customer: int = 100
    max_pattern_chars_per_customer: int = 32_768
    max_channels_per_customer: int = 20
    probe_timeout_ms: int = 50
    """A pattern slower than this on any probe line is rejected (the parser's own bound is 100 ms/line)."""
    probe_line_chars: int = 2048
    allow_loopback_channels: bool = False
    """Local development only: lets a webhook point at 127.0.0.1 / localhost (http or https)."""


@dataclass(frozen=True, slots=True)
class ProbeInput:
    description: str
    text: str


def _literals(pattern: str) -> list[str]:
    """Runs of literal characters in a pattern (escaped punctuation included), longest first."""
    runs: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            following = pattern[index + 1]
            if not following.isalnum():
                current.append(following)
            elif current:
                runs.append("".join(current))
                current = []
            index += 2
            continue
        if char in _METACHARACTERS:
            if current:
                runs.append("".join(current))
                current = []
        else:
            current.append(char)
        index += 1
    if current:
        runs.append("".join(current))
    unique = sorted({run for run in runs if run.strip()}, key=lambda run: (-len(run), run))
    return unique[:8]


def probe_inputs(pattern: str, line_chars: int) -> Iterator[ProbeInput]:
    """Adversarial lines for one pattern: runs, separated runs, and near-misses of its own literals."""
    literals = _literals(pattern)
    characters = dict.fromkeys(_RUN_CHARACTERS + "".join(sorted({c for literal in literals for c in literal})))
    for char in characters:
        for terminator in _TERMINATORS:
            yield ProbeInput(f"{line_chars} x {char!r}{' then ' + repr(terminator) if terminator else ''}",
                             char * line_chars + terminator)  # fmt: skip
    for unit in _SEPARATED:
        for terminator in ("", "!"):
            yield ProbeInput(f"{unit!r} repeated{' then ' + repr(terminator) if terminator else ''}",
                             unit * (line_chars // len(unit)) + terminator)  # fmt: skip
    for literal in literals:
        near = literal[:-1] or literal
        repeats = max(1, line_chars // (len(literal) + 1))
        yield ProbeInput(f"literal {literal!r} repeated", literal * repeats)
        yield ProbeInput(f"near-miss {near!r} repeated", near * repeats)
        yield ProbeInput(f"literal {literal!r} and separators", (literal + ",") * repeats)
        yield ProbeInput(f"literal {literal!r} then a run", literal + "a" * line_chars)
        yield ProbeInput(f"literal {literal!r} then a run of spaces", literal + " " * line_chars + "!")
        for char in sorted(set(literal))[:4]:
            yield ProbeInput(f"literal {literal!r} then a run of {char!r}", literal + char * line_chars + "\x00")


def _reject(problems: list[str]) -> RejectedError:
    return RejectedError("; ".join(problems), problems=problems)


def _probe(compiled: regex.Pattern[str], pattern: str, limits: VettingLimits, clock: Callable[[], float]) -> str | None:
    """Why the pattern is too slow, or None."""
    timeout_s = limits.probe_timeout_ms / 1000
    for probe in probe_inputs(pattern, limits.probe_line_chars):
        started = clock()
        try:
            compiled.search(probe.text, timeout=timeout_s)
        except TimeoutError:
            return (
                f"backtracks catastrophically: a search took over {limits.probe_timeout_ms} ms on "
                f"a line of {len(probe.text)} characters ({probe.description})"
            )
        if clock() - started > timeout_s:
            return f"too slow: over {limits.probe_timeout_ms} ms on a line of {len(probe.text)} characters ({probe.description})"
    return None


def vet_rule(rule: Rule, limits: VettingLimits, *, clock: Callable[[], float] = time.perf_counter) -> None:
    """Raise `RejectedError` listing every reason `rule` may not be registered as is."""
    problems: list[str] = []
    if len(rule.patterns) > limits.max_patterns_per_rule:
        problems.append(f"patterns: {len(rule.patterns)} patterns, at most {limits.max_patterns_per_rule} allowed")
    if len(rule.log_groups) > limits.max_log_groups_per_rule:
        problems.append(f"log_groups: {len(rule.log_groups)} globs, at most {limits.max_log_groups_per_rule} allowed")
    for index, pattern in enumerate(rule.patterns):
        if len(pattern) > limits.max_pattern_chars:
            problems.append(f"patterns[{index}]: {len(pattern)} characters, at most {limits.max_pattern_chars} allowed")
    if problems:
        raise _reject(problems)
    try:
        compiled = compile_rule(rule)
    except regex.error as exc:
        raise _reject([f"patterns: does not compile: {exc}"]) from None
    for index, (pattern, compiled_pattern) in enumerate(zip(rule.patterns, compiled.patterns, strict=True)):
        if compiled_pattern.search("") is not None:
            problems.append(f"patterns[{index}] {pattern!r}: matches an empty line, so it would fire on every line")
            continue
        slow = _probe(compiled_pattern, pattern, limits, clock)
        if slow is not None:
            problems.append(f"patterns[{index}] {pattern!r}: {slow}")
    if problems:
        raise _reject(problems)


def vet_rules(rules: Sequence[Rule], customer: Customer, limits: VettingLimits) -> None:
    """Per-customer limits over the rules a customer would have, and channel references."""
    problems: list[str] = []
    if len(rules) > limits.max_rules_per_customer:
        problems.append(
            f"customer {customer.customer_id!r}: {len(rules)} rules, at most {limits.max_rules_per_customer}"
        )
    total = sum(len(pattern) for rule in rules for pattern in rule.patterns)
    if total > limits.max_pattern_chars_per_customer:
        problems.append(
            f"customer {customer.customer_id!r}: {total} pattern characters in all, "
            f"at most {limits.max_pattern_chars_per_customer}"
        )
    channels = {channel.channel_id for channel in customer.channels}
    for rule in rules:
        if rule.customer_id != customer.customer_id:
            problems.append(f"rule {rule.rule_id!r}: belongs to customer {rule.customer_id!r}")
        elif rule.channel not in channels:
            problems.append(f"rule {rule.rule_id!r}: channel {rule.channel!r} is not a channel of this customer")
    if problems:
        raise _reject(problems)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A literal address in any form a resolver would accept (`127.1`, `0x7f000001`, `[::1]`), or None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if all(part and part[0].isdigit() for part in host.split(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_loopback_host(host: str) -> bool:
    address = _address(host)
    if address is not None:
        return address.is_loopback
    return host in _LOOPBACK_NAMES or host.endswith(".localhost")


def _address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> str | None:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if allow_loopback and address.is_loopback:
        return None
    if not address.is_global or address.is_multicast:
        return "is not a public address (loopback, link-local, private or reserved)"
    return None


def channel_url_problem(url: str, *, allow_loopback: bool, addresses: Sequence[str] | None = None) -> str | None:
    """Why a webhook URL may not be used, without repeating any of it; None when it may.

    `addresses`: what the host resolves to right now (delivery passes them); every one must be
    public, so a name that resolves to 169.254.169.254 or 10.0.0.1 is refused like the literal.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "url is not a valid URL"
    if not host:
        return "url has no host"
    if allow_loopback and _is_loopback_host(host):
        problem = None if parts.scheme in ("http", "https") else "url must be an http(s) URL"
    elif parts.scheme != "https":
        return "url must use https"
    else:
        problem = _host_problem(host)
    if problem is not None or addresses is None:
        return problem
    if not addresses:
        return "url host resolves to no address"
    for text in addresses:
        try:
            resolved = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return "url host resolves to an unreadable address"
        why = _address_problem(resolved, allow_loopback=allow_loopback)
        if why is not None:
            return f"url host resolves to an address that {why}"
    return None


def _host_problem(host: str) -> str | None:
    address = _address(host)
    if address is not None:
        why = _address_problem(address, allow_loopback=False)
        return None if why is None else "url host is not a public address (loopback, link-local, private or reserved)"
    if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES) or "." not in host:
        return "url host is not a public host name"
    return None


_SNS_TOPIC_ARN = r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?"
_EVENT_BUS_NAME = r"[/\.\-_A-Za-z0-9]{1,256}"
_EVENT_BUS_ARN = r"arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/[/\.\-_A-Za-z0-9]{1,256}"
_DETAIL_TYPE = r"[\x20-\x7e]{1,128}"


def vet_channel(channel: Channel, limits: VettingLimits) -> None:
    """Raise `RejectedError` when the channel's target is not a public https endpoint, an SNS topic
    or an EventBridge bus."""
    problems: list[str] = []
    if channel.type in (ChannelType.SLACK, ChannelType.WEBHOOK):
        problem = channel_url_problem(channel.url or "", allow_loopback=limits.allow_loopback_channels)
        if problem is not None:
            problems.append(problem)
    elif channel.type is ChannelType.SNS and not regex.fullmatch(_SNS_TOPIC_ARN, channel.topic_arn or ""):
        problems.append("topic_arn is not an SNS topic ARN")
    elif channel.type is ChannelType.EVENTBRIDGE:
        bus = channel.bus or ""
        if not (regex.fullmatch(_EVENT_BUS_ARN, bus) or (regex.fullmatch(_EVENT_BUS_NAME, bus) and ":" not in bus)):
            problems.append("bus is not an EventBridge event bus name or ARN")
        if channel.detail_type is not None and not regex.fullmatch(_DETAIL_TYPE, channel.detail_type):
            problems.append("detail_type must be 1 to 128 printable ASCII characters")
    if channel.secret is not None and (len(channel.secret) < 16 or any(c.isspace() for c in channel.secret)):
        problems.append("secret must be at least 16 characters without whitespace")
    if problems:
        raise _reject([f"channel {channel.channel_id!r}: {problem}" for problem in problems])


def vet_customer(customer: Customer, limits: VettingLimits) -> None:
    """Every channel of the customer, and how many there are."""
    problems: list[str] = []
    if len(customer.channels) > limits.max_channels_per_customer:
        problems.append(f"channels: {len(customer.channels)}, at most {limits.max_channels_per_customer} allowed")
    ids = [channel.channel_id for channel in customer.channels]
    problems.extend(f"channels: duplicate channel_id {d!r}" for d in sorted({i for i in ids if ids.count(i) > 1}))
    for channel in customer.channels:
        try:
            vet_channel(channel, limits)
        except RejectedError as exc:
            problems.extend(exc.problems)
    if problems:
        raise _reject(problems)
