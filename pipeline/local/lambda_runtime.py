"""Lambda as the local runtime plays it: contexts with a deadline, and an asynchronous invoke
queue that runs `Event` invocations on a worker pool with Lambda's at-least-once retries."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import LAMBDA_ASYNC_PAYLOAD_LIMIT
from pipeline.errors import InvokeError

__all__ = ["DeadLetter", "Handler", "LocalAsyncInvoker", "LocalLambdaContext"]

_log = logging.getLogger("logfan.local")

Handler = Callable[[dict[str, Any], Any], Any]

ASYNC_RETRIES = 2
"""Lambda retries a failed asynchronous invocation twice."""


class LocalLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(
        self, function_name: str, timeout_s: float, memory_mb: int = 512, request_id: str | None = None
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An invocation that failed every attempt (Lambda's on-failure destination)."""

    function_name: str
    payload: dict[str, Any]
    error: str
    attempts: int


@dataclass(slots=True)
class _Job:
    function_name: str
    payload: bytes
    attempt: int = 0
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    """Kept by Lambda across the retries of one asynchronous invocation."""


@dataclass
class LocalAsyncInvoker:
    """`FunctionInvoker` for the local runtime: queue now, run on a worker pool, retry on error."""

    handlers: Mapping[str, Handler]
    workers: int = 4
    timeout_s: float = 300.0
    retry_delay_s: float = 0.01
    max_payload_bytes: int = LAMBDA_ASYNC_PAYLOAD_LIMIT
    dead_letters: list[DeadLetter] = field(default_factory=list)
    invocations: dict[str, int] = field(default_factory=dict)
    _queue: queue.Queue[_Job | None] = field(default_factory=queue.Queue)
    _outstanding: int = 0
    _idle: threading.Condition = field(default_factory=threading.Condition)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> LocalAsyncInvoker:
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"lambda-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def invoke_async(self, function_name: str, payload: bytes) -> None:
        if function_name not in self.handlers:
            raise InvokeError(f"{function_name}: ResourceNotFoundException: function not found")
        if len(payload) > self.max_payload_bytes:
            raise InvokeError(
                f"{function_name}: RequestEntityTooLargeException: {len(payload)} bytes > {self.max_payload_bytes}"
            )
        self._enqueue(_Job(function_name, payload))

    def _enqueue(self, job: _Job) -> None:
        with self._idle:
            self._outstanding += 1
        self._queue.put(job)

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until every queued invocation (and what it queued in turn) has finished."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout=timeout_s)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._run(job)
            finally:
                with self._idle:
                    self._outstanding -= 1
                    self._idle.notify_all()

    def _run(self, job: _Job) -> None:
        event = json.loads(job.payload)
        context = LocalLambdaContext(job.function_name, self.timeout_s, request_id=job.request_id)
        with self._idle:
            self.invocations[job.function_name] = self.invocations.get(job.function_name, 0) + 1
        try:
            self.handlers[job.function_name](event, context)
        except Exception as exc:
            if job.attempt < ASYNC_RETRIES:
                _log.warning(
                    "async invocation failed; Lambda retries it",
                    extra={"function": job.function_name, "error": repr(exc)},
                )
                time.sleep(self.retry_delay_s)
                self._enqueue(_Job(job.function_name, job.payload, job.attempt + 1, job.request_id))
                return
            _log.error(
                "async invocation failed every attempt",
                extra={"function": job.function_name, "error": repr(exc)},
            )
            with self._idle:
                self.dead_letters.append(DeadLetter(job.function_name, event, repr(exc), job.attempt + 1))
