"""Nothing lost, nothing twice: chaos replays end exactly where a clean replay ends.

Each replay is compared with a clean one: the same matches, each once; each notification id
once and no match left un-notified; every batch complete, completed by the consolidator exactly
once. Faults come from `--chaos RATE --seed N`, from a crash at each named step in turn, and from
hypothesis drawing small inputs and fault schedules.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.faults import CRASH_POINTS, FaultPoints, InjectedCrash
from pipeline.local.aws import local_aws
from pipeline.local.chaos import Chaos
from pipeline.local.replay import ReplayOptions, ReplayReport, replay
from tests import factories as f
from tests.harness import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_logs"
SEEDS = (1, 2, 3)
RATE = 0.2
AFTER_COMPLETE = "consolidator.after_complete"
"""Reached only when this call's conditional `complete` applied; a crash there loses the metric."""

MatchKey = tuple[str, str, str]


@dataclass(frozen=True)
class Outcome:
    """What a replay left behind, in the shapes the invariants compare."""

    report: ReplayReport
    matches: Counter[MatchKey]
    notification_ids: Counter[str]
    notifications: set[tuple[str, str]]
    """(notification_id, rendered body) pairs."""
    batches: list[dict[str, Any]]

    @property
    def batch_ids(self) -> list[str]:
        return [batch["batch_id"] for batch in self.batches]


def _replay(inputs: Path, rules: Path, out: Path, *, batch_size: int, **options: Any) -> Outcome:
    report = replay(ReplayOptions(inputs=[inputs], rules=rules, out=out, batch_size=batch_size, **options))
    notifications = read_jsonl(out / "notifications.jsonl")
    return Outcome(
        report=report,
        matches=Counter((m["customer_id"], m["rule_id"], m["event_id"]) for m in read_jsonl(out / "matches.jsonl")),
        notification_ids=Counter(n["notification_id"] for n in notifications),
        notifications={(n["notification_id"], json.dumps(n["body"], sort_keys=True)) for n in notifications},
        batches=read_jsonl(out / "batches.jsonl"),
    )


def _samples(out: Path, **options: Any) -> Outcome:
    # The same flags as `make replay` and the golden test: several batches fan in.
    return _replay(SAMPLES, SAMPLES / "rules.yaml", out, batch_size=8, **options)


def assert_same_end_state(outcome: Outcome, clean: Outcome, *, crashed_after_complete: int | None = None) -> None:
    """Every invariant of "nothing lost, nothing twice" against the clean run.

    The consolidator counts `BatchesCompleted` after its conditional `complete`; a crash right
    after completing (`crashed_after_complete`, by default what chaos injected there) loses that
    count but not the completion, so the two together are the batches completed, once each.
    """
    report = outcome.report
    if crashed_after_complete is None:
        crashed_after_complete = report.faults_injected.get(AFTER_COMPLETE, 0)
    assert set(outcome.matches) == set(clean.matches)
    assert not outcome.matches or max(outcome.matches.values()) == 1
    assert not outcome.notification_ids or max(outcome.notification_ids.values()) == 1
    # Notifications are not compared with the clean run's: a batch that Kinesis redelivers after
    # a failed invoke regroups its events into other sub-tasks (other ids), and a notification
    # delivered again after a crash may carry another count than its first delivery. What must
    # hold is above and below: each id once, and no match whose notification never went out.
    # A parser invoke refused past its retries sends its records back (batch item failures), and
    # Kinesis redelivers from the first of them on: when that is not the batch's first record, the
    # redelivered rest is a batch of its own (its events dedupe by match key). Every clean batch is
    # still there; without refused invokes the batches are exactly the clean run's.
    assert set(clean.batch_ids) <= set(outcome.batch_ids)
    if not report.faults_injected.get("invoke.refused"):
        assert outcome.batch_ids == clean.batch_ids
    assert {batch["status"] for batch in outcome.batches} <= {"complete"}
    assert report.complete_batches == report.batches
    assert (report.abandoned_subtasks, report.unnotified_matches) == (0, 0)
    assert report.ok
    assert int(report.metrics.get("BatchesCompleted", 0)) + crashed_after_complete == report.batches


# -- sample_logs under --chaos 0.2 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    outcome = _samples(tmp_path_factory.mktemp("clean"))
    assert outcome.matches and outcome.notification_ids and outcome.report.ok
    assert max(outcome.matches.values()) == 1 and max(outcome.notification_ids.values()) == 1
    assert outcome.report.metrics.get("BatchesCompleted") == outcome.report.batches
    return outcome


