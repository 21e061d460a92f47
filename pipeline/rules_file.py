"""The rules file (YAML or JSON): customers, their accounts and channels, and their rules.

Loading validates everything up front and names the entry and field of every problem, so a bad
file stops before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import RulesFileError
from pipeline.matching import compile_rule
from pipeline.models import Customer, Rule

__all__ = ["RulesFile", "dump_rules_file", "load_rules_file", "parse_rules_document"]


_Entry = TypeVar("_Entry", Customer, Rule)


class RulesFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    customers: list[Customer] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)


def _describe(section: str, index: int, entry: Any) -> str:
    label = f"{section}[{index}]"
    if isinstance(entry, dict):
        ids = [f"{key}={entry[key]}" for key in ("customer_id", "rule_id", "channel_id") if key in entry]
        if ids:
            label += f" ({', '.join(ids)})"
    return label


def _validate_section(document: dict[str, Any], section: str, model: type[_Entry], problems: list[str]) -> list[_Entry]:
    entries = document.get(section) or []
    if not isinstance(entries, list):
        problems.append(f"{section}: must be a list")
        return []
    valid: list[_Entry] = []
    for index, entry in enumerate(entries):
        try:
            valid.append(model.model_validate(entry))
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "<entry>"
                problems.append(f"{_describe(section, index, entry)}: {field}: {error['msg']}")
    return valid


def _validate_entries(document: dict[str, Any]) -> RulesFile:
    problems: list[str] = []
    unknown = set(document) - {"customers", "rules"}
    if unknown:
        problems.append(f"unknown top-level key(s): {', '.join(sorted(unknown))} (expected customers, rules)")
    customers = _validate_section(document, "customers", Customer, problems)
    rules = _validate_section(document, "rules", Rule, problems)
    if problems:
        raise RulesFileError("invalid rules file:\n  " + "\n  ".join(problems))
    return RulesFile(customers=customers, rules=rules)


def _check_references(rules_file: RulesFile) -> None:
    problems: list[str] = []
    customers: dict[str, Customer] = {}
    owners: dict[str, str] = {}
    for index, customer in enumerate(rules_file.customers):
        label = f"customers[{index}] (customer_id={customer.customer_id})"
        if customer.customer_id in customers:
            problems.append(f"{label}: customer_id: duplicate customer")
        customers[customer.customer_id] = customer
        channel_ids = [channel.channel_id for channel in customer.channels]
        for duplicate in sorted({c for c in channel_ids if channel_ids.count(c) > 1}):
            problems.append(f"{label}: channels: duplicate channel_id {duplicate!r}")
        for account in customer.accounts:
            if account in owners and owners[account] != customer.customer_id:
                problems.append(f"{label}: accounts: {account} is already claimed by customer {owners[account]!r}")
            owners[account] = customer.customer_id
    seen: set[tuple[str, str]] = set()
    for index, rule in enumerate(rules_file.rules):
        label = f"rules[{index}] (customer_id={rule.customer_id}, rule_id={rule.rule_id})"
        if (rule.customer_id, rule.rule_id) in seen:
            problems.append(f"{label}: rule_id: duplicate rule for this customer")
        seen.add((rule.customer_id, rule.rule_id))
        owner = customers.get(rule.customer_id)
        if owner is None:
            problems.append(f"{label}: customer_id: no such customer in this file")
        elif rule.channel not in {channel.channel_id for channel in owner.channels}:
            problems.append(f"{label}: channel: {rule.channel!r} is not a channel of customer {rule.customer_id!r}")
        try:
            compile_rule(rule)
        except regex.error as exc:
            problems.append(f"{label}: patterns: invalid regex: {exc}")
    if problems:
        raise RulesFileError("invalid rules file:\n  " + "\n  ".join(problems))


def parse_rules_document(document: Any) -> RulesFile:
    if not isinstance(document, dict):
        raise RulesFileError("invalid rules file: the top level must be a mapping with 'customers' and 'rules'")
    rules_file = _validate_entries(document)
    _check_references(rules_file)
    return rules_file


def load_rules_file(path: Path) -> RulesFile:
    """Read and validate a rules file; raises `RulesFileError` naming every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesFileError(f"cannot read rules file {path}: {exc.strerror}") from None
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise RulesFileError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    try:
        return parse_rules_document(document)
    except RulesFileError as exc:
        raise RulesFileError(f"{path}: {exc}") from None


def dump_rules_file(rules_file: RulesFile) -> str:
    """The YAML form `load_rules_file` reads back (used by export)."""
    document = rules_file.model_dump(mode="json", exclude_defaults=True)
    for rule in document.get("rules", []):
        # Store state, not the customer's intent: importing the file registers (and vets) afresh.
        for state in ("version", "updated_at", "status", "quarantine_reason", "quarantined_at"):
            rule.pop(state, None)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
