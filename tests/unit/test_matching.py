"""The rule engine: what matches, and the time bounds that keep hostile patterns contained."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import regex

from pipeline.matching import CompiledRule, MatchLimits, RuleEngine, compile_rule
from pipeline.models import Rule
from tests import factories as f

LAMBDA_REPORT = (
    "REPORT RequestId: 8f5e Duration: 812.33 ms Billed Duration: 813 ms "
    "Memory Size: 2048 MB Max Memory Used: 1954 MB Init Duration: 402.11 ms"
)


def _engine(*rules: Rule, limits: MatchLimits | None = None, clock: Callable[[], float] | None = None) -> RuleEngine:
    compiled = [compile_rule(r) for r in rules]
    return RuleEngine(compiled, limits) if clock is None else RuleEngine(compiled, limits, clock=clock)


def _matched(engine: RuleEngine, messages: list[str], log_group: str = "/aws/lambda/checkout") -> list[str]:
    """The messages any rule matched, in order."""
    result = engine.match([f.stream_events(messages, log_group=log_group)])
    return [m.message for m in result.matches]


def _stepping_clock(step_s: float) -> Callable[[], float]:
    """A clock that advances by `step_s` every time it is read."""
    ticks = itertools.count()
    return lambda: next(ticks) * step_s


def test_match_any_needs_one_pattern_and_all_needs_every_pattern() -> None:
    # Given the same two patterns under `any` and under `all`
    messages = ["ERROR timeout", "ERROR disk full", "WARN timeout", "INFO ok"]
    any_rule = f.rule("acme", "any", "ERROR", "timeout", match="any")
    all_rule = f.rule("acme", "all", "ERROR", "timeout", match="all")

    # Then `any` matches a line with either and `all` only a line with both
    assert _matched(_engine(any_rule), messages) == ["ERROR timeout", "ERROR disk full", "WARN timeout"]
    assert _matched(_engine(all_rule), messages) == ["ERROR timeout"]


def test_patterns_are_case_sensitive_unless_the_rule_ignores_case() -> None:
    messages = ["Payment DECLINED", "payment declined", "payment ok"]

    assert _matched(_engine(f.rule("acme", "r", "payment declined")), messages) == ["payment declined"]
    assert _matched(_engine(f.rule("acme", "r", "payment declined", ignore_case=True)), messages) == [
        "Payment DECLINED",
        "payment declined",
    ]


def test_log_group_globs_scope_a_rule() -> None:
    # Given a rule for the payment Lambdas only
    engine = _engine(f.rule("acme", "r", "ERROR", log_groups=["/aws/lambda/payments-*", "/ecs/pay?"]))

    # Then it matches in the groups its globs name and nowhere else
    assert _matched(engine, ["ERROR x"], log_group="/aws/lambda/payments-api") == ["ERROR x"]
    assert _matched(engine, ["ERROR x"], log_group="/ecs/pay1") == ["ERROR x"]
    assert _matched(engine, ["ERROR x"], log_group="/aws/lambda/checkout") == []
    assert _matched(engine, ["ERROR x"], log_group="/AWS/LAMBDA/PAYMENTS-api") == []


def test_a_rule_without_log_groups_applies_everywhere() -> None:
    assert _matched(_engine(f.rule("acme", "r", "ERROR")), ["ERROR x"], log_group="/anything/at/all") == ["ERROR x"]


def test_lookbehind_matches_only_the_memory_used_above_a_threshold() -> None:
    # Given a rule on Lambda REPORT lines using more than 999 MB
    engine = _engine(f.rule("acme", "memory", r"(?<=Max Memory Used: )\d{4,} MB"))
    low = LAMBDA_REPORT.replace("1954 MB Init", "512 MB Init")

    # Then the 4-digit figure after "Max Memory Used" matches, the "Memory Size: 2048 MB" does not count
    assert _matched(engine, [LAMBDA_REPORT, low]) == [LAMBDA_REPORT]


def test_syntax_only_the_regex_module_has_works() -> None:
    # Variable-width lookbehind, possessive quantifiers and Unicode properties
    variable_lookbehind = _engine(f.rule("acme", "r", r"(?<=user=\w+ )denied"))
    possessive = _engine(f.rule("acme", "r", r"^\d++5"))
    greedy = _engine(f.rule("acme", "r", r"^\d+5"))
    letters = _engine(f.rule("acme", "r", r"^\p{L}+ failed$"))

    assert _matched(variable_lookbehind, ["user=alice denied", "user= denied", "denied"]) == ["user=alice denied"]
    assert _matched(possessive, ["12345"]) == []
    assert _matched(greedy, ["12345"]) == ["12345"]
    assert _matched(letters, ["Überweisung failed", "Transfer#2 failed"]) == ["Überweisung failed"]


def test_a_multi_line_message_is_one_event_searched_anywhere() -> None:
    # Given a stack trace logged as one event
    trace = 'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\nValueError: bad card'
    engine = _engine(f.rule("acme", "r", r"ValueError: \w+"))

    # When matched
    result = engine.match([f.stream_events([trace])])

    # Then the pattern is found on the third line, and the event matches once, whole
    assert [m.message for m in result.matches] == [trace]
    assert result.events == 1


def test_a_catastrophic_pattern_times_out_and_the_other_rules_still_match() -> None:
    # Given a backtracking bomb and an ordinary rule, both applying to the same line
    line = ",".join(["a"] * 30)
    engine = _engine(
        f.rule("acme", "bomb", r"^(.*?,){11}P"),
        f.rule("acme", "plain", r"a,a"),
        limits=MatchLimits(per_line_timeout_s=0.05, per_invocation_budget_s=5.0),
    )

    # When the line is matched
    result = engine.match([f.stream_events([line])])

    # Then the bomb records a timeout and no match, while the other rule matches
    assert result.stats["bomb"].timeouts == 1
    assert result.stats["bomb"].matches == 0
    assert result.stats["plain"].matches == 1
    assert [m.rule_id for m in result.matches] == ["plain"]
    assert result.timeouts == 1


def test_a_rule_that_spent_its_budget_is_skipped_for_the_rest_of_the_invocation() -> None:
    # Given a clock where every evaluation costs 0.5 s, and a budget of 1 s per rule
    engine = _engine(
        f.rule("acme", "first", "line"),
        f.rule("acme", "second", "line"),
        limits=MatchLimits(per_invocation_budget_s=1.0),
        clock=_stepping_clock(0.5),
    )

    # When five lines are matched, split over two streams
    result = engine.match([f.stream_events(["line 1", "line 2", "line 3"]), f.stream_events(["line 4", "line 5"])])

    # Then each rule evaluates two lines and skips the other three
    for rule_id in ("first", "second"):
        assert result.stats[rule_id].matches == 2
        assert result.stats[rule_id].skipped_lines == 3
    assert sorted(m.message for m in result.matches) == ["line 1", "line 1", "line 2", "line 2"]
    assert result.events == 5


def test_from_rules_keeps_the_good_rules_and_reports_the_broken_ones() -> None:
    # Given one rule that compiles and one that does not
    good = f.rule("acme", "good", "ERROR")
    broken = f.rule("acme", "broken", "ERROR", "(unclosed")

    # When the engine is built
    engine, problems = RuleEngine.from_rules([good, broken])

    # Then the broken rule is reported with its pattern and the good one still works
    assert [c.rule.rule_id for c in engine.rules] == ["good"]
    assert set(problems) == {"broken"}
    assert "(unclosed" in problems["broken"]
    assert _matched(engine, ["ERROR x"]) == ["ERROR x"]


def test_compile_rule_names_the_broken_pattern() -> None:
    with pytest.raises(regex.error, match=r"pattern '\[a-'"):
        compile_rule(f.rule("acme", "r", "ok", "[a-"))


def test_compiled_rule_keeps_its_rule() -> None:
    rule = f.rule("acme", "r", "a", "b")

    compiled = compile_rule(rule)

    assert isinstance(compiled, CompiledRule)
    assert compiled.rule == rule
    assert len(compiled.patterns) == 2


def test_each_match_carries_where_and_when_it_happened() -> None:
    # Given one matching event in a known stream
    stream = f.stream_events(
        ["ok", "ERROR card declined"],
        owner="444455556666",
        log_group="/aws/lambda/payments",
        log_stream="2026/11/28/[$LATEST]ff",
        timestamp=1_764_380_123_000,
    )
    engine = _engine(f.rule("acme", "declines", "declined"))

    # When matched
    [match] = engine.match([stream]).matches

    # Then the match identifies the event completely
    event = stream.events[1]
    assert (match.customer_id, match.rule_id, match.event_id) == ("acme", "declines", event.id)
    assert (match.owner, match.log_group, match.log_stream) == (
        "444455556666",
        "/aws/lambda/payments",
        "2026/11/28/[$LATEST]ff",
    )
    assert match.timestamp == 1_764_380_123_001
    assert match.message == "ERROR card declined"
    assert match.match_key == f"acme#declines#{event.id}"


def test_every_rule_has_stats_even_without_matches() -> None:
    result = _engine(f.rule("acme", "a", "nope"), f.rule("acme", "b", "ok")).match([f.stream_events(["ok"])])

    assert result.stats["a"].matches == 0
    assert result.stats["b"].matches == 1
