"""`logfan replay --deliver`: the replay's notifications really leave, to a receiver on 127.0.0.1
and to EventBridge on the emulated account; without it they are only captured."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.local.replay import ReplayOptions, replay
from pipeline.signing import verify_signature
from tests import factories as f
from tests.harness import read_jsonl
from tests.receiver import LocalReceiver, local_receiver

ACME = "111122223333"
SECRET = "lfs_replay-deliver-secret-0123"


@pytest.fixture
def receiver() -> Iterator[LocalReceiver]:
    with local_receiver() as running:
        yield running


def _rules(receiver: LocalReceiver) -> dict[str, Any]:
    return {
        "customers": [
            {
                "customer_id": "acme",
                "accounts": [ACME],
                "channels": [
                    {"channel_id": "hook", "type": "webhook", "url": receiver.url("/acme/s3cr3t"), "secret": SECRET},
                    {"channel_id": "bus", "type": "eventbridge", "bus": "default"},
                    {"channel_id": "gone", "type": "sns", "topic_arn": "arn:aws:sns:us-east-1:123456789012:gone"},
                ],
            }
        ],
        "rules": [
            {"customer_id": "acme", "rule_id": "errors", "patterns": ["ERROR"], "channel": "hook"},
            {"customer_id": "acme", "rule_id": "timeouts", "patterns": ["timed out"], "channel": "bus"},
            {"customer_id": "acme", "rule_id": "oom", "patterns": ["OutOfMemory"], "channel": "gone"},
        ],
    }


def _inputs(tmp_path: Path, receiver: LocalReceiver) -> tuple[Path, Path]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(_rules(receiver)), encoding="utf-8")
    messages = [f.logs_message(ACME, ["ERROR card declined", "request timed out", "java.lang.OutOfMemoryError", "ok"])]
    inputs = tmp_path / "messages.jsonl"
    inputs.write_text("".join(json.dumps(m) + "\n" for m in messages), encoding="utf-8")
    return rules, inputs


def test_replay_deliver_sends_for_real_and_records_how_it_went(tmp_path: Path, receiver: LocalReceiver) -> None:
    # Given rules whose channels are a receiver on this machine, the default bus, and a topic that does not exist
    rules, inputs = _inputs(tmp_path, receiver)
    out = tmp_path / "out"

    # When `logfan replay --deliver` runs (its own process, as a developer would run it)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "replay",
            str(inputs),
            "--rules",
            str(rules),
            "--out",
            str(out),
            "--deliver",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "logfan replay summary" in done.stdout, done.stderr

    # Then the receiver got the alert, signed with the channel's secret
    (request,) = receiver.requests
    document = json.loads(request.body)
    assert (document["rule_id"], document["kind"], document["count"]) == ("errors", "alert", 1)
    assert verify_signature(
        SECRET, request.headers["X-Logfan-Timestamp"], request.body, request.headers["X-Logfan-Signature"], time.time()
    )
    # And each delivery is recorded with its outcome, the capture as the receiver got it
    captured = {n["rule_id"]: n for n in read_jsonl(out / "notifications.jsonl")}
    assert captured["errors"]["delivery"]["status"] == "HTTP 200"
    assert captured["errors"]["body"] == document
    assert captured["timeouts"]["delivery"]["status"] == "put"
    assert captured["timeouts"]["delivery"]["message_id"]
    # And the failure is kept with its reason, never with a secret
    failures = read_jsonl(out / "delivery_failures.jsonl")
    assert {(x["channel_id"], x["permanent"]) for x in failures} == {("gone", True)}
    everything = "".join(p.read_text(encoding="utf-8") for p in out.iterdir())
    assert SECRET not in everything and "s3cr3t" not in everything


def test_without_deliver_nothing_leaves_the_machine(tmp_path: Path, receiver: LocalReceiver) -> None:
    rules, inputs = _inputs(tmp_path, receiver)
    out = tmp_path / "out"

    replay(ReplayOptions(inputs=[inputs], rules=rules, out=out))

    assert receiver.requests == []
    captured = {n["rule_id"]: n for n in read_jsonl(out / "notifications.jsonl")}
    assert set(captured) == {"errors", "timeouts", "oom"}
    assert "delivery" not in captured["errors"]
    headers = captured["errors"]["headers"]
    assert headers["X-Logfan-Signature"].startswith("v1=<")
    assert headers["X-Logfan-Timestamp"].startswith("<")
    assert not (out / "delivery_failures.jsonl").exists()
