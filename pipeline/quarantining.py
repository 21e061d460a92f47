"""Run-time enforcement of rule time budgets: strikes, then quarantine (pure over ports).

Vetting at registration catches most catastrophic patterns, but not every one. At run time each
rule is bounded per line and per invocation (pipeline.matching), so a bad rule costs its own
budget and never another customer's time; an invocation in which a rule overran that budget is
a strike against the rule's current version. After `strikes` strikes within `window_ms` the rule
is quarantined: the parser's engine skips it, the customer is told once (the notice is queued in
the same transaction that quarantines), and an edit, which makes a new version, lifts it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.delivery import DeliveryDeps, attempt
from pipeline.errors import LogfanError
from pipeline.models import Notification, Rule, RuleStats
from pipeline.ports import CustomerConfig, RuleHealthStore

__all__ = ["QuarantinePolicy", "enforce_budgets", "overran", "quarantine_notice"]

_log = logging.getLogger("logfan.quarantining")


@dataclass(frozen=True, slots=True)
class QuarantinePolicy:
    strikes: int = 3
    """Invocations in which a rule overran its budget before it is quarantined (0: never)."""
    window_ms: int = 3_600_000
    """Strikes older than this lapse: a rule that overran once a week is not quarantined."""


def overran(stats: RuleStats) -> bool:
    """A line's evaluation timed out, or the rule's budget for the invocation ran out."""
    return stats.timeouts > 0 or stats.skipped_lines > 0


def _reason(stats: RuleStats, strikes: int, policy: QuarantinePolicy) -> str:
    return (
        f"the rule exceeded its time budget in {strikes} invocations within {policy.window_ms // 60_000} minutes "
        f"(last: {stats.timeouts} line evaluation(s) timed out, {stats.skipped_lines} line(s) skipped once its "
        "budget ran out)"
    )


def quarantine_notice(rule: Rule, channel_type: str, *, reason: str, at_ms: int) -> Notification:
    """The one message that tells the customer; its id is fixed per rule version, so it is sent once."""
    key = "\n".join([rule.customer_id, rule.rule_id, str(rule.version), "quarantine"])
    return Notification.model_validate(
        {
            "notification_id": "q-" + hashlib.sha256(key.encode()).hexdigest()[:32],
            "kind": "quarantine",
            "detail": reason,
            "customer_id": rule.customer_id,
            "rule_id": rule.rule_id,
            "rule_name": rule.display_name,
            "channel_id": rule.channel,
            "channel_type": channel_type,
            "batch_id": "",
            "subtask_id": "",
            "count": 0,
            "log_groups": [],
            "first_timestamp": at_ms,
            "last_timestamp": at_ms,
            "samples": [],
        }
    )


def enforce_budgets(
    health: RuleHealthStore,
    delivery: DeliveryDeps,
    config: CustomerConfig,
    stats: Mapping[str, RuleStats],
    policy: QuarantinePolicy,
) -> list[str]:
    """Count a strike for every rule that overran; quarantine those with too many. Returns the ids
    of the rules this call quarantined.

    Best effort by design: failing to count a strike must not fail the sub-task (its matches are
    what the customer pays for), so store errors are logged and the next invocation counts again.
    """
    if policy.strikes <= 0:
        return []
    rules = {rule.rule_id: rule for rule in config.rules}
    quarantined: list[str] = []
    for rule_id, rule_stats in stats.items():
        rule = rules.get(rule_id)
        if rule is None or rule.quarantined or not overran(rule_stats):
            continue
        now = delivery.clock.now_ms()
        try:
            strikes = health.record_strike(
                rule.customer_id, rule_id, version=rule.version, now_ms=now, window_ms=policy.window_ms
            )
            delivery.metrics.count("RuleStrikes")
            if strikes < policy.strikes:
                continue
            channel = config.channel(rule.channel)
            reason = _reason(rule_stats, strikes, policy)
            notice = quarantine_notice(rule, channel.type.value if channel else "webhook", reason=reason, at_ms=now)
            if not health.quarantine(rule, reason=reason, at_ms=now, notice=notice, expires_at=delivery.expires_at()):
                continue
        except LogfanError as exc:
            _log.error("could not count a rule's strike", extra={"rule_id": rule_id, "error": str(exc)})
            continue
        quarantined.append(rule_id)
        delivery.metrics.count("RulesQuarantined")
        _log.warning("rule quarantined", extra={"rule_id": rule_id, "strikes": strikes, "reason": reason})
        if channel is None:
            continue
        try:
            # Queued already; sending now only saves the customer the wait for the dispatcher.
            attempt(delivery, notice, channel)
        except LogfanError as exc:
            _log.warning("quarantine notice left for the dispatcher", extra={"rule_id": rule_id, "error": str(exc)})
    return quarantined
