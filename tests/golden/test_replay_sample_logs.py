"""Golden test: replaying sample_logs/ gives exactly the checked-in outputs.

After an intended change of behaviour, regenerate the expected files with
`LOGFAN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/golden` and review the diff like code.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.local.replay import OUTPUT_FILES, ReplayOptions, ReplayReport, replay

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_logs"
EXPECTED = Path(__file__).resolve().parent / "expected"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReplayReport]:
    out = tmp_path_factory.mktemp("replay")
    # The same flags as `make replay`: small Kinesis batches, so several batches fan in.
    report = replay(ReplayOptions(inputs=[SAMPLES], rules=SAMPLES / "rules.yaml", out=out, batch_size=8))
    if os.environ.get("LOGFAN_UPDATE_GOLDEN"):
        EXPECTED.mkdir(exist_ok=True)
        for name in OUTPUT_FILES:
            (EXPECTED / name).write_text((out / name).read_text(encoding="utf-8"), encoding="utf-8")
    return out, report


@pytest.mark.parametrize("name", OUTPUT_FILES)
def test_replay_output_matches_the_golden_file(replayed: tuple[Path, ReplayReport], name: str) -> None:
    out, _ = replayed

    assert _lines(out / name) == _lines(EXPECTED / name)


def test_every_batch_completes_and_every_match_is_recorded_once(replayed: tuple[Path, ReplayReport]) -> None:
    out, report = replayed
    matches = _lines(out / "matches.jsonl")
    keys = Counter((m["customer_id"], m["rule_id"], m["event_id"]) for m in matches)
    notification_ids = Counter(n["notification_id"] for n in _lines(out / "notifications.jsonl"))

    assert report.ok
    assert all(
        b["status"] == "complete" and b["finished_tasks"] == b["total_tasks"] for b in _lines(out / "batches.jsonl")
    )
    assert keys and max(keys.values()) == 1
    assert notification_ids and max(notification_ids.values()) == 1
    assert sum(n["count"] for n in _lines(out / "notifications.jsonl")) == len(matches)


def test_unclaimed_owner_and_control_message_never_become_customers(replayed: tuple[Path, ReplayReport]) -> None:
    out, report = replayed
    owners = {m["owner"] for m in _lines(out / "matches.jsonl")}

    assert "999900001111" not in owners
    assert "CloudwatchLogs" not in owners
    assert report.unclaimed_events > 0
    assert report.control_records == 1


def test_each_corrupt_record_is_rejected_with_its_reason(replayed: tuple[Path, ReplayReport]) -> None:
    out, _ = replayed
    reasons = [r["reason"] for r in _lines(out / "rejected.jsonl") if r["kind"] == "poison_record"]

    assert len(reasons) == 5
    for expected in ("not gzip", "truncated gzip", "not JSON", "logEvents"):
        assert any(expected in reason for reason in reasons), (expected, reasons)
