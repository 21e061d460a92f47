"""RulesService over DynamoDBConfigStore on moto: versioned, vetted writes; quarantine; files; trying rules."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.errors import ConflictError, NotFoundError, RejectedError
from pipeline.local.aws import LocalAws
from pipeline.models import Channel, ChannelType, Customer, Rule
from pipeline.rules_file import parse_rules_document
from pipeline.rules_service import RulesService
from pipeline.vetting import VettingLimits
from tests import factories as f

SLACK = "https://hooks.slack.com/services/T0/B0/secret"


def _store(aws: LocalAws) -> DynamoDBConfigStore:
    return DynamoDBConfigStore(aws.dynamodb, "logfan-config", clock=lambda: 1_800_000_000)


@pytest.fixture
def service(aws: LocalAws) -> RulesService:
    service = RulesService(_store(aws), VettingLimits())
    service.add_customer("acme", name="Acme", accounts=["111122223333"])
    service.put_channel("acme", Channel(channel_id="ops", type=ChannelType.SLACK, url=SLACK))
    return service


def _rule(rule_id: str = "cards", *patterns: str, customer: str = "acme") -> Rule:
    return Rule(customer_id=customer, rule_id=rule_id, patterns=list(patterns) or ["CreditCardExpired"], channel="ops")


def test_a_rule_is_created_at_version_1_and_each_edit_adds_one(service: RulesService) -> None:
    created = service.create_rule(_rule())

    edited = service.update_rule(_rule("cards", "CardExpired"))
    again = service.update_rule(_rule("cards", "CardDeclined"), expected_version=2)

    assert (created.version, edited.version, again.version) == (1, 2, 3)
    assert service.get_rule("acme", "cards").patterns == ["CardDeclined"]
    assert service.get_rule("acme", "cards").updated_at == 1_800_000_000


def test_an_edit_from_a_stale_version_is_refused(service: RulesService) -> None:
    service.create_rule(_rule())
    service.update_rule(_rule("cards", "A1"), expected_version=1)

    with pytest.raises(ConflictError, match="at version 2, not 1"):
        service.update_rule(_rule("cards", "B1"), expected_version=1)
    assert service.get_rule("acme", "cards").patterns == ["A1"]


def test_creating_an_existing_rule_conflicts_and_a_missing_one_is_not_found(service: RulesService) -> None:
    service.create_rule(_rule())

    with pytest.raises(ConflictError):
        service.create_rule(_rule())
    with pytest.raises(NotFoundError):
        service.update_rule(_rule("ghost"))
    with pytest.raises(NotFoundError):
        service.remove_rule("acme", "ghost")


def test_a_catastrophic_rule_is_never_stored(service: RulesService) -> None:
    with pytest.raises(RejectedError, match="backtracks catastrophically"):
        service.create_rule(_rule("csv", r"^(.*?,){11}P"))

    assert service.list_rules("acme") == []


def test_a_rule_on_another_customers_channel_or_an_unknown_customer_is_refused(service: RulesService) -> None:
    service.add_customer("globex")

    with pytest.raises(RejectedError, match="not a channel of this customer"):
        service.create_rule(_rule(customer="globex"))
    with pytest.raises(NotFoundError, match="no customer 'initech'"):
        service.create_rule(_rule(customer="initech"))


def test_quarantine_is_conditional_idempotent_shown_and_lifted_by_an_edit(aws: LocalAws, service: RulesService) -> None:
    # Given a registered rule
    store = _store(aws)
    service.create_rule(_rule())

    # When the parser quarantines it twice
    first = store.quarantine_rule("acme", "cards", "timed out on 12 lines", 1_800_000_000_123)
    second = store.quarantine_rule("acme", "cards", "again", 1_800_000_000_999)

    # Then only the first call applies, and listing shows the reason and time at the same version
    (listed,) = service.list_rules("acme")
    assert (first, second) == (True, False)
    assert (listed.status, listed.quarantine_reason, listed.quarantined_at, listed.version) == (
        "quarantined",
        "timed out on 12 lines",
        1_800_000_000_123,
        1,
    )

    # And an edit lifts it
    edited = service.update_rule(_rule("cards", "CardExpired"), expected_version=1)
    assert (edited.status, edited.quarantine_reason, edited.quarantined_at) == ("active", "", None)
    assert service.get_rule("acme", "cards").status == "active"


def test_quarantine_leaves_missing_or_since_edited_rules_alone(aws: LocalAws, service: RulesService) -> None:
    store = _store(aws)
    service.create_rule(_rule())
    service.update_rule(_rule("cards", "Fixed"))

    assert store.quarantine_rule("acme", "ghost", "slow", 1) is False
    assert store.quarantine_rule("acme", "cards", "slow", 1, version=1) is False
    assert service.get_rule("acme", "cards").status == "active"


def test_rules_written_before_versioning_still_load(aws: LocalAws) -> None:
    # Given a rule item as older code wrote it (no status, no quarantine fields)
    aws.dynamodb.put_item(
        TableName="logfan-config",
        Item={
            "pk": {"S": "CUSTOMER#acme"},
            "sk": {"S": "RULE#old"},
            "customer_id": {"S": "acme"},
            "rule_id": {"S": "old"},
            "patterns": {"L": [{"S": "ERROR"}]},
            "channel": {"S": "ops"},
            "version": {"N": "1"},
            "updated_at": {"N": "1700000000"},
        },
    )

    rule = _store(aws).get_rule("acme", "old")

    assert rule is not None
    assert (rule.status, rule.version, rule.updated_at) == ("active", 1, 1_700_000_000)


def test_customers_are_listed_and_adding_again_keeps_channels_and_accounts(service: RulesService) -> None:
    service.add_customer("globex", accounts=["444455556666"])
    service.add_customer("acme", accounts=["777788889999"])

    customers = {c.customer_id: c for c in service.list_customers()}

    assert sorted(customers) == ["acme", "globex"]
    assert customers["acme"].accounts == ["111122223333", "777788889999"]
    assert customers["acme"].name == "Acme"
    assert [c.channel_id for c in customers["acme"].channels] == ["ops"]


def test_channels_are_vetted_and_a_channel_in_use_cannot_be_removed(service: RulesService) -> None:
    service.create_rule(_rule())

    with pytest.raises(RejectedError, match="not a public address"):
        service.put_channel(
            "acme", Channel(channel_id="meta", type=ChannelType.WEBHOOK, url="https://169.254.169.254/x")
        )
    with pytest.raises(ConflictError, match="used by rule"):
        service.remove_channel("acme", "ops")
    assert [c.channel_id for c in service.list_channels("acme")] == ["ops"]


def test_principals_map_to_one_customer_only(service: RulesService) -> None:
    role = "arn:aws:iam::111122223333:role/acme-admin"
    service.add_customer("acme", principals=[role])

    with pytest.raises(ConflictError):
        service.add_customer("globex", principals=[role])
    assert service.customer_for_principal(role) == "acme"


def test_import_vets_everything_first_then_creates_updates_and_skips(service: RulesService) -> None:
    # Given one stored rule
    service.create_rule(_rule())
    document: dict[str, Any] = {
        "customers": [
            {
                "customer_id": "acme",
                "accounts": ["111122223333"],
                "channels": [{"channel_id": "ops", "type": "slack", "url": SLACK}],
            }
        ],
        "rules": [
            {"customer_id": "acme", "rule_id": "cards", "patterns": ["CreditCardExpired"], "channel": "ops"},
            {
                "customer_id": "acme",
                "rule_id": "oom",
                "patterns": [r"(?<=Max Memory Used: )\d{4,} MB"],
                "channel": "ops",
            },
        ],
    }

    # When a file with a catastrophic rule is imported, nothing is written
    bad = {
        **document,
        "rules": [
            *document["rules"],
            {"customer_id": "acme", "rule_id": "csv", "patterns": [r"^(.*?,){11}P"], "channel": "ops"},
        ],
    }
    with pytest.raises(RejectedError, match="rule acme/csv"):
        service.import_file(parse_rules_document(bad))
    assert [r.rule_id for r in service.list_rules("acme")] == ["cards"]

    # And a good one creates what is new and leaves what is unchanged
    report = service.import_file(parse_rules_document(document))
    assert (report.created, report.updated, report.unchanged) == (["acme/oom"], [], ["acme/cards"])

    # And the export reads back as the same file
    exported = service.export_file(["acme"])
    assert [r.rule_id for r in exported.rules] == ["cards", "oom"]
    assert exported.customers == [Customer.model_validate(document["customers"][0])]


def test_trying_rules_shows_what_fires_and_each_rules_time(service: RulesService) -> None:
    service.create_rule(_rule("cards", "CreditCardExpired"))
    service.create_rule(_rule("tier", "UserTier=BigBucksCustomer"))
    lines = ["INFO ok", "ERROR UserTier=BigBucksCustomer CreditCardExpired", "WARN CreditCardExpired"]

    report = service.test_rules("acme", lines)
    only = service.test_rules("acme", lines, rule_id="tier")

    fired = {r.rule.rule_id: r.matched_lines for r in report.results}
    assert fired == {"cards": (2, 3), "tier": (2,)}
    assert all(r.spent_ms >= 0 and r.timeouts == 0 for r in report.results)
    assert [r.rule.rule_id for r in only.results] == ["tier"]


def test_trying_rules_reports_timeouts_of_a_slow_rule(aws: LocalAws, service: RulesService) -> None:
    # Given a catastrophic rule that got in before vetting (written directly)
    _store(aws).put_rule(f.rule("acme", "csv", r"^(.*?,){11}P").model_copy(update={"channel": "ops"}))

    report = service.test_rules("acme", ["," * 40, "ok"], timeout_ms=20)

    (result,) = report.results
    assert result.timeouts == 1
    assert result.matched_lines == ()


# -- webhook signing secrets -------------------------------------------------------------------

HOOK = "https://alerts.acme.example/logfan"


def _secrets(*values: str) -> Any:
    queue = list(values)
    return lambda: queue.pop(0)


def _hook(secret: str | None = None) -> Channel:
    return Channel(channel_id="hook", type=ChannelType.WEBHOOK, url=HOOK, secret=secret)


def test_a_new_webhook_gets_a_generated_secret_returned_once(aws: LocalAws) -> None:
    # Given a service that generates known secrets
    service = RulesService(_store(aws), VettingLimits(), new_secret=_secrets("lfs_first-secret-0123456789"))
    service.add_customer("acme")

    # When a webhook is added without a secret
    write = service.put_channel("acme", _hook())

    # Then the write returns the generated secret, the store keeps it, and reading never shows it again
    assert (write.created, write.new_secret) == (True, "lfs_first-secret-0123456789")
    stored = service.get_channel("acme", "hook")
    assert stored.secret == "lfs_first-secret-0123456789"
    assert "lfs_first" not in str(service.export_file(["acme"]).model_dump())


def test_an_edit_keeps_the_secret_unless_rotated_and_a_given_one_is_used(aws: LocalAws) -> None:
    service = RulesService(
        _store(aws), VettingLimits(), new_secret=_secrets("lfs_first-secret-0123456789", "lfs_second-secret-012345678")
    )
    service.add_customer("acme")
    service.put_channel("acme", _hook())

    kept = service.put_channel("acme", _hook())
    rotated = service.put_channel("acme", _hook(), rotate_secret=True)
    given = service.put_channel("acme", _hook("customer-chosen-secret-1"))

    assert (kept.created, kept.new_secret, kept.channel.secret) == (False, None, "lfs_first-secret-0123456789")
    assert rotated.new_secret == rotated.channel.secret == "lfs_second-secret-012345678"
    assert (given.new_secret, service.get_channel("acme", "hook").secret) == (None, "customer-chosen-secret-1")


def test_slack_sns_and_eventbridge_channels_have_no_secret(service: RulesService) -> None:
    write = service.put_channel("acme", Channel(channel_id="bus", type=ChannelType.EVENTBRIDGE, bus="acme-alerts"))

    assert (write.new_secret, write.channel.secret) == (None, None)
    with pytest.raises(ValueError, match="only webhook channels have a signing secret"):
        Channel(channel_id="ops", type=ChannelType.SLACK, url=SLACK, secret="lfs_not-for-slack-0123")


def test_an_import_generates_secrets_once_and_keeps_them_and_the_delivery_record(aws: LocalAws) -> None:
    # Given a rules file with a webhook without a secret
    store = _store(aws)
    service = RulesService(store, VettingLimits(), new_secret=_secrets("lfs_imported-secret-0123456", "lfs_x" * 4))
    document: dict[str, Any] = {
        "customers": [{"customer_id": "acme", "channels": [{"channel_id": "hook", "type": "webhook", "url": HOOK}]}],
        "rules": [],
    }

    # When it is imported, a delivery fails, and it is imported again unchanged
    first = service.import_file(parse_rules_document(document))
    store.record_delivery_failure("acme", "hook", error="HTTP 410", at_ms=5)
    second = service.import_file(parse_rules_document(document))

    # Then the first import reported the generated secret, the second kept it and the record
    assert first.secrets == {"acme/hook": "lfs_imported-secret-0123456"}
    assert second.secrets == {}
    hook = service.get_channel("acme", "hook")
    assert (hook.secret, hook.failures) == ("lfs_imported-secret-0123456", 1)
