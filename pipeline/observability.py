"""Logging, metrics and tracing: Powertools on AWS, in-memory counters in the local runtime and tests."""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, overload

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment
from aws_lambda_powertools.utilities.typing import LambdaContext

__all__ = [
    "SERVICE",
    "TRACE_KEYS",
    "CountingMetrics",
    "PowertoolsMetrics",
    "annotate",
    "get_logger",
    "get_tracer",
    "invocation",
    "traced",
]

SERVICE = "logfan"
"""Also the stdlib logger name: domain modules log to `logfan.<module>` and inherit its handler."""

TRACE_KEYS = ("batch_id", "subtask_id", "customer_id")
"""Correlation keys that also become X-Ray annotations, so traces can be searched by them."""

_Response = TypeVar("_Response")
LambdaHandler = Callable[[dict[str, Any], LambdaContext], _Response]


@functools.cache
def get_logger() -> Logger:
    """The service's structured JSON logger, created on first use (never at import)."""
    return Logger(service=SERVICE, stream=sys.stderr)


class _Untraced(BaseSegment):
    """The subsegment handlers run in when nothing is traced: it keeps nothing."""

    def close(self, end_time: int | None = None) -> None:
        """Nothing to close."""

    def add_subsegment(self, subsegment: Any) -> None:
        """Nothing is kept."""

    def remove_subsegment(self, subsegment: Any) -> None:
        """Nothing is kept."""

    def put_annotation(self, key: str, value: Any) -> None:
        """Nothing is kept."""

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Nothing is kept."""

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        """Nothing is kept."""


class _NoTracing(BaseProvider):
    """Tracing off without the X-Ray SDK: loading it opens the socket it sends to a daemon with."""

    @contextmanager
    def in_subsegment(
        self,
        name: str | None = None,  # noqa: ARG002 - BaseProvider's signature
        **kwargs: Any,  # noqa: ARG002
    ) -> Generator[BaseSegment, None, None]:
        yield _Untraced()

    def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError("logfan has no async handlers")

    def put_annotation(self, key: str, value: Any) -> None:
        """Nothing is kept."""

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Nothing is kept."""

    def patch(self, modules: Sequence[str]) -> None:
        """Nothing is patched."""

    def patch_all(self) -> None:
        """Nothing is patched."""


def _tracing_off() -> bool:
    """Off for sure: `POWERTOOLS_TRACE_DISABLED`, or not on Lambda (Powertools' own rules; any other
    case, SAM local say, is left to Powertools)."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")
    return disabled or not os.environ.get("LAMBDA_TASK_ROOT")


@functools.cache
def get_tracer() -> Tracer:
    """The service's X-Ray tracer, created on first use (never at import).

    Off outside Lambda and wherever `POWERTOOLS_TRACE_DISABLED=true` (the local runtime sets it): then
    the X-Ray SDK is not even loaded, so the local runtime and the tests never look for a daemon. On
    Lambda it patches boto3 and http.client, so every AWS call and webhook is a subsegment.
    """
    if _tracing_off():
        return Tracer(service=SERVICE, disabled=True, auto_patch=False, provider=_NoTracing())
    return Tracer(service=SERVICE)


@overload
def traced(handler: LambdaHandler[_Response], /) -> LambdaHandler[_Response]: ...


@overload
def traced(*, capture_response: bool = True) -> Callable[[LambdaHandler[_Response]], LambdaHandler[_Response]]: ...


def traced(
    handler: LambdaHandler[_Response] | None = None, /, *, capture_response: bool = True
) -> LambdaHandler[_Response] | Callable[[LambdaHandler[_Response]], LambdaHandler[_Response]]:
    """`Tracer.capture_lambda_handler` without a tracer at import time: it is fetched per call.

    `capture_response=False` keeps the response out of the trace's metadata (customers' rules,
    authorizer policies): what is in a trace is readable by anyone with X-Ray access.
    """

    def decorate(function: LambdaHandler[_Response]) -> LambdaHandler[_Response]:
        @functools.wraps(function)
        def run(event: dict[str, Any], context: LambdaContext) -> _Response:
            capture = get_tracer().capture_lambda_handler(function, capture_response=capture_response)
            response: _Response = capture(event, context)
            return response

        return run

    return decorate if handler is None else decorate(handler)


def annotate(**keys: object) -> None:
    """Annotate the current trace segment with the correlation keys among `keys` that have a value."""
    tracer = get_tracer()
    for key in TRACE_KEYS:
        value = keys.get(key)
        if isinstance(value, str) and value:
            tracer.put_annotation(key, value)


class PowertoolsMetrics:
    """Counts and timings as CloudWatch EMF metrics, flushed at the end of each invocation."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def count(self, name: str, value: float = 1) -> None:
        if value:
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def timing(self, name: str, milliseconds: float) -> None:
        self._metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=max(0.0, milliseconds))

    def flush(self) -> None:
        """Print the invocation's EMF document; with metrics disabled, drop them (Powertools keeps
        them otherwise, and they would pile up across invocations)."""
        self._metrics.flush_metrics(raise_on_empty_metrics=False)
        self._metrics.clear_metrics()


class CountingMetrics:
    """Thread-safe counters and timings; the local runtime reports them in its summary."""

    def __init__(self) -> None:
        self._counts: dict[str, float] = {}
        self._timings: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def count(self, name: str, value: float = 1) -> None:
        if value:
            with self._lock:
                self._counts[name] = self._counts.get(name, 0) + value

    def timing(self, name: str, milliseconds: float) -> None:
        with self._lock:
            self._timings.setdefault(name, []).append(max(0.0, milliseconds))

    def flush(self) -> None:
        """Counters stay until read; there is nothing to ship."""

    def snapshot(self) -> dict[str, float]:
        """The counters (timings are observations, not sums: see `timings`)."""
        with self._lock:
            return dict(self._counts)

    def timings(self) -> dict[str, list[float]]:
        """Every timing observed, per metric, in the order observed."""
        with self._lock:
            return {name: list(values) for name, values in self._timings.items()}


@contextmanager
def invocation(context: LambdaContext, **keys: object) -> Iterator[Logger]:
    """Correlation keys for one invocation, thread-local so concurrent local invocations don't mix.

    The keys of `TRACE_KEYS` among them also annotate the invocation's trace segment.
    """
    logger = get_logger()
    logger.thread_safe_append_keys(
        function_name=getattr(context, "function_name", ""),
        function_request_id=getattr(context, "aws_request_id", ""),
        **keys,
    )
    annotate(**keys)
    try:
        yield logger
    finally:
        logger.thread_safe_clear_keys()
