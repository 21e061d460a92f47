"""A Powertools tracing provider that records subsegments in memory instead of sending them to X-Ray."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from pipeline.observability import SERVICE, get_tracer

__all__ = ["RecordedSegment", "RecordingProvider", "recording_tracer", "reset_tracer"]


def reset_tracer() -> None:
    """Forget the process-wide Powertools tracer configuration and the service's tracer."""
    cast(Callable[[], None], Tracer._reset_config)()
    get_tracer.cache_clear()


class RecordedSegment(BaseSegment):
    def __init__(self, name: str) -> None:
        self.name = name
        self.annotations: dict[str, object] = {}
        self.metadata: dict[str, object] = {}
        self.closed = False

    def close(self, end_time: int | None = None) -> None:
        self.closed = True

    def add_subsegment(self, subsegment: Any) -> None:
        """Nesting is not recorded: tests look at each subsegment by name."""

    def remove_subsegment(self, subsegment: Any) -> None:
        """Nesting is not recorded."""

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.metadata[f"{namespace}/{key}"] = value

    def add_exception(
        self, exception: BaseException, stack: list[traceback.StackSummary], remote: bool = False
    ) -> None:
        self.metadata["exception"] = exception


class RecordingProvider(BaseProvider):
    """Subsegments per thread, as X-Ray keeps its context (the local runtime invokes on a pool)."""

    def __init__(self) -> None:
        self.segments: list[RecordedSegment] = []
        self._local = threading.local()

    def _stack(self) -> list[RecordedSegment]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        stack: list[RecordedSegment] = self._local.stack
        return stack

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        segment = RecordedSegment(name or "")
        self.segments.append(segment)
        self._stack().append(segment)
        try:
            yield segment
        finally:
            self._stack().pop()
            segment.close()

    def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError("no async handlers in logfan")

    def put_annotation(self, key: str, value: Any) -> None:
        self._stack()[-1].put_annotation(key, value)

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self._stack()[-1].put_metadata(key, value, namespace)

    def patch(self, modules: Sequence[str]) -> None:
        """Nothing is patched: no SDK calls become subsegments here."""

    def patch_all(self) -> None:
        """Nothing is patched."""

    def named(self, name: str) -> list[RecordedSegment]:
        return [segment for segment in self.segments if segment.name == name]


@contextmanager
def recording_tracer() -> Iterator[RecordingProvider]:
    """Tracing switched on as on Lambda, into a `RecordingProvider`; the service's tracer uses it.

    Powertools' Tracer keeps one configuration for the whole process: the first Tracer built here
    sets the provider every later one (the service's `get_tracer()`) inherits. Both are reset after.
    The caller sets `LAMBDA_TASK_ROOT` (Powertools traces only on Lambda).
    """
    provider = RecordingProvider()
    reset_tracer()
    Tracer(service=SERVICE, provider=provider, auto_patch=False)
    try:
        yield provider
    finally:
        reset_tracer()
