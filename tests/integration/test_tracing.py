"""The real handlers behind the real fan-out, traced as on Lambda: each invocation's subsegment carries
the batch, sub-task and customer it worked on, and each completed batch reports its latency once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.local.aws import LocalAws
from pipeline.routing import compute_batch_id
from tests import factories as f
from tests.harness import harness
from tests.tracing import RecordingProvider, recording_tracer

ACME, GLOBEX = "111122223333", "777788889999"


@pytest.fixture
def tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProvider]:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    with recording_tracer() as provider:
        yield provider


def test_every_invocation_is_annotated_with_what_it_worked_on(
    aws: LocalAws, tmp_path: Path, tracing: RecordingProvider
) -> None:
    # Given two customers with a rule each, and a Kinesis batch with logs of both
    event = f.kinesis_event(
        [
            f.encode(f.logs_message(ACME, events=[f.event("ERROR payment declined")])),
            f.encode(f.logs_message(GLOBEX, events=[f.event("kernel panic")])),
        ]
    )
    batch_id = compute_batch_id(record["eventID"] for record in event["Records"])
    with harness(aws, tmp_path) as h:
        h.config.put_customer(f.customer("acme", [ACME]))
        h.config.put_customer(f.customer("globex", [GLOBEX]))
        h.config.put_rule(f.rule("acme", "errors", "ERROR"))
        h.config.put_rule(f.rule("globex", "panics", "panic"))

        # When the fan-out runs and the async invocations settle
        h.fan_out(event)
        h.settle()
        latencies = h.metrics.timings().get("BatchLatency", [])

    # Then the fan-out, both parsers and the consolidator each left one annotated subsegment
    annotated = sorted(
        (s.annotations.get("customer_id", "-"), s.annotations.get("batch_id"), bool(s.annotations.get("subtask_id")))
        for s in tracing.named("## handler")
    )
    assert annotated == [
        ("-", batch_id, False),  # the fan-out, once it knows the batch
        ("-", batch_id, False),  # the consolidator
        ("acme", batch_id, True),
        ("globex", batch_id, True),
    ]
    # And the batch's latency was reported once, when the consolidator completed it
    assert len(latencies) == 1 and 0 <= latencies[0] < 60_000
