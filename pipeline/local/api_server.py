"""`logfan api serve`: the rules API's resolver on 127.0.0.1, so `curl` works against it.

Each HTTP request becomes the API Gateway proxy event the Lambda would get. Who is calling:

- `Authorization: Bearer <api key>`: checked by the very code the key authorizer runs on AWS
  (`pipeline.api_keys.authenticate`), with API Gateway's answers: 401 when the header is not a
  bearer key at all, 403 when the key is unknown, wrong or revoked, else the authorizer's context
  (`requestContext.authorizer.customer_id`) reaches the API;
- otherwise the `X-Logfan-Customer` header, which this local server alone turns into that context;
  on AWS it is just a header the API ignores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipeline.api_keys import BEARER_PATTERN, ApiKeyLookup, authenticate
from pipeline.observability import CountingMetrics
from pipeline.ports import MetricsSink
from pipeline.rules_http import build_resolver
from pipeline.rules_service import RulesService

__all__ = ["LOCAL_CUSTOMER_HEADER", "authorize", "make_server", "proxy_event", "serve"]

LOCAL_CUSTOMER_HEADER = "X-Logfan-Customer"
HOST = "127.0.0.1"
UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"message": "User is not authorized to access this resource"}
"""API Gateway's bodies for a token that fails validation, and for an authorizer's Deny."""
_BEARER = re.compile(BEARER_PATTERN)


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def authorize(keys: ApiKeyLookup, authorization: str, metrics: MetricsSink) -> tuple[int, dict[str, str]]:
    """What API Gateway makes of an `Authorization` header with the key authorizer in front:
    `(200, authorizer context)`, or the refusal's status and body."""
    if not _BEARER.match(authorization):
        return 401, UNAUTHORIZED
    decision = authenticate(keys, authorization, metrics)
    if not decision.allowed or decision.customer_id is None:
        return 403, FORBIDDEN
    return 200, {"principalId": decision.customer_id, **decision.context()}


def proxy_event(
    method: str, target: str, headers: dict[str, str], body: bytes, *, authorizer: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event for one local request.

    `authorizer` is what a Lambda authorizer vouched for; without it, the local-only
    `X-Logfan-Customer` header stands in for one.
    """
    parts = urlsplit(target)
    query = parse_qs(parts.query)
    if authorizer is None:
        customer = _header(headers, LOCAL_CUSTOMER_HEADER)
        authorizer = {"customer_id": customer} if customer else None
    return {
        "resource": parts.path,
        "path": parts.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "httpMethod": method,
            "path": parts.path,
            "stage": "local",
            "requestId": "local",
            "identity": {"sourceIp": HOST},
            "authorizer": authorizer,
        },
        "body": body.decode("utf-8") if body else None,
        "isBase64Encoded": False,
    }


def make_server(
    service: RulesService, port: int, *, keys: ApiKeyLookup | None = None, metrics: MetricsSink | None = None
) -> ThreadingHTTPServer:
    """The API on 127.0.0.1:`port`; with `keys`, an `Authorization` header is checked as on AWS."""
    app = build_resolver(lambda: service)
    sink = metrics if metrics is not None else CountingMetrics()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            headers = dict(self.headers.items())
            body = self.rfile.read(length)
            authorization = _header(headers, "Authorization")
            context: dict[str, str] | None = None
            if keys is not None and authorization is not None:
                status, context = authorize(keys, authorization, sink)
                if status != 200:
                    self._reply(status, {"Content-Type": ["application/json"]}, json.dumps(context).encode("utf-8"))
                    return
            response = app.resolve(proxy_event(self.command, self.path, headers, body, authorizer=context), None)  # type: ignore[arg-type]
            self._reply(
                int(response["statusCode"]),
                response.get("multiValueHeaders") or {},
                (response.get("body") or "").encode("utf-8"),
            )

        def _reply(self, status: int, headers: dict[str, list[str]], body: bytes) -> None:
            self.send_response(status)
            for name, values in headers.items():
                for value in values:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: request lines would go to stderr for every call."""

    return ThreadingHTTPServer((HOST, port), Handler)


def serve(
    service: RulesService,
    *,
    port: int,
    on_ready: Callable[[str], None],
    keys: ApiKeyLookup | None = None,
) -> None:
    server = make_server(service, port, keys=keys)
    on_ready(f"http://{HOST}:{server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
