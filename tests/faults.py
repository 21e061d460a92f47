"""Faults at the AWS boundary: wrappers around a boto3 client or a port implementation.

Each one stands where AWS would misbehave (a throttled invoke, `UnprocessedItems`, a channel
answering 503) and otherwise passes the call through to the real thing; none replaces our logic.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from pipeline.errors import DeliveryError, InvokeError, TransientStoreError
from pipeline.models import Channel, Notification, PoisonRecord
from pipeline.ports import FunctionInvoker, Notifier, RejectSink

__all__ = [
    "ClientProxy",
    "FlakyInvoker",
    "FlakyNotifier",
    "FlakyRejectSink",
    "Interceptor",
    "RecordingInvoker",
    "failed_entries",
    "page_limit",
    "throttled",
    "unprocessed_items",
    "unprocessed_keys",
]

Interceptor = Callable[[Callable[..., Any], dict[str, Any]], Any]
"""Answers one API call in place of the service: gets the real call and the request's arguments."""


class ClientProxy:
    """A boto3 client seen from the wire: records every request, and lets a test answer some itself."""

    def __init__(self, client: Any, **interceptors: Interceptor) -> None:
        self._client = client
        self._interceptors = interceptors
        self._lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def requests(self, operation: str) -> list[dict[str, Any]]:
        """The arguments of every `operation` call, in order."""
        with self._lock:
            return [kwargs for name, kwargs in self.calls if name == operation]

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        def call(**kwargs: Any) -> Any:
            with self._lock:
                self.calls.append((name, kwargs))
            interceptor = self._interceptors.get(name)
            return interceptor(attribute, kwargs) if interceptor else attribute(**kwargs)

        return call


def unprocessed_items(*, calls: int | None, keep: int) -> Interceptor:
    """BatchWriteItem that writes only the first `keep` requests of each of its first `calls` calls
    (None: every call) and hands the rest back as `UnprocessedItems`, as a throttled table does."""
    left = [calls]

    def intercept(call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if left[0] is not None:
            if left[0] <= 0:
                return call(**kwargs)
            left[0] -= 1
        ((table, requests),) = kwargs["RequestItems"].items()
        if requests[:keep]:
            call(RequestItems={table: requests[:keep]})
        return {"UnprocessedItems": {table: requests[keep:]} if requests[keep:] else {}}

    return intercept


def unprocessed_keys(*, calls: int, keep: int) -> Interceptor:
    """BatchGetItem that serves only `keep` keys of each of its first `calls` calls and returns the
    rest as `UnprocessedKeys`."""
    left = [calls]

    def intercept(call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if left[0] <= 0:
            return call(**kwargs)
        left[0] -= 1
        ((table, request),) = kwargs["RequestItems"].items()
        served = call(RequestItems={table: {**request, "Keys": request["Keys"][:keep]}})
        rest = request["Keys"][keep:]
        return {**served, "UnprocessedKeys": {table: {**request, "Keys": rest}} if rest else {}}

    return intercept


def throttled(*, calls: int, when: Callable[[dict[str, Any]], bool]) -> Interceptor:
    """Fails the first `calls` requests that `when` accepts with a ThrottlingException."""
    left = [calls]

    def intercept(call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if left[0] > 0 and when(kwargs):
            left[0] -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded (injected)"}}, "call")
        return call(**kwargs)

    return intercept


def page_limit(limit: int) -> Interceptor:
    """Query/Scan pages of `limit` items, as DynamoDB pages a large item collection at 1 MB."""

    def intercept(call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        return call(**{**kwargs, "Limit": limit})

    return intercept


class FlakyInvoker:
    """Lambda refusing `Event` invokes of `function_name` (throttled, 5xx): the first `failures`
    invokes whose payload `when` accepts fail (None: every one)."""

    def __init__(
        self,
        inner: FunctionInvoker,
        function_name: str,
        *,
        failures: int | None,
        when: Callable[[dict[str, Any]], bool] = lambda payload: True,
    ) -> None:
        self._inner = inner
        self._function_name = function_name
        self._failures = failures
        self._when = when
        self._lock = threading.Lock()
        self.refused = 0

    def invoke_async(self, function_name: str, payload: bytes) -> None:
        if function_name == self._function_name and self._when(json.loads(payload)):
            with self._lock:
                refuse = self._failures is None or self.refused < self._failures
                self.refused += refuse
            if refuse:
                raise InvokeError(f"{function_name}: TooManyRequestsException: Rate Exceeded (injected)")
        self._inner.invoke_async(function_name, payload)


class RecordingInvoker:
    """Records every payload sent to `function_name`; with `copies` > 1 it also plays Lambda's
    at-least-once async delivery, queueing each invoke that many times."""

    def __init__(self, inner: FunctionInvoker, function_name: str, *, copies: int = 1) -> None:
        self._inner = inner
        self._function_name = function_name
        self._copies = copies
        self._lock = threading.Lock()
        self.payloads: list[bytes] = []

    def invoke_async(self, function_name: str, payload: bytes) -> None:
        if function_name != self._function_name:
            self._inner.invoke_async(function_name, payload)
            return
        with self._lock:
            self.payloads.append(payload)
        for _ in range(self._copies):
            self._inner.invoke_async(function_name, payload)


class FlakyNotifier:
    """A channel that fails the first `failures` deliveries of each notification (None: always)."""

    def __init__(self, inner: Notifier, *, failures: int | None, permanent: bool = False) -> None:
        self._inner = inner
        self._failures = failures
        self._permanent = permanent
        self._lock = threading.Lock()
        self.attempts: Counter[str] = Counter()

    def send(self, channel: Channel, notification: Notification) -> None:
        with self._lock:
            self.attempts[notification.notification_id] += 1
            attempt = self.attempts[notification.notification_id]
        if self._failures is None or attempt <= self._failures:
            status = 410 if self._permanent else 503
            raise DeliveryError(
                f"{channel.type.value} channel {channel.channel_id} answered HTTP {status} (injected)",
                permanent=self._permanent,
            )
        self._inner.send(channel, notification)


class FlakyRejectSink:
    """A dead-letter queue that cannot be reached the first `failures` times."""

    def __init__(self, inner: RejectSink, *, failures: int) -> None:
        self._inner = inner
        self._failures = failures
        self.refused = 0

    def reject(self, records: Sequence[PoisonRecord]) -> None:
        if self.refused < self._failures:
            self.refused += 1
            raise TransientStoreError("send poison records: AWS.SimpleQueueService.NonExistentQueue (injected)")
        self._inner.reject(records)


def failed_entries(*, calls: int, keep: int) -> Interceptor:
    """PutRecords (Kinesis) or SendMessageBatch (SQS) that accepts only the first `keep` entries of
    each of its first `calls` calls and reports the rest as failed, as a throttled service does."""
    left = [calls]

    def intercept(call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if left[0] <= 0:
            return call(**kwargs)
        left[0] -= 1
        field = "Records" if "Records" in kwargs else "Entries"
        accepted = call(**{**kwargs, field: kwargs[field][:keep]}) if kwargs[field][:keep] else {}
        rest = kwargs[field][keep:]
        if field == "Records":
            throttled = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
            return {**accepted, "Records": list(accepted.get("Records", [])) + [throttled] * len(rest)}
        failed = [{"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"} for entry in rest]
        return {**accepted, "Failed": list(accepted.get("Failed", [])) + failed}

    return intercept
