"""Customers, their channels and rules, as the rules API and the `logfan` CLI manage them.

One service behind both: every write is vetted (`pipeline.vetting`) before it reaches the store, a
rule's edit is conditional on the version it was read at, and an edit lifts a quarantine. Rules files
(`pipeline.rules_file`, the format `replay` reads) import and export through the same checks.

Every webhook channel gets a signing secret: the caller's, the one it had (an edit keeps it unless
asked to rotate it), or a new one, which the write returns once (`ChannelWrite.new_secret`,
`ImportReport.secrets`) and nothing ever shows again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.config import RulesSettings
from pipeline.errors import ConflictError, NotFoundError, RejectedError
from pipeline.matching import MatchLimits, RuleEngine
from pipeline.models import Channel, ChannelType, Customer, LogEvent, Rule, StreamEvents
from pipeline.rules_file import RulesFile
from pipeline.vetting import VettingLimits, vet_channel, vet_customer, vet_rule, vet_rules

__all__ = [
    "ChannelWrite",
    "ImportReport",
    "RuleTestReport",
    "RuleTestResult",
    "RulesService",
    "RulesStore",
    "mask_url",
    "new_signing_secret",
    "secret_hint",
    "validated",
    "vetting_limits",
]

_Model = TypeVar("_Model", bound=BaseModel)

_INTENT_FIELDS = ("name", "patterns", "match", "ignore_case", "log_groups", "channel")
"""What a customer says about a rule; the rest (version, timestamps, quarantine) is the store's."""


class RulesStore(Protocol):
    """What the service needs of the config table (`DynamoDBConfigStore` implements it)."""

    def get_customer(self, customer_id: str) -> Customer | None: ...
    def list_customers(self) -> list[Customer]: ...
    def put_customer(self, customer: Customer) -> None: ...
    def put_principal(self, principal: str, customer_id: str) -> None: ...
    def customer_for_principal(self, principal: str) -> str | None: ...
    def list_rules(self, customer_id: str) -> list[Rule]: ...
    def get_rule(self, customer_id: str, rule_id: str) -> Rule | None: ...
    def create_rule(self, rule: Rule) -> Rule: ...
    def update_rule(self, rule: Rule, expected_version: int) -> Rule: ...
    def delete_rule(self, customer_id: str, rule_id: str) -> bool: ...
    def put_channel(self, customer_id: str, channel: Channel) -> bool: ...
    def delete_channel(self, customer_id: str, channel_id: str) -> bool: ...


def vetting_limits(settings: RulesSettings) -> VettingLimits:
    return VettingLimits(
        max_pattern_chars=settings.rule_max_pattern_chars,
        max_patterns_per_rule=settings.rule_max_patterns,
        max_log_groups_per_rule=settings.rule_max_log_groups,
        max_rules_per_customer=settings.customer_max_rules,
        max_pattern_chars_per_customer=settings.customer_max_pattern_chars,
        max_channels_per_customer=settings.customer_max_channels,
        probe_timeout_ms=settings.rule_probe_timeout_ms,
        probe_line_chars=settings.rule_probe_line_chars,
        allow_loopback_channels=settings.allow_loopback_channels,
    )


