"""`logfan api serve`: the rules API's resolver on 127.0.0.1, so `curl` works against it.

Each HTTP request becomes the API Gateway proxy event the Lambda would get. The caller's customer
comes from the `X-Logfan-Customer` header, which this local server alone turns into the authorizer
context (`requestContext.authorizer.customer_id`); on AWS, API Gateway's IAM authorisation sets the
caller and any such header is just a header the API ignores.
"""

from __future__ import annotations

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipeline.rules_http import build_resolver
from pipeline.rules_service import RulesService

__all__ = ["LOCAL_CUSTOMER_HEADER", "make_server", "proxy_event", "serve"]

LOCAL_CUSTOMER_HEADER = "X-Logfan-Customer"
HOST = "127.0.0.1"


def proxy_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """An API Gateway REST proxy event for one local request (local-only authorizer context)."""
    parts = urlsplit(target)
    query = parse_qs(parts.query)
    customer = next((v for k, v in headers.items() if k.lower() == LOCAL_CUSTOMER_HEADER.lower()), None)
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
            "authorizer": {"customer_id": customer} if customer else None,
        },
        "body": body.decode("utf-8") if body else None,
        "isBase64Encoded": False,
    }


def make_server(service: RulesService, port: int) -> ThreadingHTTPServer:
    app = build_resolver(lambda: service)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            event = proxy_event(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
            response = app.resolve(event, None)  # type: ignore[arg-type]
            body = (response.get("body") or "").encode("utf-8")
            self.send_response(int(response["statusCode"]))
            for name, values in (response.get("multiValueHeaders") or {}).items():
                for value in values:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: request lines would go to stderr for every call."""

    return ThreadingHTTPServer((HOST, port), Handler)


def serve(service: RulesService, *, port: int, on_ready: Callable[[str], None]) -> None:
    server = make_server(service, port)
    on_ready(f"http://{HOST}:{server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
