"""The rule engine: compile customer rules once, match log events under hard time bounds (pure).

Customer patterns are untrusted. Every single evaluation runs under the `regex` module's timeout,
and each rule also has a budget for a whole invocation: once a rule has burnt it, the rule is
skipped for the rest of that invocation instead of stalling everyone else's work.

By default the engine first asks a multi-literal prefilter (`pipeline.prefilter`, built once per
compiled engine) which rules could match which lines, and runs `regex` only on those, under the
same bounds. Matches and rule stats are those of the plain engine (`prefilter="off"`); only the
time spent on lines no rule could match goes away.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import regex

from pipeline.models import LogEvent, Match, Rule, RuleStats, StreamEvents
from pipeline.prefilter import LiteralScanner, make_scanner, pattern_literals

__all__ = ["CompiledRule", "MatchLimits", "MatchResult", "PrefilterMode", "RuleEngine", "compile_rule"]

PrefilterMode = Literal["auto", "hyperscan", "python", "off"]
"""`auto`: Hyperscan where it imports, else `bytes.find`; `off`: the plain engine, regex on every line."""
_APPLICABLE_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class MatchLimits:
    per_line_timeout_s: float = 0.1
    """Hard bound on one rule evaluated against one line."""
    per_invocation_budget_s: float = 2.0
    """Time one rule may spend over a whole invocation before it is skipped for the rest of it."""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    patterns: tuple[regex.Pattern[str], ...]

    def applies_to(self, log_group: str) -> bool:
        globs = self.rule.log_groups
        return not globs or any(fnmatch.fnmatchcase(log_group, glob) for glob in globs)


def compile_rule(rule: Rule) -> CompiledRule:
    """Compile every pattern of `rule`; raises `regex.error` naming the broken pattern."""
    flags = regex.IGNORECASE if rule.ignore_case else 0
    compiled = []
    for pattern in rule.patterns:
        try:
            compiled.append(regex.compile(pattern, flags))
        except regex.error as exc:
            raise regex.error(f"pattern {pattern!r}: {exc}") from None
    return CompiledRule(rule=rule, patterns=tuple(compiled))


@dataclass(slots=True)
class _RuleTally:
    matches: int = 0
    timeouts: int = 0
    errors: int = 0
    skipped_lines: int = 0
    spent_s: float = 0.0

    def frozen(self) -> RuleStats:
        return RuleStats(
            matches=self.matches, timeouts=self.timeouts, errors=self.errors, skipped_lines=self.skipped_lines
        )


@dataclass(slots=True)
class MatchResult:
    matches: list[Match] = field(default_factory=list)
    stats: dict[str, RuleStats] = field(default_factory=dict)
    events: int = 0
    spent_s: dict[str, float] = field(default_factory=dict)
    """Time each rule has used of its per-invocation budget, to carry into the next slice."""

    @property
    def timeouts(self) -> int:
        return sum(stats.timeouts for stats in self.stats.values())


class _Prefilter:
    """Per rule, which literal factors must all occur for one of its clauses (patterns) to be possible."""

    def __init__(self, rules: Sequence[CompiledRule], backend: PrefilterMode) -> None:
        literal_ids: dict[tuple[str, bool], int] = {}
        factor_ids: dict[frozenset[int], int] = {}
        self.clauses: list[tuple[frozenset[int], ...] | None] = []
        for compiled in rules:
            rule = compiled.rule
            found = [pattern_literals(pattern, ignore_case=rule.ignore_case) for pattern in rule.patterns]
            filterable = [literals for literals in found if literals.filterable]
            if (
                any(literals.risky for literals in found)
                or not filterable
                or (rule.match == "any" and len(filterable) < len(found))
            ):
                self.clauses.append(None)
                continue
            clauses: list[frozenset[int]] = []
            for literals in filterable:
                ids = set()
                for factor in literals.factors:
                    members = frozenset(
                        literal_ids.setdefault((text, literals.caseless), len(literal_ids)) for text in factor
                    )
                    ids.add(factor_ids.setdefault(members, len(factor_ids)))
                clauses.append(frozenset(ids))
            self.clauses.append(tuple(clauses) if rule.match == "any" else (frozenset().union(*clauses),))
        self.factors_of_literal: list[list[int]] = [[] for _ in literal_ids]
        for members, factor_id in factor_ids.items():
            for literal_id in members:
                self.factors_of_literal[literal_id].append(factor_id)
        self.rules_of_factor: list[list[int]] = [[] for _ in factor_ids]
        for rule_index, rule_clauses in enumerate(self.clauses):
            for factor_id in sorted(frozenset().union(*rule_clauses)) if rule_clauses else ():
                self.rules_of_factor[factor_id].append(rule_index)
        self.scanner: LiteralScanner = make_scanner(list(literal_ids), "auto" if backend == "auto" else backend)
        self.unfiltered = frozenset(index for index, clauses in enumerate(self.clauses) if clauses is None)

    def candidates(self, lines: Sequence[str]) -> dict[int, set[int]]:
        """line index -> indexes of the filtered rules that may match it."""
        out: dict[int, set[int]] = {}
        for line, literal_ids in self.scanner.scan(lines).items():
            hit: set[int] = set()
            for literal_id in literal_ids:
                hit.update(self.factors_of_literal[literal_id])
            possible: set[int] = set()
            for factor_id in hit:
                for rule_index in self.rules_of_factor[factor_id]:
                    if rule_index not in possible:
                        clauses = self.clauses[rule_index]
                        if clauses is not None and any(clause <= hit for clause in clauses):
                            possible.add(rule_index)
            if possible:
                out[line] = possible
        return out


class RuleEngine:
    """Matches events against one customer's compiled rules."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        limits: MatchLimits | None = None,
        clock: Callable[[], float] = time.perf_counter,
        *,
        prefilter: PrefilterMode = "auto",
    ) -> None:
        self._rules = tuple(rules)
        self._limits = limits or MatchLimits()
        self._clock = clock
        self._prefilter = None if prefilter == "off" or not self._rules else _Prefilter(self._rules, prefilter)
        self._applicable: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_rules(
        cls, rules: Iterable[Rule], limits: MatchLimits | None = None, *, prefilter: PrefilterMode = "auto"
    ) -> tuple[RuleEngine, dict[str, str]]:
        """Compile what compiles; return the engine and the rule ids that did not, with why."""
        compiled: list[CompiledRule] = []
        broken: dict[str, str] = {}
        for rule in rules:
            try:
                compiled.append(compile_rule(rule))
            except regex.error as exc:
                broken[rule.rule_id] = str(exc)
        return cls(compiled, limits, prefilter=prefilter), broken

    @property
    def rules(self) -> tuple[CompiledRule, ...]:
        return self._rules

    @property
    def prefilter_backend(self) -> str:
        """`hyperscan`, `python` or `off`: how this engine finds candidate lines."""
        return "off" if self._prefilter is None else self._prefilter.scanner.backend

    @property
    def unfiltered_rules(self) -> list[str]:
        """Rules confirmed with `regex` on every line (patterns the prefilter cannot reason about)."""
        if self._prefilter is None:
            return [compiled.rule.rule_id for compiled in self._rules]
        return [self._rules[index].rule.rule_id for index in sorted(self._prefilter.unfiltered)]

    def _evaluate(self, compiled: CompiledRule, message: str, tally: _RuleTally) -> bool:
        """One rule against one line; a timeout counts against the rule and reads as no match."""
        timeout = self._limits.per_line_timeout_s
        require_all = compiled.rule.match == "all"
        started = self._clock()
        try:
            for pattern in compiled.patterns:
                found = pattern.search(message, timeout=timeout) is not None
                if found != require_all:
                    return found
            return require_all
        except TimeoutError:
            tally.timeouts += 1
            return False
        finally:
            tally.spent_s += self._clock() - started

    def match(self, streams: Iterable[StreamEvents], spent_s: Mapping[str, float] | None = None) -> MatchResult:
        """Evaluate every rule on every event of `streams`, each evaluation time-bounded.

        `spent_s` carries what each rule already used of its budget in this invocation, so an
        invocation that matches its payload slice by slice keeps one budget per rule.
        """
        if self._prefilter is None:
            return self._match_plain(streams, spent_s or {})
        return self._match_prefiltered(list(streams), self._prefilter, spent_s or {})

    def _applicable_rules(self, log_group: str) -> tuple[int, ...]:
        found = self._applicable.get(log_group)
        if found is None:
            if len(self._applicable) >= _APPLICABLE_CACHE_SIZE:
                self._applicable.clear()
            found = self._applicable[log_group] = tuple(
                index for index, compiled in enumerate(self._rules) if compiled.applies_to(log_group)
            )
        return found

    def _match_prefiltered(
        self, streams: list[StreamEvents], prefilter: _Prefilter, spent_s: Mapping[str, float]
    ) -> MatchResult:
        """The plain engine's results, evaluating `regex` only where the prefilter allows a match.

        A rule over its budget is skipped on every later line, exactly as the plain loop counts it:
        the lines it would have been skipped on are added up when it crosses the budget.
        """
        by_id: dict[str, _RuleTally] = {}
        tallies = [
            by_id.setdefault(compiled.rule.rule_id, _RuleTally(spent_s=spent_s.get(compiled.rule.rule_id, 0.0)))
            for compiled in self._rules
        ]
        result = MatchResult()
        budget = self._limits.per_invocation_budget_s
        candidates = prefilter.candidates([event.message for stream in streams for event in stream.events])
        unfiltered = prefilter.unfiltered
        offset = 0
        for stream in streams:
            events = stream.events
            result.events += len(events)
            active: list[int] = []
            for index in self._applicable_rules(stream.log_group):
                if tallies[index].spent_s >= budget:
                    tallies[index].skipped_lines += len(events)
                else:
                    active.append(index)
            always = [index for index in active if index in unfiltered]
            for position, event in enumerate(events):
                possible = candidates.get(offset + position)
                if possible is None and not always:
                    continue
                for index in active if possible is not None else always:
                    if possible is not None and index not in possible and index not in unfiltered:
                        continue
                    tally = tallies[index]
                    compiled = self._rules[index]
                    if self._evaluate(compiled, event.message, tally):
                        tally.matches += 1
                        result.matches.append(_match_of(compiled, stream, event))
                    if tally.spent_s >= budget:
                        tally.skipped_lines += len(events) - position - 1
                        active = [i for i in active if i != index]
                        always = [i for i in always if i != index]
            offset += len(events)
        result.stats = {rule_id: tally.frozen() for rule_id, tally in by_id.items()}
        result.spent_s = {rule_id: tally.spent_s for rule_id, tally in by_id.items()}
        return result

    def _match_plain(self, streams: Iterable[StreamEvents], spent_s: Mapping[str, float]) -> MatchResult:
        """Every applicable rule on every event: the reference the prefiltered path must equal."""
        tallies = {
            compiled.rule.rule_id: _RuleTally(spent_s=spent_s.get(compiled.rule.rule_id, 0.0))
            for compiled in self._rules
        }
        result = MatchResult()
        budget = self._limits.per_invocation_budget_s
        for stream in streams:
            applicable = [compiled for compiled in self._rules if compiled.applies_to(stream.log_group)]
            result.events += len(stream.events)
            for event in stream.events:
                for compiled in applicable:
                    tally = tallies[compiled.rule.rule_id]
                    if tally.spent_s >= budget:
                        tally.skipped_lines += 1
                        continue
                    if self._evaluate(compiled, event.message, tally):
                        tally.matches += 1
                        result.matches.append(_match_of(compiled, stream, event))
        result.stats = {rule_id: tally.frozen() for rule_id, tally in tallies.items()}
        result.spent_s = {rule_id: tally.spent_s for rule_id, tally in tallies.items()}
        return result


def _match_of(compiled: CompiledRule, stream: StreamEvents, event: LogEvent) -> Match:
    return Match(
        customer_id=compiled.rule.customer_id,
        rule_id=compiled.rule.rule_id,
        event_id=event.id,
        owner=stream.owner,
        log_group=stream.log_group,
        log_stream=stream.log_stream,
        timestamp=event.timestamp,
        message=event.message,
    )
