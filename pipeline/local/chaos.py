"""`logfan replay --chaos RATE --seed N`: faults at every boundary of the local runtime.

Every decision is a pure function of (seed, fault point, key, occurrence), not of a shared random
stream, so the same seed injects the same faults however the worker threads interleave.

Boundaries and what goes wrong there:
- DynamoDB: throttling (400 ThrottlingException) and 500s, injected below boto3's retry handler
  so its backoff sees them as it would on AWS; what survives the client's attempts reaches our code;
- async invokes: refused (the invoker raises) or delivered twice (two concurrent runs);
- Kinesis: a batch the function already processed is delivered again;
- handlers: a crash right after each side effect (`pipeline.faults.CRASH_POINTS`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from pipeline.errors import InvokeError
from pipeline.faults import InjectedCrash
from pipeline.ports import FunctionInvoker

__all__ = ["Chaos", "ChaosInvoker"]

_DYNAMODB_ERRORS = (
    (400, "com.amazonaws.dynamodb.v20120810#ThrottlingException", "Rate of requests exceeds the allowed throughput."),
    (500, "com.amazonaws.dynamodb.v20120810#InternalServerError", "Internal server error"),
)


_TIMESTAMP = re.compile(r"(?<!\d)\d{10,13}(?!\d)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _Body:
    """The raw-stream interface botocore reads an HTTP response body through."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


class Chaos:
    def __init__(self, rate: float, seed: int) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError("chaos rate must be in [0, 1)")
        self.rate = rate
        self.seed = seed
        self.injected: Counter[str] = Counter()
        self._seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def decide(self, point: str, key: str) -> bool:
        """Whether to inject a fault at this occurrence of (point, key)."""
        if self.rate == 0:
            return False
        with self._lock:
            occurrence = self._seen[(point, key)]
            self._seen[(point, key)] += 1
        digest = hashlib.sha256(f"{self.seed}|{point}|{key}|{occurrence}".encode()).digest()
        hit = int.from_bytes(digest[:8], "big") / 2**64 < self.rate
        if hit:
            with self._lock:
                self.injected[point] += 1
        return hit

    # -- FaultPoints --------------------------------------------------------------------------
    def reached(self, point: str, key: str) -> None:
        if self.decide(point, key):
            raise InjectedCrash(f"injected crash at {point} ({key})")

    # -- DynamoDB -----------------------------------------------------------------------------
    def attach_dynamodb(self, client: Any) -> None:
        """Answer some requests of a (moto) DynamoDB client with a fault instead of sending them.

        botocore calls every `before-send` handler and takes the first answer, so a fault
        returned beside moto's stubber would still let moto apply the request. The client's
        stubber is therefore replaced by one handler that either faults (nothing applied, as a
        throttled request on AWS) or hands the request to moto.
        """
        from moto.core.models import botocore_stubber  # the `local` extra

        events = client.meta.events
        events.unregister("before-send", botocore_stubber)

        def send(request: Any, event_name: str, **kwargs: Any) -> Any:
            fault = self._dynamodb_fault(request)
            if fault is not None:
                return fault
            return botocore_stubber(event_name=event_name, request=request, **kwargs)

        events.register("before-send", send)

    def _dynamodb_fault(self, request: Any) -> AWSResponse | None:
        operation = str(request.headers.get("X-Amz-Target", b"") or "")
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        # Clocks and request ids differ from run to run; the request's identity is the rest.
        stable = _UUID.sub("U", _TIMESTAMP.sub("T", body))
        key = operation + hashlib.sha256(stable.encode()).hexdigest()[:16]
        if not self.decide("dynamodb.error", key):
            return None
        status, error_type, message = _DYNAMODB_ERRORS[int(hashlib.sha256(key.encode()).digest()[0]) % 2]
        payload = json.dumps({"__type": error_type, "message": message}).encode()
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        headers["x-amzn-RequestId"] = "chaos"
        return AWSResponse(request.url, status, headers, _Body(payload))


class ChaosInvoker:
    """Async invokes that are refused, or delivered twice, at the chaos rate."""

    def __init__(self, inner: FunctionInvoker, chaos: Chaos) -> None:
        self._inner = inner
        self._chaos = chaos

    def invoke_async(self, function_name: str, payload: bytes) -> None:
        key = function_name + hashlib.sha256(payload).hexdigest()[:16]
        if self._chaos.decide("invoke.refused", key):
            raise InvokeError(f"{function_name}: TooManyRequestsException (injected)")
        self._inner.invoke_async(function_name, payload)
        if self._chaos.decide("invoke.duplicated", key):
            self._inner.invoke_async(function_name, payload)