def validated(model: type[_Model], data: dict[str, Any]) -> _Model:
    """Build a model from untrusted values; `RejectedError` names each field and problem, never a value
    (pydantic's own messages repeat the input, and a webhook URL is a secret)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or model.__name__}: {e['msg']}" for e in exc.errors()]
        raise RejectedError("; ".join(problems), problems=problems) from None
    except ValueError as exc:  # a model's post-init check: its messages name ids, not values
        raise RejectedError(str(exc)) from None


def mask_url(url: str | None) -> str | None:
    """`https://hooks.slack.com/***`: enough to recognise a webhook, never its secret path."""
    if url is None:
        return None
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/***"


def new_signing_secret() -> str:
    """A webhook signing secret: 256 random bits, URL-safe, recognisable by its prefix."""
    return "lfs_" + secrets.token_urlsafe(32)


def secret_hint(secret: str | None) -> str | None:
    """`…wxyz`: the last four characters, enough to tell secrets apart, never enough to use one."""
    return None if not secret else f"…{secret[-4:]}"


def _active(rule: Rule) -> Rule:
    """A rule as a customer writes it: an edit lifts any quarantine."""
    return rule.model_copy(update={"status": "active", "quarantine_reason": "", "quarantined_at": None})


def _same_intent(a: Rule, b: Rule) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in _INTENT_FIELDS)


@dataclass(slots=True)
class ImportReport:
    customers: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    """`customer/channel` -> the signing secret this import generated (shown once)."""


@dataclass(frozen=True, slots=True)
class ChannelWrite:
    channel: Channel
    """As stored (with its secret: never show it, see `new_secret`)."""
    created: bool
    new_secret: str | None = None
    """The signing secret this write generated: return it to the caller once, never again."""


@dataclass(frozen=True, slots=True)
class RuleTestResult:
    rule: Rule
    matched_lines: tuple[int, ...]
    """1-based line numbers of the sample that fired the rule."""
    spent_ms: float
    timeouts: int
    skipped_lines: int
    applies: bool


@dataclass(frozen=True, slots=True)
class RuleTestReport:
    lines: int
    results: tuple[RuleTestResult, ...]


class RulesService:
    def __init__(
        self,
        store: RulesStore,
        limits: VettingLimits | None = None,
        *,
        new_secret: Callable[[], str] = new_signing_secret,
    ) -> None:
        self._store = store
        self._limits = limits or VettingLimits()
        self._new_secret = new_secret

    # -- customers ---------------------------------------------------------------------------
    def customer(self, customer_id: str) -> Customer:
        customer = self._store.get_customer(customer_id)
        if customer is None:
            raise NotFoundError(f"no customer {customer_id!r}")
        return customer

    def list_customers(self) -> list[Customer]:
        return self._store.list_customers()

    def add_customer(
        self, customer_id: str, *, name: str | None = None, accounts: Sequence[str] = (), principals: Sequence[str] = ()
    ) -> Customer:
        """Create a customer or add to one: the name is replaced when given, accounts and channels kept."""
        existing = self._store.get_customer(customer_id)
        customer = Customer(
            customer_id=customer_id,
            name=name if name is not None else (existing.name if existing else ""),
            accounts=list(dict.fromkeys([*(existing.accounts if existing else []), *accounts])),
            channels=list(existing.channels) if existing else [],
        )
        self._store.put_customer(customer)
        for principal in principals:
            self._store.put_principal(principal, customer_id)
        return customer

    def customer_for_principal(self, principal: str) -> str | None:
        return self._store.customer_for_principal(principal)

    # -- rules -------------------------------------------------------------------------------
    def list_rules(self, customer_id: str) -> list[Rule]:
        self.customer(customer_id)
        return self._store.list_rules(customer_id)

    def get_rule(self, customer_id: str, rule_id: str) -> Rule:
        rule = self._store.get_rule(customer_id, rule_id)
        if rule is None:
            raise NotFoundError(f"no rule {rule_id!r}")
        return rule

    def _vet(self, rule: Rule) -> Customer:
        customer = self.customer(rule.customer_id)
        vet_rule(rule, self._limits)
        others = [r for r in self._store.list_rules(rule.customer_id) if r.rule_id != rule.rule_id]
        vet_rules([*others, rule], customer, self._limits)
        return customer

    def create_rule(self, rule: Rule) -> Rule:
        self._vet(rule)
        return self._store.create_rule(_active(rule))

    def update_rule(self, rule: Rule, expected_version: int | None = None) -> Rule:
        """Replace a rule; with `expected_version`, only if nobody changed it since (else `ConflictError`).
        The edit lifts a quarantine."""
        current = self.get_rule(rule.customer_id, rule.rule_id)
        self._vet(rule)
        return self._store.update_rule(_active(rule), expected_version or current.version)

    def put_rule(self, rule: Rule, expected_version: int | None = None) -> tuple[Rule, bool]:
        """Create or replace; True when it was created."""
        if self._store.get_rule(rule.customer_id, rule.rule_id) is None and expected_version is None:
            return self.create_rule(rule), True
        return self.update_rule(rule, expected_version), False

    def remove_rule(self, customer_id: str, rule_id: str) -> None:
        if not self._store.delete_rule(customer_id, rule_id):
            raise NotFoundError(f"no rule {rule_id!r}")

    # -- channels ----------------------------------------------------------------------------
    def list_channels(self, customer_id: str) -> list[Channel]:
        return sorted(self.customer(customer_id).channels, key=lambda channel: channel.channel_id)

    def get_channel(self, customer_id: str, channel_id: str) -> Channel:
        found = next((c for c in self.list_channels(customer_id) if c.channel_id == channel_id), None)
        if found is None:
            raise NotFoundError(f"no channel {channel_id!r}")
        return found

    def put_channel(self, customer_id: str, channel: Channel, *, rotate_secret: bool = False) -> ChannelWrite:
        """Add or replace a channel (vetted). An edit clears its delivery-failure record; a webhook
        keeps its secret unless given one or asked to rotate it, and gets a new one if it had none."""
        customer = self.customer(customer_id)
        existing = next((c for c in customer.channels if c.channel_id == channel.channel_id), None)
        channel, new_secret = self._with_secret(channel, existing, rotate=rotate_secret)
        vet_channel(channel, self._limits)
        kept = [c for c in customer.channels if c.channel_id != channel.channel_id]
        vet_customer(customer.model_copy(update={"channels": [*kept, channel]}), self._limits)
        created = self._store.put_channel(customer_id, channel)
        return ChannelWrite(channel=channel, created=created, new_secret=new_secret)

    def _with_secret(self, channel: Channel, existing: Channel | None, *, rotate: bool) -> tuple[Channel, str | None]:
        """The channel with the secret it is stored with, and that secret if it was generated now."""
        if channel.type is not ChannelType.WEBHOOK or channel.secret:
            return channel, None
        if existing is not None and existing.type is ChannelType.WEBHOOK and existing.secret and not rotate:
            return channel.model_copy(update={"secret": existing.secret}), None
        secret = self._new_secret()
        return channel.model_copy(update={"secret": secret}), secret

    def remove_channel(self, customer_id: str, channel_id: str) -> None:
        users = [rule.rule_id for rule in self.list_rules(customer_id) if rule.channel == channel_id]
        if users:
            raise ConflictError(f"channel {channel_id!r} is used by rule(s) {', '.join(users)}: change them first")
        if not self._store.delete_channel(customer_id, channel_id):
            raise NotFoundError(f"no channel {channel_id!r}")

    # -- rules files -------------------------------------------------------------------------
    def import_file(self, rules_file: RulesFile) -> ImportReport:
        """Register a whole rules file: everything is vetted before anything is written.

        Customers are written as the file has them (name, accounts, channels); rules are created,
        updated (a new version, lifting any quarantine) or left alone when unchanged. Rules the
        store has and the file lacks are kept.
        """
        problems: list[str] = []
        for customer in rules_file.customers:
            try:
                vet_customer(customer, self._limits)
            except RejectedError as exc:
                problems.extend(f"customer {customer.customer_id!r}: {p}" for p in exc.problems)
        customers = {customer.customer_id: customer for customer in rules_file.customers}
        for rule in rules_file.rules:
            try:
                vet_rule(rule, self._limits)
            except RejectedError as exc:
                problems.extend(f"rule {rule.customer_id}/{rule.rule_id}: {p}" for p in exc.problems)
        stored: dict[str, dict[str, Rule]] = {}
        for customer_id in sorted({rule.customer_id for rule in rules_file.rules}):
            owner = customers.get(customer_id) or self._store.get_customer(customer_id)
            if owner is None:
                problems.append(f"customer {customer_id!r}: not in the file and not registered")
                continue
            stored[customer_id] = {rule.rule_id: rule for rule in self._store.list_rules(customer_id)}
            merged = {**stored[customer_id], **{r.rule_id: r for r in rules_file.rules if r.customer_id == customer_id}}
            try:
                vet_rules(list(merged.values()), owner, self._limits)
            except RejectedError as exc:
                problems.extend(exc.problems)
        if problems:
            raise RejectedError("rules file refused:\n  " + "\n  ".join(problems), problems=problems)
        report = ImportReport()
        for customer in rules_file.customers:
            stored_customer = self._store.get_customer(customer.customer_id)
            previous = {c.channel_id: c for c in (stored_customer.channels if stored_customer else [])}
            channels = []
            for channel in customer.channels:
                before = previous.get(channel.channel_id)
                if before is not None and before.model_dump() == channel.model_dump() and not channel.secret:
                    channels.append(before)  # unchanged: keeps its secret and its delivery record
                    continue
                kept, secret = self._with_secret(channel, before, rotate=False)
                channels.append(kept)
                if secret is not None:
                    report.secrets[f"{customer.customer_id}/{channel.channel_id}"] = secret
            self._store.put_customer(customer.model_copy(update={"channels": channels}))
            report.customers.append(customer.customer_id)
        for rule in rules_file.rules:
            label = f"{rule.customer_id}/{rule.rule_id}"
            current = stored.get(rule.customer_id, {}).get(rule.rule_id)
            if current is None:
                self._store.create_rule(_active(rule))
                report.created.append(label)
            elif _same_intent(current, rule) and not current.quarantined:
                report.unchanged.append(label)
            else:
                self._store.update_rule(_active(rule), current.version)
                report.updated.append(label)
        return report

    def export_file(self, customer_ids: Iterable[str] = ()) -> RulesFile:
        """Customers (all, or those named) with their rules, in the rules-file format."""
        wanted = list(customer_ids)
        customers = [self.customer(c) for c in wanted] if wanted else self._store.list_customers()
        rules = [rule for customer in customers for rule in self._store.list_rules(customer.customer_id)]
        return RulesFile(customers=customers, rules=rules)

    # -- trying rules out --------------------------------------------------------------------
    def test_rules(
        self,
        customer_id: str,
        lines: Sequence[str],
        *,
        rule_id: str | None = None,
        log_group: str = "/logfan/test",
        timeout_ms: int = 100,
    ) -> RuleTestReport:
        """Run the customer's rules (or one) over sample lines with the parser's per-line bound.

        Every rule is evaluated on every line (no prefilter), so the time shown is each rule's own cost.
        """
        rules = [self.get_rule(customer_id, rule_id)] if rule_id else self.list_rules(customer_id)
        limits = MatchLimits(per_line_timeout_s=timeout_ms / 1000, per_invocation_budget_s=float("inf"))
        engine, broken = RuleEngine.from_rules(rules, limits, prefilter="off")
        if broken:
            raise RejectedError("; ".join(f"rule {r}: {why}" for r, why in broken.items()))
        events = [LogEvent(id=str(number), timestamp=0, message=line) for number, line in enumerate(lines, 1)]
        stream = StreamEvents(owner="000000000000", log_group=log_group, log_stream="sample", events=events)
        result = engine.match([stream])
        fired: dict[str, list[int]] = {}
        for match in result.matches:
            fired.setdefault(match.rule_id, []).append(int(match.event_id))
        results = []
        for compiled in engine.rules:
            rule = compiled.rule
            stats = result.stats[rule.rule_id]
            results.append(
                RuleTestResult(
                    rule=rule,
                    matched_lines=tuple(fired.get(rule.rule_id, [])),
                    spent_ms=result.spent_s.get(rule.rule_id, 0.0) * 1000,
                    timeouts=stats.timeouts,
                    skipped_lines=stats.skipped_lines,
                    applies=compiled.applies_to(log_group),
                )
            )
        return RuleTestReport(lines=len(events), results=tuple(results))