@pytest.fixture(scope="module")
def chaotic(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Outcome]:
    return {seed: _samples(tmp_path_factory.mktemp(f"chaos-{seed}"), chaos_rate=RATE, seed=seed) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_chaos_replay_ends_exactly_where_the_clean_replay_ends(
    chaotic: dict[int, Outcome], clean: Outcome, seed: int
) -> None:
    outcome = chaotic[seed]

    assert_same_end_state(outcome, clean)
    assert sum(outcome.report.faults_injected.values()) > 0


def test_chaos_injects_many_kinds_of_fault_across_the_seeds(chaotic: dict[int, Outcome]) -> None:
    kinds = {kind for outcome in chaotic.values() for kind, count in outcome.report.faults_injected.items() if count}

    assert len(kinds) >= 4, kinds
    assert {"dynamodb.error", "kinesis.redelivered"} <= kinds


def test_an_injected_dynamodb_fault_never_reaches_the_table() -> None:
    # Given a client whose every request is throttled or fails (rate 0.999, fixed seed)
    with local_aws() as aws:
        chaos = Chaos(0.999, seed=1)
        chaos.attach_dynamodb(aws.dynamodb.unwrapped)
        table = aws.names.batches_table
        key = {"pk": {"S": "BATCH#b-1"}, "sk": {"S": "#BATCH"}}

        # When
        with pytest.raises(ClientError, match=r"ThrottlingException|InternalServerError"):
            aws.dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="ADD finished_tasks :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

        # Then, as on AWS, a throttled or failed request changed nothing
        assert chaos.injected["dynamodb.error"] >= 1
        undisturbed = aws.new_dynamodb()
        assert "Item" not in undisturbed.get_item(TableName=table, Key=key, ConsistentRead=True)


# -- a crash at every named step -----------------------------------------------------------------


class CrashOnceAt:
    """Crashes the first time each key reaches `point` (never again), and counts every arrival."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.crashes = 0
        self.arrivals: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def reached(self, point: str, key: str) -> None:
        with self._lock:
            self.arrivals[(point, key)] += 1
            crash = point == self.point and self.arrivals[(point, key)] == 1
            self.crashes += crash
        if crash:
            raise InjectedCrash(f"crash at {point} ({key})")


def test_the_crash_injector_is_a_fault_points_implementation() -> None:
    injector: FaultPoints = CrashOnceAt("parser.after_send")

    injector.reached("parser.after_record_matches", "n-1")
    with pytest.raises(InjectedCrash):
        injector.reached("parser.after_send", "n-1")
    injector.reached("parser.after_send", "n-1")
    with pytest.raises(InjectedCrash):
        injector.reached("parser.after_send", "n-2")


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_each_step_is_recovered_exactly(
    point: str, clean: Outcome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given a crash the first time each key reaches `point`
    injector = CrashOnceAt(point)

    # When
    outcome = _samples(tmp_path_factory.mktemp("crash"), crash_points=injector)

    # Then the step was really reached, and the replay ends as the clean one did
    assert injector.crashes >= 1, f"sample_logs never reaches {point}"
    assert_same_end_state(outcome, clean, crashed_after_complete=injector.crashes if point == AFTER_COMPLETE else 0)
    # Each batch's conditional `complete` applied exactly once: the step after it was reached once.
    completed = {key: count for (reached, key), count in injector.arrivals.items() if reached == AFTER_COMPLETE}
    assert completed == dict.fromkeys(outcome.batch_ids, 1)


# -- random inputs and fault schedules -----------------------------------------------------------

ACME, GLOBEX, STRANGER = "111122223333", "777788889999", "999900001111"
PROPERTY_RULES: dict[str, Any] = {
    "customers": [
        {
            "customer_id": "acme",
            "accounts": [ACME],
            "channels": [{"channel_id": "ops", "type": "webhook", "url": "https://hooks.example.com/acme"}],
        },
        {
            "customer_id": "globex",
            "accounts": [GLOBEX],
            "channels": [{"channel_id": "sre", "type": "slack", "url": "https://hooks.slack.com/services/T/B/X"}],
        },
    ],
    "rules": [
        {"customer_id": "acme", "rule_id": "errors", "patterns": ["ERROR"], "channel": "ops"},
        {"customer_id": "globex", "rule_id": "panics", "patterns": ["panic"], "channel": "sre"},
    ],
}
TEXTS = ("ERROR card declined", "INFO request ok", "kernel panic: oom", "all good", "ERROR then panic", "debug")
RULE_OF_OWNER = {ACME: ("acme", "errors", "ERROR"), GLOBEX: ("globex", "panics", "panic")}

messages_strategy = st.lists(
    st.tuples(st.sampled_from([ACME, GLOBEX, STRANGER]), st.lists(st.sampled_from(TEXTS), min_size=1, max_size=6)),
    min_size=1,
    max_size=4,
)


def _expected(messages: list[dict[str, Any]]) -> set[MatchKey]:
    expected: set[MatchKey] = set()
    for message in messages:
        if message["owner"] in RULE_OF_OWNER:
            customer_id, rule_id, pattern = RULE_OF_OWNER[message["owner"]]
            expected |= {(customer_id, rule_id, e["id"]) for e in message["logEvents"] if pattern in e["message"]}
    return expected


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drawn=messages_strategy,
    redeliver=st.booleans(),
    rate=st.floats(min_value=0.05, max_value=0.3),
    seed=st.integers(min_value=0, max_value=2**31),
    batch_size=st.integers(min_value=1, max_value=3),
)
def test_random_inputs_under_random_faults_end_as_a_clean_run(
    tmp_path_factory: pytest.TempPathFactory,
    drawn: list[tuple[str, list[str]]],
    redeliver: bool,
    rate: float,
    seed: int,
    batch_size: int,
) -> None:
    # Given small CloudWatch Logs traffic, some of it delivered twice (as CloudWatch Logs may)
    directory = tmp_path_factory.mktemp("property")
    messages = [f.logs_message(owner, texts) for owner, texts in drawn]
    if redeliver:
        messages.append(messages[0])
    inputs = directory / "inputs"
    inputs.mkdir()
    (inputs / "messages.jsonl").write_text("".join(json.dumps(m) + "\n" for m in messages), encoding="utf-8")
    rules = directory / "rules.yaml"
    rules.write_text(yaml.safe_dump(PROPERTY_RULES), encoding="utf-8")

    # When
    clean = _replay(inputs, rules, directory / "clean", batch_size=batch_size)
    chaotic = _replay(inputs, rules, directory / "chaos", batch_size=batch_size, chaos_rate=rate, seed=seed)

    # Then
    assert set(clean.matches) == _expected(messages)
    assert not clean.matches or max(clean.matches.values()) == 1
    assert_same_end_state(chaotic, clean)
