"""Asynchronous invokes: bounded retries with backoff, and the concurrent fan-out of sub-tasks."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from pipeline.errors import InvokeError
from pipeline.invoking import backoff_delay, consolidator_payload, invoke_subtasks, invoke_with_retries
from pipeline.routing import PlannedSubTask, plan_batch
from tests import factories as f

PARSER = "logfan-parser"


class FlakyInvoker:
    """Fails the first `failures[subtask_id]` invokes of each payload (every one when it is -1)."""

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        self._failures = dict(failures or {})
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.accepted: list[bytes] = []

    def invoke_async(self, function_name: str, payload: bytes) -> None:
        assert function_name == PARSER
        subtask_id = str(json.loads(payload).get("subtask_id", ""))
        with self._lock:
            self.calls[subtask_id] += 1
            remaining = self._failures.get(subtask_id, 0)
            if remaining:
                self._failures[subtask_id] = remaining - 1
                raise InvokeError(f"throttled: {subtask_id}")
            self.accepted.append(payload)


class RendezvousInvoker:
    """Counts invokes in flight; each call waits for `parties` calls to be in flight together."""

    def __init__(self, parties: int) -> None:
        self._barrier = threading.Barrier(parties, timeout=10)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def invoke_async(self, function_name: str, payload: bytes) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._barrier.wait()
        finally:
            with self._lock:
                self.in_flight -= 1


def _subtasks(count: int) -> list[PlannedSubTask]:
    records = [f.decoded_record(f.logs_message("111122223333", [f"line {i} " * 30])) for i in range(count)]
    plan = plan_batch("b-1", records, {"111122223333": "acme"}, max_payload_bytes=600)
    assert len(plan.subtasks) == count
    return plan.subtasks


def _no_sleep(seconds: float) -> None:
    pass


# -- backoff ---------------------------------------------------------------------------------


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    # The top of each window, with the jitter at its maximum
    assert [backoff_delay(attempt, 0.1, cap_s=1.0, rng=lambda: 1.0) for attempt in range(6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )
    assert backoff_delay(3, 0.1, rng=lambda: 0.0) == 0.0


@pytest.mark.parametrize("attempt", range(8))
def test_backoff_stays_within_its_window(attempt: int) -> None:
    delays = [backoff_delay(attempt, 0.05, cap_s=2.0) for _ in range(200)]

    assert all(0.0 <= d <= min(2.0, 0.05 * 2**attempt) for d in delays)


# -- one invoke ------------------------------------------------------------------------------


def test_a_failing_invoke_is_retried_until_it_is_accepted() -> None:
    # Given an invoker that throttles twice
    [subtask] = _subtasks(1)
    invoker = FlakyInvoker({subtask.subtask_id: 2})
    slept: list[float] = []

    # When invoked with three attempts
    invoke_with_retries(invoker, PARSER, subtask.encode(), attempts=3, backoff_s=0.1, sleep=slept.append)

    # Then the third attempt delivers the exact payload, after two backoffs within their windows
    assert invoker.calls[subtask.subtask_id] == 3
    assert invoker.accepted == [subtask.encode()]
    assert len(slept) == 2
    assert 0.0 <= slept[0] <= 0.1
    assert 0.0 <= slept[1] <= 0.2


def test_an_invoke_that_keeps_failing_raises_after_its_attempts() -> None:
    [subtask] = _subtasks(1)
    invoker = FlakyInvoker({subtask.subtask_id: -1})

    with pytest.raises(InvokeError, match="throttled"):
        invoke_with_retries(invoker, PARSER, subtask.encode(), attempts=4, backoff_s=0.1, sleep=_no_sleep)
    assert invoker.calls[subtask.subtask_id] == 4


def test_consolidator_payload_names_the_batch() -> None:
    assert json.loads(consolidator_payload("b-1")) == {"batch_id": "b-1"}


# -- fan-out ---------------------------------------------------------------------------------


def test_invoke_subtasks_retries_and_returns_the_ones_that_failed_for_good() -> None:
    # Given five sub-tasks: one throttled once, one failing for good
    subtasks = _subtasks(5)
    flaky, dead = subtasks[1].subtask_id, subtasks[3].subtask_id
    invoker = FlakyInvoker({flaky: 1, dead: -1})

    # When they are invoked
    failures = invoke_subtasks(invoker, PARSER, subtasks, concurrency=3, attempts=3, backoff_s=0.01, sleep=_no_sleep)

    # Then only the dead one is returned, with its error, and every other payload was delivered once
    assert [(s.subtask_id, str(e)) for s, e in failures] == [(dead, f"throttled: {dead}")]
    assert sorted(invoker.accepted) == sorted(s.encode() for s in subtasks if s is not subtasks[3])
    assert invoker.calls[flaky] == 2
    assert invoker.calls[dead] == 3


def test_invoke_subtasks_of_nothing_invokes_nothing() -> None:
    invoker = FlakyInvoker()

    assert invoke_subtasks(invoker, PARSER, [], concurrency=4, attempts=3, backoff_s=0.01, sleep=_no_sleep) == []
    assert not invoker.calls


def test_invoke_subtasks_runs_invokes_concurrently_up_to_the_limit() -> None:
    # Given eight sub-tasks and an invoker that only returns once four calls are in flight together
    invoker = RendezvousInvoker(parties=4)

    # When they are invoked with a concurrency of four
    failures = invoke_subtasks(
        invoker, PARSER, _subtasks(8), concurrency=4, attempts=1, backoff_s=0.01, sleep=_no_sleep
    )

    # Then the calls overlapped, never beyond the limit
    assert failures == []
    assert invoker.max_in_flight == 4
