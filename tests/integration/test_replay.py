"""`logfan replay` end to end: every input format through the real handlers on emulated AWS."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli import main
from pipeline.errors import ConfigurationError, RulesFileError
from pipeline.local.inputs import InputError
from pipeline.local.replay import OUTPUT_FILES, ReplayOptions, replay
from tests import factories as f
from tests.harness import read_jsonl

ACME, STRANGER = "111122223333", "999900001111"
PLAIN_TEXT_OWNER = "123456789012"
"""The owner `logfan replay` gives plain-text inputs unless told otherwise (--owner)."""

RULES: dict[str, Any] = {
    "customers": [
        {
            "customer_id": "acme",
            "accounts": [ACME],
            "channels": [{"channel_id": "ops", "type": "webhook", "url": "https://hooks.example.com/acme"}],
        },
        {
            "customer_id": "initech",
            "accounts": [PLAIN_TEXT_OWNER],
            "channels": [{"channel_id": "tps", "type": "slack", "url": "https://hooks.slack.com/services/T/B/X"}],
        },
    ],
    "rules": [
        {"customer_id": "acme", "rule_id": "errors", "patterns": ["ERROR"], "channel": "ops"},
        {"customer_id": "initech", "rule_id": "timeouts", "patterns": ["timed out"], "channel": "tps"},
    ],
}


def _write_inputs(directory: Path) -> set[tuple[str, str, str]]:
    """One input of each format; returns the (customer, rule, event id) matches of the JSON ones."""
    directory.mkdir()
    kinesis = [f.event("ERROR card declined"), f.event("INFO fine")]
    event = f.kinesis_event(
        [f.encode(f.logs_message(ACME, events=kinesis)), "not base64 at all!", f.encode(f.control_message())]
    )
    (directory / "kinesis_event.json").write_text(json.dumps(event), encoding="utf-8")
    single = f.event("ERROR queue full")
    message = f.logs_message(ACME, events=[single], log_group="/aws/ecs/api")
    (directory / "message.json").write_text(json.dumps(message), encoding="utf-8")
    line = f.event("ERROR disk full")
    lines = [f.logs_message(ACME, events=[line]), f.logs_message(STRANGER, ["ERROR not a customer's"])]
    (directory / "messages.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines), encoding="utf-8")
    (directory / "app.log").write_text(
        "2025-12-01T10:00:00Z request timed out\n2025-12-01T10:00:01Z ok\n\nrequest timed out again\n",
        encoding="utf-8",
    )
    return {("acme", "errors", e["id"]) for e in (kinesis[0], single, line)}


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    return path


def test_replay_of_every_input_format_finds_each_match_once(tmp_path: Path, rules_path: Path) -> None:
    # Given
    expected = _write_inputs(tmp_path / "inputs")
    out = tmp_path / "out"

    # When
    report = replay(ReplayOptions(inputs=[tmp_path / "inputs"], rules=rules_path, out=out, batch_size=2))

    # Then
    assert report.ok and report.files == 4
    matches = read_jsonl(out / "matches.jsonl")
    keys = Counter((m["customer_id"], m["rule_id"], m["event_id"]) for m in matches)
    assert set(keys.values()) == {1}
    assert {key for key in keys if key[0] == "acme"} == expected
    plain = [m for m in matches if m["customer_id"] == "initech"]
    assert sorted((m["rule_id"], m["owner"], m["log_group"], m["message"]) for m in plain) == [
        ("timeouts", PLAIN_TEXT_OWNER, "/replay/app", "2025-12-01T10:00:00Z request timed out"),
        ("timeouts", PLAIN_TEXT_OWNER, "/replay/app", "request timed out again"),
    ]
    batches = read_jsonl(out / "batches.jsonl")
    assert batches and {b["status"] for b in batches} == {"complete"}
    assert sum(b["control_records"] for b in batches) == 1
    assert sum(b["unclaimed_events"] for b in batches) == 1
    (rejected,) = read_jsonl(out / "rejected.jsonl")
    assert rejected["kind"] == "poison_record" and "not gzip" in rejected["reason"]
    notifications = read_jsonl(out / "notifications.jsonl")
    assert sum(n["count"] for n in notifications) == len(matches) == 5


def test_replay_under_a_small_payload_limit_chunks_and_still_finds_everything(tmp_path: Path, rules_path: Path) -> None:
    lines = [f"2025-12-01T10:00:{i % 60:02d}Z request {i} {'timed out' if i % 5 == 0 else 'ok'}" for i in range(120)]
    (tmp_path / "busy.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"

    report = replay(
        ReplayOptions(inputs=[tmp_path / "busy.log"], rules=rules_path, out=out, max_invoke_payload_bytes=4096)
    )

    assert report.ok
    assert report.subtasks > 1
    matches = read_jsonl(out / "matches.jsonl")
    assert sorted(m["message"] for m in matches) == sorted(line for line in lines if "timed out" in line)
    assert len({m["event_id"] for m in matches}) == 24


def test_an_invalid_rules_file_stops_replay_before_any_output(tmp_path: Path) -> None:
    _write_inputs(tmp_path / "inputs")
    bad = {**RULES, "rules": [{**RULES["rules"][0], "patterns": ["(unclosed"]}]}
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    out = tmp_path / "out"

    with pytest.raises(RulesFileError, match=r"rules\[0\].*invalid regex"):
        replay(ReplayOptions(inputs=[tmp_path / "inputs"], rules=rules_path, out=out))

    assert not out.exists()


def test_a_missing_input_stops_replay_before_any_output(tmp_path: Path, rules_path: Path) -> None:
    out = tmp_path / "out"

    with pytest.raises(InputError, match="no such file"):
        replay(ReplayOptions(inputs=[tmp_path / "nope.log"], rules=rules_path, out=out))

    assert not out.exists()


def test_the_cli_replays_and_prints_the_summary(
    tmp_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_inputs(tmp_path / "inputs")
    out = tmp_path / "out"

    code = main(["replay", str(tmp_path / "inputs"), "--rules", str(rules_path), "--out", str(out), "-q"])

    printed = capsys.readouterr().out
    assert code == 0
    assert "logfan replay summary" in printed
    assert "acme/errors" in printed and "initech/timeouts" in printed
    rows = {line[:30].strip(): line[30:].strip() for line in printed.splitlines() if "  " in line}
    assert (rows["matches"], rows["rejected (poison) records"], rows["batches complete"]) == ("5", "1", "1 / 1")
    assert all((out / name).exists() for name in OUTPUT_FILES)


def test_the_cli_reports_a_bad_rules_file_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_inputs(tmp_path / "inputs")
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump({**RULES, "rules": [{**RULES["rules"][0], "channel": "pager"}]}))

    code = main(["replay", str(tmp_path / "inputs"), "--rules", str(rules_path), "--out", str(tmp_path / "out")])

    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("logfan: error: ")
    assert str(rules_path) in error and "'pager' is not a channel of customer 'acme'" in error


@pytest.mark.parametrize(
    ("option", "value"), [("batch_size", 0), ("workers", 0), ("shards", 0), ("rule_timeout_ms", 0)]
)
def test_options_that_would_hang_or_crash_the_runtime_are_refused_up_front(
    tmp_path: Path, rules_path: Path, option: str, value: int
) -> None:
    _write_inputs(tmp_path / "inputs")
    out = tmp_path / "out"
    changes: dict[str, Any] = {option: value}

    with pytest.raises(ConfigurationError, match=f"{option} must be at least"):
        replay(ReplayOptions(inputs=[tmp_path / "inputs"], rules=rules_path, out=out, **changes))

    assert not out.exists()


def test_the_cli_reports_a_bad_option_and_exits_2(
    tmp_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_inputs(tmp_path / "inputs")

    code = main(["replay", str(tmp_path / "inputs"), "--rules", str(rules_path), "--workers", "0"])

    assert code == 2
    assert capsys.readouterr().err == "logfan: error: invalid replay options: workers must be at least 1, not 0\n"
