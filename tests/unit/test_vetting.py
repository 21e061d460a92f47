"""Rule and channel vetting at registration: what blows up or points inside is refused, with why."""

from __future__ import annotations

import pytest

from pipeline.errors import RejectedError
from pipeline.models import Channel, ChannelType, Customer, Rule
from pipeline.vetting import (
    VettingLimits,
    channel_url_problem,
    probe_inputs,
    vet_channel,
    vet_customer,
    vet_rule,
    vet_rules,
)

LIMITS = VettingLimits()
SECRET = "T000/B000/s3cr3t-t0ken"


def _rule(*patterns: str, rule_id: str = "r", channel: str = "ops", **extra: object) -> Rule:
    return Rule.model_validate(
        {"customer_id": "acme", "rule_id": rule_id, "patterns": list(patterns), "channel": channel, **extra}
    )


@pytest.mark.parametrize(
    "pattern",
    [
        "UserTier=BigBucksCustomer",
        r"(?<=Max Memory Used: )\d{4,} MB",
        r"Task timed out after \d+(\.\d+)? seconds",
        r"(?i)error.*timeout",
        r'"level":\s*"(?:ERROR|FATAL)"',
        r"\p{Lu}{3,}Exception",
    ],
)
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    vet_rule(_rule(pattern), LIMITS)


@pytest.mark.parametrize(
    ("pattern", "shown_by"),
    [
        (r"^(.*?,){11}P", "x ','"),
        (r"(a+)+$", "x 'a'"),
        (r"(x+x+)+y", "x 'x'"),
    ],
)
def test_catastrophic_patterns_are_rejected_naming_the_input_that_showed_it(pattern: str, shown_by: str) -> None:
    # Given a pattern that backtracks exponentially
    rule = _rule("ERROR", pattern)

    # When it is vetted
    with pytest.raises(RejectedError) as raised:
        vet_rule(rule, LIMITS)

    # Then the reason names the pattern, the bound and the adversarial line
    (problem,) = raised.value.problems
    assert problem.startswith(f"patterns[1] {pattern!r}: backtracks catastrophically")
    assert "over 50 ms" in problem
    assert shown_by in problem


def test_a_pattern_that_does_not_compile_is_rejected() -> None:
    with pytest.raises(RejectedError, match=r"does not compile.*\(\[unclosed"):
        vet_rule(_rule("([unclosed"), LIMITS)


def test_a_pattern_matching_every_line_is_rejected() -> None:
    with pytest.raises(RejectedError, match="matches an empty line"):
        vet_rule(_rule("ERROR|"), LIMITS)


def test_length_and_count_limits_per_rule() -> None:
    limits = VettingLimits(max_pattern_chars=10, max_patterns_per_rule=2)

    with pytest.raises(RejectedError) as raised:
        vet_rule(_rule("a" * 11, "b", "c"), limits)

    assert raised.value.problems == [
        "patterns: 3 patterns, at most 2 allowed",
        "patterns[0]: 11 characters, at most 10 allowed",
    ]


def test_limits_per_customer_and_channel_references() -> None:
    # Given a customer with one channel and a limit of two rules
    customer = Customer(
        customer_id="acme",
        channels=[Channel(channel_id="ops", type=ChannelType.SNS, topic_arn="arn:aws:sns:us-east-1:111122223333:t")],
    )
    limits = VettingLimits(max_rules_per_customer=2, max_pattern_chars_per_customer=8)

    # When three rules, one on an unknown channel and too many characters in all, are vetted
    with pytest.raises(RejectedError) as raised:
        vet_rules(
            [_rule("aaaa", rule_id="a"), _rule("bbbb", rule_id="b"), _rule("c", rule_id="c", channel="nope")],
            customer,
            limits,
        )

    # Then every problem is named
    assert raised.value.problems == [
        "customer 'acme': 3 rules, at most 2",
        "customer 'acme': 9 pattern characters in all, at most 8",
        "rule 'c': channel 'nope' is not a channel of this customer",
    ]


def test_probe_inputs_include_near_misses_of_the_patterns_own_literals() -> None:
    descriptions = [probe.description for probe in probe_inputs("UserTier=BigBucks", 64)]

    assert "literal 'UserTier=BigBucks' repeated" in descriptions
    assert "near-miss 'UserTier=BigBuck' repeated" in descriptions
    assert all(len(probe.text) <= 64 + 64 for probe in probe_inputs("UserTier=BigBucks", 64))


