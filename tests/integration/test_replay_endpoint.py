"""`logfan replay --endpoint-url`: the real handlers in-process over a moto server that outlives the replay.

Rules registered with `logfan customers/channels/rules ... --endpoint-url` in one command are the rules a
replay in the next command runs; each replay reports only its own records, and what an earlier replay
matched is never matched nor notified again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.config import ResourceNames
from tests.factories import event, logs_message

ACCOUNT = "111122223333"
SLACK = "https://hooks.slack.com/services/T0/B0/s3cr3t"


@pytest.fixture
def prefix(server_names: ResourceNames) -> str:
    """Each test its own resources on the shared server (AWS_ENDPOINT_URL left as the test sets it)."""
    return server_names.prefix


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _register(capsys: pytest.CaptureFixture[str], server: str, prefix: str) -> None:
    """A customer owning ACCOUNT, a Slack channel and one rule, through the CLI against the server."""
    aws = ("--endpoint-url", server, "--table", f"{prefix}-config")
    commands = [
        ("customers", "add", "acme", "--account", ACCOUNT, *aws),
        ("channels", "add", "--customer", "acme", "ops", "--type", "slack", "--url", SLACK, *aws),
        ("rules", "add", "--customer", "acme", "card", "--pattern", "CreditCardExpired", "--channel", "ops", *aws),
    ]
    for command in commands:
        status, _, err = _run(capsys, *command)
        assert status == 0, (command, err)


def _input(path: Path, *messages: tuple[str, str]) -> Path:
    """One CloudWatch Logs message of ACCOUNT per call, events as (event id, message)."""
    document = logs_message(ACCOUNT, events=[event(message, event_id=event_id) for event_id, message in messages])
    path.write_text(json.dumps(document) + "\n", encoding="utf-8")
    return path


def _replay(capsys: pytest.CaptureFixture[str], server: str, prefix: str, out: Path, *argv: str) -> str:
    status, stdout, err = _run(
        capsys, "replay", *argv, "--out", str(out), "--endpoint-url", server, "--prefix", prefix, "-q"
    )
    assert status == 0, (stdout, err)
    return stdout


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _event_id(n: int) -> str:
    return f"{n:056d}"


def test_a_replay_runs_the_rules_registered_on_the_server(
    server: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a customer, a channel and a rule registered on the server by earlier commands
    _register(capsys, server, prefix)
    logs = _input(tmp_path / "first.jsonl", (_event_id(1), "CreditCardExpired user=7"), (_event_id(2), "all fine"))

    # When logs are replayed against the server, with no rules file
    stdout = _replay(capsys, server, prefix, tmp_path / "out", str(logs))

    # Then the registered rule fired on its line, and its channel was notified once
    matches = _lines(tmp_path / "out" / "matches.jsonl")
    notifications = _lines(tmp_path / "out" / "notifications.jsonl")
    batches = _lines(tmp_path / "out" / "batches.jsonl")
    assert [(m["customer_id"], m["rule_id"], m["event_id"]) for m in matches] == [("acme", "card", _event_id(1))]
    assert [(n["customer_id"], n["rule_id"], n["count"]) for n in notifications] == [("acme", "card", 1)]
    assert [b["status"] for b in batches] == ["complete"]
    assert f"against {server}" in stdout
    assert "rules: registered there" in stdout


def test_each_replay_reports_only_its_own_batches_and_never_notifies_a_match_twice(
    server: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given rules on the server and a first replay that matched one line
    _register(capsys, server, prefix)
    first = _input(tmp_path / "first.jsonl", (_event_id(11), "CreditCardExpired user=1"))
    _replay(capsys, server, prefix, tmp_path / "one", str(first))
    first_batches = {b["batch_id"] for b in _lines(tmp_path / "one" / "batches.jsonl")}

    # When other logs are replayed, then the first logs again
    second = _input(
        tmp_path / "second.jsonl",
        (_event_id(21), "CreditCardExpired user=2"),
        (_event_id(22), "CreditCardExpired user=3"),
    )
    _replay(capsys, server, prefix, tmp_path / "two", str(second))
    again = _replay(capsys, server, prefix, tmp_path / "three", str(first))

    # Then the second run holds only its own batch and matches (the first run's records stay out)
    two_batches = _lines(tmp_path / "two" / "batches.jsonl")
    assert len(two_batches) == 1 and two_batches[0]["batch_id"] not in first_batches
    assert two_batches[0]["events"] == 2
    assert sorted(m["event_id"] for m in _lines(tmp_path / "two" / "matches.jsonl")) == [_event_id(21), _event_id(22)]
    assert sum(n["count"] for n in _lines(tmp_path / "two" / "notifications.jsonl")) == 2
    # And the first logs replayed again go through a new batch, but match and notify nothing new
    three_batches = _lines(tmp_path / "three" / "batches.jsonl")
    assert len(three_batches) == 1 and three_batches[0]["status"] == "complete"
    assert three_batches[0]["batch_id"] not in first_batches
    assert _lines(tmp_path / "three" / "matches.jsonl") == []
    assert _lines(tmp_path / "three" / "notifications.jsonl") == []
    assert "found again (recorded earlier)           1" in again


def test_a_rules_file_is_loaded_into_the_server_first(
    server: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an empty server and a rules file
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "customers:\n"
        f"  - {{customer_id: acme, accounts: ['{ACCOUNT}'], channels: [{{channel_id: ops, type: slack, url: '{SLACK}'}}]}}\n"
        "rules:\n"
        "  - {customer_id: acme, rule_id: card, patterns: [CreditCardExpired], channel: ops}\n",
        encoding="utf-8",
    )
    logs = _input(tmp_path / "logs.jsonl", (_event_id(31), "CreditCardExpired user=4"))

    # When logs are replayed with the file against the server
    stdout = _replay(capsys, server, prefix, tmp_path / "out", str(logs), "--rules", str(rules))

    # Then the file's rule fired, the report says where the rules came from, and they stay registered
    assert [m["event_id"] for m in _lines(tmp_path / "out" / "matches.jsonl")] == [_event_id(31)]
    assert f"rules: {rules}, loaded into it first" in stdout
    listed = _run(
        capsys, "rules", "list", "--customer", "acme", "--endpoint-url", server, "--table", f"{prefix}-config"
    )
    assert listed[0] == 0 and "card" in listed[1]


def test_a_server_without_customers_is_a_clear_error(
    server: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server where nobody registered a customer (AWS_ENDPOINT_URL counts as --endpoint-url)
    logs = _input(tmp_path / "logs.jsonl", (_event_id(41), "CreditCardExpired"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", server)

    # When logs are replayed without a rules file
    status, _, err = _run(capsys, "replay", str(logs), "--out", str(tmp_path / "out"), "--prefix", prefix)

    # Then the replay refuses, saying what to register
    assert status == 2
    assert f"no customer is registered at {server} (table {prefix}-config)" in err
    assert "logfan customers add" in err


def test_rules_are_required_without_an_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no endpoint at all
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    logs = _input(tmp_path / "logs.jsonl", (_event_id(51), "CreditCardExpired"))

    # When logs are replayed without a rules file
    status, _, err = _run(capsys, "replay", str(logs), "--out", str(tmp_path / "out"))

    # Then the replay refuses before emulating anything
    assert status == 2
    assert "--rules FILE is required" in err
    assert not (tmp_path / "out").exists()


def test_chaos_against_an_endpoint_is_refused(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a server and a chaos rate
    logs = _input(tmp_path / "logs.jsonl", (_event_id(61), "CreditCardExpired"))

    # When a chaos replay is asked for against it
    status, _, err = _run(
        capsys, "replay", str(logs), "--out", str(tmp_path / "out"), "--endpoint-url", server, "--chaos", "0.1"
    )

    # Then it is refused: chaos needs the in-process emulation
    assert status == 2
    assert "--chaos needs the in-process emulation" in err
