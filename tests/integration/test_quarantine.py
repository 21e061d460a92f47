"""Run-time quarantine of rules that keep overrunning their time budget, on moto."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.adapters.dynamodb_matches import DynamoDBMatchStore
from pipeline.adapters.dynamodb_rule_health import DynamoDBRuleHealthStore
from pipeline.local.aws import LocalAws
from pipeline.models import RuleStats
from pipeline.ports import NotificationStatus
from pipeline.quarantining import QuarantinePolicy, overran, quarantine_notice
from pipeline.routing import compute_batch_id
from tests import factories as f
from tests.harness import harness

ACME, GLOBEX = "111122223333", "777788889999"
CATASTROPHIC = r"^(.*?,){11}P"
HOUR_MS = 3_600_000


@pytest.fixture
def stores(aws: LocalAws) -> tuple[DynamoDBConfigStore, DynamoDBRuleHealthStore, DynamoDBMatchStore]:
    config = DynamoDBConfigStore(aws.dynamodb, aws.names.config_table)
    outbox = DynamoDBMatchStore(aws.dynamodb, aws.names.matches_table)
    config.put_customer(f.customer("acme", [ACME]))
    config.put_rule(f.rule("acme", "csv", CATASTROPHIC))
    return config, DynamoDBRuleHealthStore(aws.dynamodb, aws.names.config_table, outbox), outbox


def test_a_rule_overran_when_a_line_timed_out_or_its_budget_ran_out() -> None:
    assert overran(RuleStats(timeouts=1))
    assert overran(RuleStats(skipped_lines=3))
    assert not overran(RuleStats(matches=10))


def test_strikes_count_per_rule_version_and_lapse_after_the_window(
    stores: tuple[DynamoDBConfigStore, DynamoDBRuleHealthStore, DynamoDBMatchStore],
) -> None:
    _, health, _ = stores

    def strike(version: int, at: int) -> int:
        return health.record_strike("acme", "csv", version=version, now_ms=at, window_ms=HOUR_MS)

    assert [strike(1, 0), strike(1, 1000), strike(1, 2000)] == [1, 2, 3]
    # An edit (a new version) starts afresh, and so does a strike after the window
    assert strike(2, 3000) == 1
    assert strike(2, 3000 + HOUR_MS + 1) == 1


def test_quarantine_happens_once_and_queues_its_notice_in_the_same_write(
    stores: tuple[DynamoDBConfigStore, DynamoDBRuleHealthStore, DynamoDBMatchStore],
) -> None:
    config, health, outbox = stores
    rule = config.get_rule("acme", "csv")
    assert rule is not None
    notice = quarantine_notice(rule, "webhook", reason="too slow", at_ms=5)

    assert health.quarantine(rule, reason="too slow", at_ms=5, notice=notice, expires_at=0)
    assert not health.quarantine(rule, reason="too slow", at_ms=6, notice=notice, expires_at=0)

    stored = config.get_rule("acme", "csv")
    assert stored is not None and (stored.status, stored.quarantine_reason, stored.quarantined_at) == (
        "quarantined",
        "too slow",
        5,
    )
    (queued,) = outbox.held_notifications(due_before_ms=1)
    assert (queued.notification.kind, queued.status) == ("quarantine", NotificationStatus.HELD)


def test_an_edited_rule_is_not_quarantined_for_its_old_version(
    stores: tuple[DynamoDBConfigStore, DynamoDBRuleHealthStore, DynamoDBMatchStore],
) -> None:
    config, health, outbox = stores
    old = config.get_rule("acme", "csv")
    assert old is not None
    config.update_rule(old.model_copy(update={"patterns": ["P$"]}), expected_version=old.version)

    notice = quarantine_notice(old, "webhook", reason="too slow", at_ms=5)
    assert not health.quarantine(old, reason="too slow", at_ms=5, notice=notice, expires_at=0)
    assert outbox.held_notifications(due_before_ms=2**62) == []


def test_a_rule_that_keeps_overrunning_is_quarantined_and_its_customer_told_once(aws: LocalAws, tmp_path: Path) -> None:
    # Given a catastrophic rule that slipped past vetting, beside a good rule and another customer
    with harness(aws, tmp_path, parser_overrides={"quarantine": QuarantinePolicy(strikes=2)}) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_customer(f.customer("globex", [GLOBEX]))
        h.config.put_rule(f.rule("acme", "csv", CATASTROPHIC))
        h.config.put_rule(f.rule("acme", "errors", "ERROR"))
        h.config.put_rule(f.rule("globex", "panics", "panic"))
        summaries = []

        # When three batches arrive, each with a line that makes the rule blow up
        for n in range(3):
            acme = [f.event(f"ERROR {n} " + "x," * 40 + "end")]
            globex = [f.event(f"kernel panic {n}")]
            event = f.kinesis_event(
                [f.encode(f.logs_message(ACME, events=acme)), f.encode(f.logs_message(GLOBEX, events=globex))]
            )
            h.fan_out(event)
            h.settle()
            batch = h.tracking.get_batch(compute_batch_id(r["eventID"] for r in event["Records"]))
            assert batch is not None and batch.summary is not None
            summaries.append(batch.summary)

        # Then the second strike quarantined it, and the third batch never ran it
        assert [s.rule_timeouts.get("acme/csv", 0) for s in summaries] == [1, 1, 0]
        rule = h.config.get_rule("acme", "csv")
        assert rule is not None and rule.quarantined and "time budget" in rule.quarantine_reason
        # Every batch still matched everything else, for both customers
        assert [s.matches_by_rule for s in summaries] == [{"acme/errors": 1, "globex/panics": 1}] * 3
        # The customer heard about it once, on the rule's channel (the other rules' later alerts
        # waited for their digest windows; the last dispatcher run sends those, not the notice)
        drained = h.dispatch(drain=True)
        assert (drained.digests, drained.folded) == (2, 4)
        (notice,) = [e for e in h.matches.outbox() if e.notification.kind == "quarantine"]
        assert (notice.status, notice.notification.rule_id) == (NotificationStatus.SENT, "csv")
        assert "time budget" in notice.notification.detail
        sent = Counter(n["notification_id"] for n in h.notification_lines())
        assert sent[notice.notification.notification_id] == 1
        assert h.metrics.snapshot()["RulesQuarantined"] == 1
        assert h.dispatch(drain=True).due == 0
        assert h.matches.unnotified() == []

        # When the customer edits the rule, the edit lifts the quarantine
        h.config.update_rule(
            rule.model_copy(update={"patterns": ["end$"], "status": "active"}), expected_version=rule.version
        )
        edited = h.config.get_rule("acme", "csv")
        assert edited is not None and not edited.quarantined and edited.version == rule.version + 1
