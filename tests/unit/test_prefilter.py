"""The prefiltered rule engine gives exactly the plain engine's results; the literals it relies on are sound."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.bench.traffic import TrafficGenerator, make_tenants
from pipeline.local.inputs import PlainTextSource, read_inputs
from pipeline.matching import MatchLimits, MatchResult, RuleEngine
from pipeline.models import LogEvent, Rule, StreamEvents
from pipeline.prefilter import hyperscan_available, pattern_literals
from pipeline.rules_file import load_rules_file
from tests import factories as f

SAMPLE_LOGS = Path(__file__).resolve().parents[2] / "sample_logs"
BACKENDS = ["python", *(["hyperscan"] if hyperscan_available() else [])]
LIMITS = MatchLimits(per_line_timeout_s=0.05, per_invocation_budget_s=30.0)

TRICKY_RULES = [
    f.rule("t", "kelvin", "kb", ignore_case=True),  # the Kelvin sign folds to k
    f.rule("t", "long-s", "pass", ignore_case=True),  # so does the long s
    f.rule("t", "scoped-i", "(?i:error) code=E42"),
    f.rule("t", "variable-lookbehind", r"(?<=user=\w+ )denied"),
    f.rule("t", "fuzzy", "(?:timeout){e<=1}"),
    f.rule("t", "posix", "[[:digit:]]{3} ms"),
    f.rule("t", "unicode-class", r"\p{Lu}rror"),
    f.rule("t", "backref", r"(\w+) \1 again"),
    f.rule("t", "optional", "colou?r=red"),
    f.rule("t", "all-mixed", "ERROR", r"\d+", match="all"),
    f.rule("t", "any-unfilterable", "ERROR", r"^\S+$"),
    f.rule("t", "braces", r"json=\{.*\}"),
    f.rule("t", "verbose", "(?x) E R R O R"),
]
TRICKY_LINES = [
    "KB written",
    "\u212ab written",
    "PASS",
    "pa\u017f\u017f",
    "Error code=E42",
    "ERROR code=E42",
    "user=alice denied",
    "timout after 3s",
    "took 123 ms",
    "Error in module",
    "well well again",
    "color=red colour=red",
    "ERROR 42",
    "ERROR",
    'json={"a": 1}',
    "E R R O R",
    "ERROR",
    "plain line",
    "über ERROR ß",
]


def _sample_streams() -> list[StreamEvents]:
    streams = []
    for _, records in read_inputs([SAMPLE_LOGS], PlainTextSource()):
        for record in records:
            try:
                document = json.loads(gzip.decompress(record.data))
            except (OSError, EOFError, ValueError):
                continue
            if not isinstance(document, dict) or document.get("messageType") != "DATA_MESSAGE":
                continue
            if "logEvents" not in document:
                continue
            events = [
                LogEvent(id=str(e["id"]), timestamp=e["timestamp"], message=e["message"]) for e in document["logEvents"]
            ]
            streams.append(
                StreamEvents(
                    owner=document["owner"],
                    log_group=document["logGroup"],
                    log_stream=document["logStream"],
                    events=events,
                )
            )
    return streams


def _generated_streams(count: int) -> list[StreamEvents]:
    generator = TrafficGenerator(make_tenants(2, 30), seed=11, match_rate=0.05)
    return [
        StreamEvents(
            owner=d["owner"],
            log_group=d["logGroup"],
            log_stream=d["logStream"],
            events=[LogEvent(**e) for e in d["logEvents"]],
        )
        for d in generator.messages(count)
    ]


def _results(rules: list[Rule], streams: list[StreamEvents], backend: str) -> tuple[MatchResult, MatchResult]:
    plain, broken = RuleEngine.from_rules(rules, LIMITS, prefilter="off")
    fast, _ = RuleEngine.from_rules(rules, LIMITS, prefilter=backend)  # type: ignore[arg-type]
    assert not broken
    return plain.match(streams), fast.match(streams)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_prefiltered_engine_equals_the_plain_engine_on_the_sample_logs_and_generated_traffic(backend: str) -> None:
    # Given the sample captures with their rules, and generated traffic with 60 generated rules
    sample_rules = [r for r in load_rules_file(SAMPLE_LOGS / "rules.yaml").rules]
    generated_rules = [b.rule for t in make_tenants(2, 30) for b in t.rules]
    streams = _sample_streams() + _generated_streams(40)

    # When both engines match everything
    for rules in (sample_rules, generated_rules, sample_rules + generated_rules):
        plain, fast = _results(rules, streams, backend)

        # Then the matches, in order, and every rule's stats are identical
        assert fast.matches == plain.matches
        assert fast.stats == plain.stats
        assert fast.events == plain.events
    assert plain.matches, "the corpus must exercise matches"


@pytest.mark.parametrize("backend", BACKENDS)
def test_patterns_the_prefilter_cannot_read_safely_still_match_exactly(backend: str) -> None:
    stream = f.stream_events(TRICKY_LINES)

    plain, fast = _results(TRICKY_RULES, [stream], backend)

    assert fast.matches == plain.matches
    assert fast.stats == plain.stats
    assert {m.rule_id for m in plain.matches} >= {"kelvin", "long-s", "fuzzy", "posix", "unicode-class", "backref"}


def test_risky_and_regex_only_patterns_keep_no_literals() -> None:
    assert not pattern_literals(r"^(.*?,){11}P", ignore_case=False).filterable
    assert not pattern_literals(r"(\w+) \1", ignore_case=False).filterable
    assert pattern_literals(r"(?<=user=\w+ )denied", ignore_case=False).factors == (
        frozenset({"denied"}),
        frozenset({"user="}),
    )
    assert not pattern_literals("(?:timeout){e<=1}", ignore_case=False).filterable
    assert not pattern_literals("[[:digit:]]+ ms", ignore_case=False).filterable
    assert not pattern_literals("über", ignore_case=True).filterable
    assert pattern_literals(r"Task timed out after \d+", ignore_case=False).factors == (
        frozenset({"Task timed out after "}),
    )
    assert pattern_literals("PAYMENT (failed|declined)", ignore_case=True).factors[0] == frozenset({"payment "})


def test_the_prefiltered_engine_still_times_out_a_catastrophic_pattern() -> None:
    engine, _ = RuleEngine.from_rules(
        [f.rule("acme", "bomb", r"^(.*?,){11}P")], MatchLimits(per_line_timeout_s=0.05, per_invocation_budget_s=5.0)
    )

    result = engine.match([f.stream_events([",".join(["a"] * 30)])])

    assert engine.unfiltered_rules == ["bomb"]
    assert result.stats["bomb"].timeouts == 1


_PIECES = st.sampled_from(
    [
        "ab",
        "ERR",
        "err",
        "k",
        "K",
        "\u212a",
        "s",
        "\u017f",
        r"\d",
        r"\w+",
        ".*",
        "x?",
        "(?:ab|cd)",
        "[a-c]",
        " ",
        r"\b",
        "é",
    ]
)
_TEXT = st.text(alphabet=st.sampled_from(list("abcdERRerrkKsS \u212a\u017f1é,x")), max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patterns=st.lists(st.lists(_PIECES, min_size=1, max_size=5).map("".join), min_size=1, max_size=3),
    match=st.sampled_from(["any", "all"]),
    ignore_case=st.booleans(),
    lines=st.lists(_TEXT, min_size=1, max_size=15),
)
def test_random_patterns_and_lines_match_identically(
    patterns: list[str], match: str, ignore_case: bool, lines: list[str]
) -> None:
    for pattern in patterns:
        regex.compile(pattern)
    rule = f.rule("acme", "r", *patterns, match=match, ignore_case=ignore_case)
    stream = f.stream_events(lines)
    for backend in BACKENDS:
        plain, fast = _results([rule], [stream], backend)
        assert fast.matches == plain.matches
        assert fast.stats == plain.stats