@pytest.mark.parametrize(
    "url",
    [
        f"https://127.0.0.1/{SECRET}",
        f"https://localhost:8443/{SECRET}",
        f"https://169.254.169.254/latest/meta-data/{SECRET}",
        f"https://10.1.2.3/{SECRET}",
        f"https://192.168.0.10/{SECRET}",
        f"https://172.16.5.4/{SECRET}",
        f"https://[::1]/{SECRET}",
        f"https://[fd00::1]/{SECRET}",
        f"https://[::ffff:127.0.0.1]/{SECRET}",
        f"https://2130706433/{SECRET}",
        f"https://0x7f.1/{SECRET}",
        f"https://0.0.0.0/{SECRET}",
        f"https://metadata.google.internal/{SECRET}",
        f"https://printer.local/{SECRET}",
        f"https://intranet/{SECRET}",
        f"https://hooks.slack.com@127.0.0.1/{SECRET}",
        f"http://hooks.slack.com/services/{SECRET}",
    ],
)
def test_webhooks_to_non_public_targets_are_refused_without_repeating_the_url(url: str) -> None:
    channel = Channel(channel_id="hook", type=ChannelType.WEBHOOK, url=url)

    with pytest.raises(RejectedError) as raised:
        vet_channel(channel, LIMITS)

    assert SECRET not in str(raised.value)
    assert "hook" in str(raised.value)


@pytest.mark.parametrize(
    "url", [f"https://hooks.slack.com/services/{SECRET}", "https://alerts.acme.example/logfan", "https://8.8.8.8/x"]
)
def test_https_webhooks_to_public_hosts_are_accepted(url: str) -> None:
    vet_channel(Channel(channel_id="hook", type=ChannelType.SLACK, url=url), LIMITS)


def test_loopback_is_allowed_only_with_the_local_development_setting() -> None:
    url = "http://127.0.0.1:9000/hook"

    assert channel_url_problem(url, allow_loopback=False) == "url must use https"
    assert channel_url_problem(url, allow_loopback=True) is None
    assert channel_url_problem("http://localhost/hook", allow_loopback=True) is None
    assert channel_url_problem("https://10.0.0.1/hook", allow_loopback=True) is not None


def test_sns_channels_need_a_topic_arn_and_customers_a_bounded_number_of_channels() -> None:
    bad = Channel(channel_id="t", type=ChannelType.SNS, topic_arn="arn:aws:s3:::bucket")
    customer = Customer(
        customer_id="acme",
        channels=[Channel(channel_id=f"c{i}", type=ChannelType.WEBHOOK, url="https://a.example/x") for i in range(3)],
    )

    with pytest.raises(RejectedError, match="not an SNS topic ARN"):
        vet_channel(bad, LIMITS)
    with pytest.raises(RejectedError, match="channels: 3, at most 2 allowed"):
        vet_customer(customer, VettingLimits(max_channels_per_customer=2))


# -- re-vetting at delivery: what the host resolves to -----------------------------------------


@pytest.mark.parametrize(
    ("addresses", "problem"),
    [
        (["93.184.215.14"], None),
        (["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"], None),
        (["169.254.169.254"], "resolves to an address that is not a public address"),
        (["93.184.215.14", "10.0.0.7"], "resolves to an address that is not a public address"),
        (["::ffff:192.168.1.1"], "resolves to an address that is not a public address"),
        (["fe80::1%eth0"], "resolves to an address that is not a public address"),
        ([], "resolves to no address"),
        (["not-an-address"], "unreadable address"),
    ],
)
def test_every_address_a_host_resolves_to_must_be_public(addresses: list[str], problem: str | None) -> None:
    found = channel_url_problem(f"https://hooks.example.com/{SECRET}", allow_loopback=False, addresses=addresses)

    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and SECRET not in found


def test_a_resolved_loopback_address_passes_only_with_the_local_setting() -> None:
    url = "http://localhost:9000/hook"

    assert channel_url_problem(url, allow_loopback=True, addresses=["127.0.0.1", "::1"]) is None
    assert channel_url_problem(url, allow_loopback=False, addresses=["127.0.0.1"]) == "url must use https"
    assert channel_url_problem("https://hooks.example.com/x", allow_loopback=False, addresses=["127.0.0.1"])


# -- EventBridge and webhook secrets -----------------------------------------------------------


@pytest.mark.parametrize(
    "bus", ["acme-alerts", "default", "arn:aws:events:us-east-1:111122223333:event-bus/acme-alerts"]
)
def test_event_buses_by_name_or_arn_are_accepted(bus: str) -> None:
    vet_channel(Channel(channel_id="bus", type=ChannelType.EVENTBRIDGE, bus=bus, detail_type="acme.alert"), LIMITS)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"bus": "arn:aws:sns:us-east-1:111122223333:topic"}, "not an EventBridge event bus"),
        ({"bus": "bad bus name"}, "not an EventBridge event bus"),
        ({"bus": "acme", "detail_type": "tab\there"}, "detail_type must be"),
    ],
)
def test_bad_event_buses_are_refused(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(RejectedError, match=problem):
        vet_channel(Channel(channel_id="bus", type=ChannelType.EVENTBRIDGE, **fields), LIMITS)


def test_a_webhook_secret_needs_no_whitespace() -> None:
    channel = Channel(channel_id="hook", type=ChannelType.WEBHOOK, url="https://a.example/x", secret="sixteen chars ok")

    with pytest.raises(RejectedError, match="secret must be at least 16 characters without whitespace") as raised:
        vet_channel(channel, LIMITS)

    assert "sixteen chars ok" not in str(raised.value)
