"""Per-container caches: owner -> customer for the fan-out, compiled rules for the parser.

Warm Lambda containers serve many invocations; re-reading DynamoDB and recompiling every regex
each time would dominate the cost. Entries live for a short TTL so rule edits show up quickly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.matching import MatchLimits, RuleEngine
from pipeline.ports import ConfigStore, CustomerConfig

__all__ = ["CompiledCustomer", "CustomerRulesCache", "OwnerCache"]


class OwnerCache:
    """Owner -> customer id with a TTL, remembering unclaimed owners too (negative caching)."""

    def __init__(self, store: ConfigStore, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def customers_for_owners(self, owners: Iterable[str]) -> dict[str, str]:
        now = self._clock()
        wanted = set(owners)
        with self._lock:
            fresh = {o: self._entries[o] for o in wanted if o in self._entries and self._entries[o][0] > now}
        missing = wanted - fresh.keys()
        found = self._store.customers_for_owners(missing) if missing else {}
        expires = now + self._ttl_s
        with self._lock:
            for owner in missing:
                self._entries[owner] = (expires, found.get(owner))
        resolved = {owner: customer for owner, (_, customer) in fresh.items() if customer is not None}
        resolved.update(found)
        return resolved


@dataclass(frozen=True, slots=True)
class CompiledCustomer:
    config: CustomerConfig
    engine: RuleEngine
    broken_rules: dict[str, str]


class CustomerRulesCache:
    """A customer's config and compiled rule engine, reloaded after `ttl_s`.

    Compiling is skipped when the reloaded rules carry the same (rule_id, version) set.
    Quarantined rules are not compiled: the engine never runs them.
    """

    def __init__(
        self,
        store: ConfigStore,
        ttl_s: float,
        limits: MatchLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._limits = limits
        self._clock = clock
        self._entries: dict[str, tuple[float, CompiledCustomer | None]] = {}
        self._lock = threading.Lock()

    def get(self, customer_id: str) -> CompiledCustomer | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(customer_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        config = self._store.load_customer(customer_id)
        compiled: CompiledCustomer | None = None
        if config is not None:
            previous = entry[1] if entry is not None else None
            if previous is not None and _fingerprint(previous.config) == _fingerprint(config):
                compiled = CompiledCustomer(config, previous.engine, previous.broken_rules)
            else:
                active = [rule for rule in config.rules if not rule.quarantined]
                engine, broken = RuleEngine.from_rules(active, self._limits)
                compiled = CompiledCustomer(config, engine, broken)
        with self._lock:
            self._entries[customer_id] = (now + self._ttl_s, compiled)
        return compiled

    def invalidate(self, customer_id: str) -> None:
        """Reload the customer on its next use (this container just changed one of its rules)."""
        with self._lock:
            entry = self._entries.get(customer_id)
            if entry is not None:
                self._entries[customer_id] = (float("-inf"), entry[1])


def _fingerprint(config: CustomerConfig) -> tuple[tuple[str, int, str], ...]:
    return tuple(sorted((rule.rule_id, rule.version, rule.model_dump_json()) for rule in config.rules))
