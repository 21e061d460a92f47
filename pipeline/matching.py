"""The rule engine: compile customer rules once, match log events under hard time bounds (pure).

Customer patterns are untrusted. Every single evaluation runs under the `regex` module's timeout,
and each rule also has a budget for a whole invocation: once a rule has burnt it, the rule is
skipped for the rest of that invocation instead of stalling everyone else's work.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import regex

from pipeline.models import Match, Rule, RuleStats, StreamEvents

__all__ = ["CompiledRule", "MatchLimits", "MatchResult", "RuleEngine", "compile_rule"]


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

    @property
    def timeouts(self) -> int:
        return sum(stats.timeouts for stats in self.stats.values())


class RuleEngine:
    """Matches events against one customer's compiled rules."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        limits: MatchLimits | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._rules = tuple(rules)
        self._limits = limits or MatchLimits()
        self._clock = clock

    @classmethod
    def from_rules(cls, rules: Iterable[Rule], limits: MatchLimits | None = None) -> tuple[RuleEngine, dict[str, str]]:
        """Compile what compiles; return the engine and the rule ids that did not, with why."""
        compiled: list[CompiledRule] = []
        broken: dict[str, str] = {}
        for rule in rules:
            try:
                compiled.append(compile_rule(rule))
            except regex.error as exc:
                broken[rule.rule_id] = str(exc)
        return cls(compiled, limits), broken

    @property
    def rules(self) -> tuple[CompiledRule, ...]:
        return self._rules

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

    def match(self, streams: Iterable[StreamEvents]) -> MatchResult:
        """Evaluate every rule on every event of `streams`, each evaluation time-bounded."""
        tallies = {compiled.rule.rule_id: _RuleTally() for compiled in self._rules}
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
                        result.matches.append(
                            Match(
                                customer_id=compiled.rule.customer_id,
                                rule_id=compiled.rule.rule_id,
                                event_id=event.id,
                                owner=stream.owner,
                                log_group=stream.log_group,
                                log_stream=stream.log_stream,
                                timestamp=event.timestamp,
                                message=event.message,
                            )
                        )
        result.stats = {rule_id: tally.frozen() for rule_id, tally in tallies.items()}
        return result
