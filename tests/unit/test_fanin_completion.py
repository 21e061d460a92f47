"""A completed batch's metrics: one more batch, and its latency from the fan-out to completion."""

from __future__ import annotations

from pipeline.fanin import batch_latency_ms, record_completion, summarise
from pipeline.models import BatchRecord, BatchStatus, BatchSummary
from pipeline.observability import CountingMetrics

CREATED = 1_764_380_000_000


def _summary(*, created_at: int, finished_at: int) -> BatchSummary:
    batch = BatchRecord(
        batch_id="b-1",
        status=BatchStatus.OPEN,
        total_tasks=0,
        finished_tasks=0,
        created_at=created_at,
        records=3,
        events=7,
        rejected_records=0,
        control_records=0,
        unclaimed_events=0,
    )
    return summarise(batch, [], now_ms=finished_at)


def test_a_completed_batch_counts_once_and_times_its_latency_in_milliseconds() -> None:
    # Given a batch recorded by the fan-out and completed 2.5 s later
    summary = _summary(created_at=CREATED, finished_at=CREATED + 2_500)
    metrics = CountingMetrics()

    # When its completion is recorded
    record_completion(metrics, summary)

    # Then
    assert metrics.snapshot() == {"BatchesCompleted": 1}
    assert metrics.timings() == {"BatchLatency": [2_500.0]}


def test_latency_runs_from_the_batch_created_at_to_its_finished_at() -> None:
    summary = _summary(created_at=CREATED, finished_at=CREATED + 61_000)

    assert (summary.created_at, summary.finished_at) == (CREATED, CREATED + 61_000)
    assert batch_latency_ms(summary) == 61_000


def test_a_clock_that_stepped_back_gives_zero_not_a_negative_latency() -> None:
    # Different containers' clocks: the consolidator's may run behind the fan-out's
    assert batch_latency_ms(_summary(created_at=CREATED, finished_at=CREATED - 40)) == 0
