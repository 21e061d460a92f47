"""Logging and metrics: Powertools on AWS, in-memory counters in the local runtime and tests."""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

__all__ = ["SERVICE", "CountingMetrics", "PowertoolsMetrics", "get_logger", "invocation"]

SERVICE = "logfan"
"""Also the stdlib logger name: domain modules log to `logfan.<module>` and inherit its handler."""


@functools.cache
def get_logger() -> Logger:
    """The service's structured JSON logger, created on first use (never at import)."""
    return Logger(service=SERVICE, stream=sys.stderr)


class PowertoolsMetrics:
    """Counts as CloudWatch EMF metrics, flushed at the end of each invocation."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def count(self, name: str, value: float = 1) -> None:
        if value:
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def flush(self) -> None:
        self._metrics.flush_metrics(raise_on_empty_metrics=False)


class CountingMetrics:
    """Thread-safe counters; the local runtime reports them in its summary."""

    def __init__(self) -> None:
        self._counts: dict[str, float] = {}
        self._lock = threading.Lock()

    def count(self, name: str, value: float = 1) -> None:
        if value:
            with self._lock:
                self._counts[name] = self._counts.get(name, 0) + value

    def flush(self) -> None:
        """Counters stay until read; there is nothing to ship."""

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._counts)


@contextmanager
def invocation(context: LambdaContext, **keys: object) -> Iterator[Logger]:
    """Correlation keys for one invocation, thread-local so concurrent local invocations don't mix."""
    logger = get_logger()
    logger.thread_safe_append_keys(
        function_name=getattr(context, "function_name", ""),
        function_request_id=getattr(context, "aws_request_id", ""),
        **keys,
    )
    try:
        yield logger
    finally:
        logger.thread_safe_clear_keys()
