"""Asynchronous invocations with bounded retries, and the concurrent fan-out of sub-tasks (pure).

Lambda accepts an `Event` invoke in tens of milliseconds, but a hundred of them one after another
is seconds of a Kinesis shard standing still; they go out on a bounded thread pool instead.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from pipeline.errors import InvokeError
from pipeline.ports import FunctionInvoker
from pipeline.routing import PlannedSubTask

__all__ = [
    "backoff_delay",
    "consolidator_payload",
    "invoke_subtasks",
    "invoke_with_retries",
    "trigger_consolidator",
]

_log = logging.getLogger("logfan.invoking")


def backoff_delay(attempt: int, base_s: float, cap_s: float = 5.0, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return float(rng() * min(cap_s, base_s * (2**attempt)))


def invoke_with_retries(
    invoker: FunctionInvoker,
    function_name: str,
    payload: bytes,
    *,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Invoke asynchronously, retrying with backoff; raises the last `InvokeError`."""
    for attempt in range(attempts):
        try:
            invoker.invoke_async(function_name, payload)
            return
        except InvokeError as exc:
            if attempt + 1 == attempts:
                raise
            _log.warning("async invoke failed; retrying", extra={"function": function_name, "error": str(exc)})
            sleep(backoff_delay(attempt, backoff_s))


def invoke_subtasks(
    invoker: FunctionInvoker,
    function_name: str,
    subtasks: Sequence[PlannedSubTask],
    *,
    concurrency: int,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> list[tuple[PlannedSubTask, InvokeError]]:
    """Invoke the parser for every sub-task concurrently; return the ones that failed for good.

    Each payload is written only as its invoke goes out, so at most `concurrency` exist at once.
    """

    def one(subtask: PlannedSubTask) -> InvokeError | None:
        try:
            invoke_with_retries(
                invoker,
                function_name,
                subtask.encode(),
                attempts=attempts,
                backoff_s=backoff_s,
                sleep=sleep,
            )
        except InvokeError as exc:
            return exc
        return None

    if not subtasks:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(subtasks)), thread_name_prefix="invoke") as pool:
        outcomes = list(pool.map(one, subtasks))
    return [(subtask, error) for subtask, error in zip(subtasks, outcomes, strict=True) if error is not None]


def consolidator_payload(batch_id: str) -> bytes:
    return json.dumps({"batch_id": batch_id}).encode()


def trigger_consolidator(
    invoker: FunctionInvoker, function_name: str, batch_id: str, *, attempts: int, backoff_s: float
) -> None:
    """Ask the consolidator to complete `batch_id` (it is idempotent, so a repeat is harmless)."""
    invoke_with_retries(invoker, function_name, consolidator_payload(batch_id), attempts=attempts, backoff_s=backoff_s)
