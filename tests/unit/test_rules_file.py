"""The rules file: what loads, and how precisely every problem is named."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.errors import RulesFileError
from pipeline.models import ChannelType
from pipeline.rules_file import RulesFile, dump_rules_file, load_rules_file, parse_rules_document

SAMPLE_RULES = Path(__file__).resolve().parents[2] / "sample_logs" / "rules.yaml"

YAML_TEXT = """\
customers:
  - customer_id: acme
    name: Acme Corp
    accounts: ["111122223333", "444455556666"]
    channels:
      - {channel_id: ops, type: slack, url: "https://hooks.slack.com/services/T/B/X"}
      - {channel_id: topic, type: sns, topic_arn: "arn:aws:sns:us-east-1:111122223333:alerts"}
  - customer_id: globex
    accounts: ["777788889999"]
    channels:
      - {channel_id: hook, type: webhook, url: "https://globex.example/hook"}
rules:
  - customer_id: acme
    rule_id: declines
    name: Card declines
    patterns: ['card (?:declined|expired)', '(?<=tier=)gold']
    match: all
    ignore_case: true
    log_groups: ["/aws/lambda/payments-*"]
    channel: ops
  - customer_id: globex
    rule_id: errors
    patterns: ["ERROR"]
    channel: hook
"""


def _document() -> dict[str, Any]:
    document = yaml.safe_load(YAML_TEXT)
    assert isinstance(document, dict)
    return document


def _problem(document: Any) -> str:
    with pytest.raises(RulesFileError) as caught:
        parse_rules_document(document)
    return str(caught.value)


def test_a_yaml_rules_file_loads(tmp_path: Path) -> None:
    # Given the YAML form
    path = tmp_path / "rules.yaml"
    path.write_text(YAML_TEXT, encoding="utf-8")

    # When loaded
    rules_file = load_rules_file(path)

    # Then customers, channels and rules arrive with their settings
    assert [c.customer_id for c in rules_file.customers] == ["acme", "globex"]
    assert rules_file.customers[0].accounts == ["111122223333", "444455556666"]
    assert [c.type for c in rules_file.customers[0].channels] == [ChannelType.SLACK, ChannelType.SNS]
    declines = rules_file.rules[0]
    assert declines.rule_id == "declines"
    assert (declines.match, declines.ignore_case, declines.channel) == ("all", True, "ops")
    assert declines.patterns == ["card (?:declined|expired)", "(?<=tier=)gold"]
    assert declines.log_groups == ["/aws/lambda/payments-*"]
    assert rules_file.rules[1].match == "any"


def test_a_json_rules_file_loads_the_same(tmp_path: Path) -> None:
    yaml_path, json_path = tmp_path / "rules.yml", tmp_path / "rules.json"
    yaml_path.write_text(YAML_TEXT, encoding="utf-8")
    json_path.write_text(json.dumps(_document()), encoding="utf-8")

    assert load_rules_file(json_path) == load_rules_file(yaml_path)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    # Given a file with one problem
    document = _document()
    document["rules"][1]["channel"] = "nope"
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    # Then the error names the file as well as the entry
    with pytest.raises(RulesFileError, match=re.escape(f"{path}: invalid rules file")):
        load_rules_file(path)


def test_unparseable_and_missing_files_are_rules_file_errors(tmp_path: Path) -> None:
    broken_yaml, broken_json = tmp_path / "rules.yaml", tmp_path / "rules.json"
    broken_yaml.write_text("customers: [unclosed", encoding="utf-8")
    broken_json.write_text("{", encoding="utf-8")

    with pytest.raises(RulesFileError, match="not valid YAML"):
        load_rules_file(broken_yaml)
    with pytest.raises(RulesFileError, match="not valid JSON"):
        load_rules_file(broken_json)
    with pytest.raises(RulesFileError, match="cannot read rules file"):
        load_rules_file(tmp_path / "missing.yaml")


def test_the_top_level_must_be_a_mapping() -> None:
    assert "top level must be a mapping" in _problem(["customers"])
    assert "top level must be a mapping" in _problem(None)


def test_an_unknown_top_level_key_is_named() -> None:
    document = _document()
    document["rule"] = []

    assert "unknown top-level key(s): rule" in _problem(document)


def test_an_invalid_regex_names_the_rule_and_the_patterns_field() -> None:
    # Given a second rule whose pattern does not compile
    document = _document()
    document["rules"][1] = {"customer_id": "acme", "rule_id": "bad", "patterns": ["ok", "(unclosed"], "channel": "ops"}

    # Then the message names the entry, its ids and the field
    message = _problem(document)

    assert "rules[1] (customer_id=acme, rule_id=bad): patterns: invalid regex" in message
    assert "(unclosed" in message


def test_a_rule_for_an_unknown_customer_is_named() -> None:
    document = _document()
    document["rules"][1]["customer_id"] = "initech"

    assert "rules[1] (customer_id=initech, rule_id=errors): customer_id: no such customer" in _problem(document)


def test_a_rule_naming_a_channel_its_customer_lacks_is_named() -> None:
    # Given globex's rule pointing at acme's channel
    document = _document()
    document["rules"][1]["channel"] = "ops"

    assert "rules[1] (customer_id=globex, rule_id=errors): channel: 'ops' is not a channel of customer 'globex'" in (
        _problem(document)
    )


def test_duplicate_rule_ids_of_one_customer_are_named() -> None:
    document = _document()
    document["rules"].append(dict(document["rules"][1]))

    assert "rules[2] (customer_id=globex, rule_id=errors): rule_id: duplicate rule" in _problem(document)


def test_the_same_rule_id_for_two_customers_is_fine() -> None:
    document = _document()
    document["rules"].append({"customer_id": "acme", "rule_id": "errors", "patterns": ["ERROR"], "channel": "ops"})

    assert len(parse_rules_document(document).rules) == 3


def test_an_account_claimed_by_two_customers_is_named() -> None:
    document = _document()
    document["customers"][1]["accounts"].append("444455556666")

    assert (
        "customers[1] (customer_id=globex): accounts: 444455556666 is already claimed by customer 'acme'"
        in _problem(document)
    )


def test_duplicate_customers_and_channels_are_named() -> None:
    document = _document()
    document["customers"][1]["channels"].append({"channel_id": "hook", "type": "webhook", "url": "https://x.example"})
    document["customers"].append({"customer_id": "acme"})

    message = _problem(document)

    assert "customers[1] (customer_id=globex): channels: duplicate channel_id 'hook'" in message
    assert "customers[2] (customer_id=acme): customer_id: duplicate customer" in message


@pytest.mark.parametrize("account", ["1234", "1111222233334", "11112222333a"])
def test_an_account_that_is_not_12_digits_is_named(account: str) -> None:
    document = _document()
    document["customers"][1]["accounts"] = [account]

    assert "customers[1] (customer_id=globex): accounts.0:" in _problem(document)


def test_an_unquoted_account_number_is_named() -> None:
    # YAML reads `accounts: [777788889999]` as an int; the file must quote it
    document = _document()
    document["customers"][1]["accounts"] = [777788889999]

    assert "customers[1] (customer_id=globex): accounts.0: Input should be a valid string" in _problem(document)


def test_a_slack_channel_without_url_is_named() -> None:
    document = _document()
    del document["customers"][0]["channels"][0]["url"]

    message = _problem(document)

    assert "customers[0] (customer_id=acme): channels.0:" in message
    assert "needs a url" in message


def test_an_sns_channel_without_topic_arn_is_named() -> None:
    document = _document()
    del document["customers"][0]["channels"][1]["topic_arn"]

    message = _problem(document)

    assert "customers[0] (customer_id=acme): channels.1:" in message
    assert "needs a topic_arn" in message


def test_every_problem_is_reported_at_once() -> None:
    # Given two broken entries in different sections
    document = _document()
    document["customers"][1]["accounts"] = ["12"]
    del document["rules"][0]["patterns"]

    # Then both are named in one error
    message = _problem(document)

    assert "customers[1] (customer_id=globex): accounts.0:" in message
    assert "rules[0] (customer_id=acme, rule_id=declines): patterns: Field required" in message


def test_an_unknown_rule_field_is_named() -> None:
    document = _document()
    document["rules"][0]["pattern"] = "typo"

    assert "rules[0] (customer_id=acme, rule_id=declines): pattern: Extra inputs are not permitted" in _problem(
        document
    )


def test_dump_round_trips_through_parse() -> None:
    # Given a loaded rules file
    original = parse_rules_document(_document())

    # When dumped to YAML and parsed back
    text = dump_rules_file(original)
    reloaded = parse_rules_document(yaml.safe_load(text))

    # Then nothing changed, and account ids stay strings
    assert reloaded == original
    assert "'111122223333'" in text


def test_an_empty_rules_file_is_valid() -> None:
    assert parse_rules_document({}) == RulesFile()


def test_the_sample_rules_file_loads() -> None:
    rules_file = load_rules_file(SAMPLE_RULES)

    assert rules_file.customers
    assert rules_file.rules
    assert {r.customer_id for r in rules_file.rules} <= {c.customer_id for c in rules_file.customers}
