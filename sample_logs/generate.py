"""Write the sample captures in sample_logs/: what logfan receives from AWS, made up but true to form.

Files written next to this script (all committed; rules.yaml is hand-written, not generated):

- kinesis_event_lambda_prod.json  a Lambda Kinesis event as AWS delivers it: CloudWatch Logs
  DATA_MESSAGE records from several accounts, one CONTROL_MESSAGE health check and five poison
  records (bad base64, not gzip, truncated gzip, not JSON, JSON without logEvents);
- cwl_messages_api.jsonl          decoded CloudWatch Logs subscription messages, one per line;
- cwl_message_dotnet.json         one decoded message from a .NET Lambda function;
- app_server.log                  a plain-text app server log, one event per line (replay gives it
  the default owner 123456789012).

The content mimics what the Python 3.12, Node.js 20 and .NET 8 Lambda runtimes, Powertools for
AWS Lambda, nginx on ECS and a Java app server actually write. Request ids, event ids, sequence
numbers and every other "random" value are derived from fixed labels with SHA-256, so reruns are
byte-identical.

Rerun from the repository root:  python sample_logs/generate.py
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REGION = "us-east-1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
START_MS = 1_795_874_400_000  # 2026-11-28T14:00:00.000Z

ACME_PAYMENTS = "111122223333"  # customer acme
ACME_WEB = "444455556666"  # customer acme
GLOBEX = "777788889999"  # customer globex
INITECH = "123456789012"  # customer initech (and the owner replay gives plain-text files)
UNCLAIMED = "999900001111"  # no customer claims it: logfan must drop these events
LOGFAN = "210987654321"  # the account that runs the Kinesis stream and the fan-out function

_serial = itertools.count(1)  # makes every event id unique across all the files


def digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest(), "big")


def hex_id(length: int, *parts: object) -> str:
    return f"{digest(*parts):064x}"[:length]


def uuid_for(*parts: object) -> str:
    h = hex_id(32, "uuid", *parts)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"


def iso(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def gzip_bytes(data: bytes) -> bytes:
    """One gzip member with the header CloudWatch Logs writes (no mtime, XFL 0, OS 0: "H4sIAAAAAAAAA...")."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    return b"\x1f\x8b\x08" + bytes(7) + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def gzip_json(document: dict[str, Any]) -> bytes:
    return gzip_bytes(json.dumps(document, separators=(",", ":")).encode())


@dataclass
class Stream:
    """One log stream being written: events get non-decreasing timestamps and unique 56-digit ids."""

    owner: str
    log_group: str
    log_stream: str
    clock_ms: int
    events: list[dict[str, Any]] = field(default_factory=list)

    def log(self, message: str, after_ms: int = 1) -> int:
        self.clock_ms += after_ms
        # Like CloudWatch Logs: the timestamp in the high bits, a per-stream part, then a counter.
        stream_part = digest(self.owner, self.log_group, self.log_stream) % 2**100
        event_id = (self.clock_ms << 144) | (stream_part << 40) | next(_serial)
        self.events.append({"id": f"{event_id:056d}", "timestamp": self.clock_ms, "message": message})
        return self.clock_ms

    def message(self, subscription_filter: str, *, account_policy: bool = False) -> dict[str, Any]:
        document: dict[str, Any] = {
            "messageType": "DATA_MESSAGE",
            "owner": self.owner,
            "logGroup": self.log_group,
            "logStream": self.log_stream,
            "subscriptionFilters": [subscription_filter],
        }
        if account_policy:
            document["policyLevel"] = "ACCOUNT_LEVEL_POLICY"
        document["logEvents"] = self.events
        return document


@dataclass(frozen=True)
class Function:
    name: str
    runtime: str  # as INIT_START names it
    memory_mb: int
    timeout_s: float
    service: str = ""  # Powertools service name, when the function uses Powertools

    def stream(self, owner: str, clock_ms: int, instance: int = 0) -> Stream:
        log_stream = f"2026/11/28/[$LATEST]{hex_id(32, owner, self.name, instance)}"
        return Stream(owner, f"/aws/lambda/{self.name}", log_stream, clock_ms)


class Invocation:
    """One invocation written to `stream` as the Lambda runtime frames it (START ... END, REPORT)."""

    def __init__(self, stream: Stream, function: Function, *, gap_ms: int = 40, init_ms: float | None = None) -> None:
        self.stream, self.function, self.init_ms = stream, function, init_ms
        self.request_id = uuid_for(stream.owner, function.name, stream.clock_ms)
        self.trace_id = f"1-{stream.clock_ms // 1000:08x}-{hex_id(24, 'trace', self.request_id)}"
        if init_ms is not None:
            arn = f"arn:aws:lambda:{REGION}::runtime:{hex_id(64, function.runtime)}"
            stream.log(f"INIT_START Runtime Version: {function.runtime}\tRuntime Version ARN: {arn}\n", gap_ms)
            gap_ms = math.ceil(init_ms)
        self.started_ms = stream.log(f"START RequestId: {self.request_id} Version: $LATEST\n", gap_ms)

    def line(self, level: str, text: str, after_ms: int = 4) -> None:
        """Node.js console.* and .NET ILambdaLogger: timestamp, request id, level, text."""
        at = self.stream.clock_ms + after_ms
        self.stream.log(f"{iso(at)}\t{self.request_id}\t{level}\t{text}\n", after_ms)

    def py(self, level: str, text: str, after_ms: int = 4) -> None:
        """Python's logging module under the Lambda runtime's default handler."""
        at = self.stream.clock_ms + after_ms
        self.stream.log(f"[{level}]\t{iso(at)}\t{self.request_id}\t{text}\n", after_ms)

    def raw(self, text: str, after_ms: int = 2) -> None:
        """print() / Console.WriteLine: the text and nothing else."""
        self.stream.log(f"{text}\n", after_ms)

    def powertools(self, level: str, location: str, message: str, after_ms: int = 5, **extra: Any) -> None:
        """A Powertools for AWS Lambda (Python) structured log line."""
        at = self.stream.clock_ms + after_ms
        stamp = (EPOCH + timedelta(milliseconds=at)).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3] + "+0000"
        owner, name = self.stream.owner, self.function.name
        record = {
            "level": level,
            "location": location,
            "message": message,
            "timestamp": stamp,
            "service": self.function.service,
            "cold_start": self.init_ms is not None,
            "function_name": name,
            "function_memory_size": str(self.function.memory_mb),
            "function_arn": f"arn:aws:lambda:{REGION}:{owner}:function:{name}",
            "function_request_id": self.request_id,
            "xray_trace_id": self.trace_id,
            **extra,
        }
        self.stream.log(json.dumps(record, separators=(",", ":")) + "\n", after_ms)

    def uncaught_python(self, error: str, frames: list[tuple[str, int, str, str]]) -> None:
        """An unhandled Python exception: ONE event holding the error line and the whole traceback."""
        lines = [f"[ERROR] {error}", "Traceback (most recent call last):"]
        for path, number, function, source in frames:
            lines += [f'  File "{path}", line {number}, in {function}', f"    {source}"]
        self.stream.log("\n".join(lines) + "\n", 6)

    def timeout(self) -> None:
        seconds = self.function.timeout_s + 0.02
        at = self.started_ms + round(seconds * 1000)
        self.stream.log(
            f"{iso(at)} {self.request_id} Task timed out after {seconds:.2f} seconds\n\n", at - self.stream.clock_ms
        )
        self.end(seconds * 1000, max_memory_mb=self.function.memory_mb // 3, status="timeout")

    def end(self, duration_ms: float, max_memory_mb: int, *, status: str = "", xray: bool = False) -> None:
        self.stream.log(
            f"END RequestId: {self.request_id}\n",
            max(1, self.started_ms + math.ceil(duration_ms) - self.stream.clock_ms),
        )
        fields = [
            f"REPORT RequestId: {self.request_id}",
            f"Duration: {duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(duration_ms)} ms",
            f"Memory Size: {self.function.memory_mb} MB",
            f"Max Memory Used: {max_memory_mb} MB",
        ]
        if self.init_ms is not None:
            fields.append(f"Init Duration: {self.init_ms:.2f} ms")
        if status:
            fields.append(f"Status: {status}")
        report = "\t".join(fields) + "\t"
        if xray:
            report += (
                f"\nXRAY TraceId: {self.trace_id}\tSegmentId: {hex_id(16, 'segment', self.request_id)}\tSampled: true\t"
            )
        self.stream.log(report + "\n", 1)


PAYMENTS = Function("payments-charge", "python:3.12.v38", 512, 15, service="payments")
CHECKOUT = Function("checkout-api", "nodejs:20.v43", 1024, 29)
REPORTS = Function("report-export", "python:3.12.v38", 3008, 300)
TPS = Function("tps-report", "python:3.12.v38", 256, 15)
INVOICES = Function("invoice-render", "nodejs:20.v43", 512, 10)
BILLING = Function("billing-dotnet", "dotnet:8.v33", 1024, 30)

CSV_PROBE = ",".join(["a"] * 29)  # 28 commas, no "P": globex's csv-catastrophic rule backtracks for ages on it


def payments(owner: str, clock_ms: int, instance: int, *, big_bucks_expired: bool, timeout: bool) -> Stream:
    s = PAYMENTS.stream(owner, clock_ms, instance)
    inv = Invocation(s, PAYMENTS, init_ms=412.11 if instance == 0 else 398.64)
    inv.powertools("INFO", "charge:61", "Charging card", customer_id="cus_Qm81Ld", UserTier="Standard", amount=4599)
    inv.powertools("INFO", "charge:97", "Card charged", customer_id="cus_Qm81Ld", charge_id="ch_3PzX0c2eZvKYlo2C")
    inv.end(102.47, 87, xray=True)
    inv = Invocation(s, PAYMENTS, gap_ms=1850)
    inv.powertools("INFO", "charge:61", "Charging card", customer_id="cus_Zt40Bb", UserTier="BigBucksCustomer")
    if big_bucks_expired:
        inv.powertools(
            "ERROR", "charge:88", "Payment declined", UserTier="BigBucksCustomer", reason="CreditCardExpired"
        )
    else:
        inv.powertools("INFO", "charge:97", "Card charged", customer_id="cus_Zt40Bb", charge_id="ch_3PzX1a9fRr0Q")
    inv.end(311.90, 91, xray=True)
    inv = Invocation(s, PAYMENTS, gap_ms=2210)
    inv.powertools("INFO", "charge:61", "Charging card", customer_id="cus_Hh72Kp", UserTier="Standard", amount=1999)
    inv.powertools("WARNING", "charge:88", "Payment declined", UserTier="Standard", reason="CreditCardExpired")
    inv.end(188.04, 92, xray=True)
    if timeout:
        inv = Invocation(s, PAYMENTS, gap_ms=950)
        inv.powertools("INFO", "charge:61", "Charging card", customer_id="cus_Lk09Wq", UserTier="BigBucksCustomer")
        inv.powertools("WARNING", "gateway:144", "Card network slow, retrying", attempt=2, after_ms=5012)
        inv.timeout()
    return s


def checkout(owner: str, clock_ms: int, instance: int, *, outcome: str) -> Stream:
    """Node.js 20; `outcome` is "ok", "error" (an Invoke Error) or "timeout"."""
    s = CHECKOUT.stream(owner, clock_ms, instance)
    inv = Invocation(s, CHECKOUT, init_ms=231.55)
    inv.line("INFO", "GET /cart/8812 items=3 total=84.97")
    inv.end(48.12, 74)
    inv = Invocation(s, CHECKOUT, gap_ms=640)
    inv.line("INFO", "POST /checkout cart=8812 shipping=express")
    if outcome == "error":
        error = {
            "errorType": "TypeError",
            "errorMessage": "Cannot read properties of undefined (reading 'id')",
            "stack": [
                "TypeError: Cannot read properties of undefined (reading 'id')",
                "    at Runtime.handler (/var/task/index.js:12:20)",
                "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
            ],
        }
        inv.line("ERROR", "Invoke Error \t" + json.dumps(error, separators=(",", ":")), after_ms=11)
        inv.end(27.66, 79)
    elif outcome == "timeout":
        inv.line("WARN", "inventory-service did not answer within 5000 ms, retrying (1/5)", after_ms=5003)
        inv.timeout()
    else:
        inv.line("WARN", "address validation slow (812 ms), continuing", after_ms=815)
        inv.line("INFO", "order created order_id=ord_7Kq2mX91 total=84.97")
        inv.end(893.40, 81)
    return s


def report_export(clock_ms: int, month: str, *, peak_mb: int) -> Stream:
    """globex's ledger export: prints CSV rows (one is the many-commas probe) and can use a lot of memory."""
    s = REPORTS.stream(GLOBEX, clock_ms, int(month[-2:]))
    inv = Invocation(s, REPORTS, init_ms=1208.36)
    inv.py("INFO", f"Exporting monthly ledger for tenant globex-emea ({month})")
    inv.raw("invoice_id,issued,customer,currency,net,tax,gross,status,region,due")
    inv.raw(f"INV-{month}-0042,{month}-02,Hank Scorpio Ltd,EUR,1200.00,228.00,1428.00,paid,emea,{month}-30")
    inv.raw(CSV_PROBE)  # a debug print of a placeholder row that nobody removed
    inv.py("WARNING", "Row 1877 has 29 columns, expected 10: skipped", after_ms=1)
    inv.py("INFO", f"Wrote s3://globex-reports-emea/ledger/{month}.csv (18211 rows, 2.4 MiB)", after_ms=4120)
    inv.end(5530.75, peak_mb)
    return s


def tps_report(clock_ms: int) -> Stream:
    s = TPS.stream(INITECH, clock_ms)
    inv = Invocation(s, TPS, init_ms=388.02)
    inv.py("INFO", "Generating TPS report cover sheet for week 47")
    inv.uncaught_python(
        "KeyError: 'customer_id'", [("/var/task/app.py", 42, "handler", "customer = event['customer_id']")]
    )
    inv.end(61.30, 64)
    inv = Invocation(s, TPS, gap_ms=3100)
    inv.py("INFO", "Generating TPS report cover sheet for week 47")
    inv.py("ERROR", "Printer tps-3rd-floor unreachable; report queued")  # an [ERROR] line without a traceback
    inv.end(412.18, 66)
    inv = Invocation(s, TPS, gap_ms=1400)
    inv.py("INFO", "Fetching memo recipients from ldap://ldap.initech.internal")
    inv.timeout()
    return s


def tps_digest(clock_ms: int) -> Stream:
    """initech: a handled exception logged with logger.exception (one event, traceback included)."""
    s = TPS.stream(INITECH, clock_ms, 1)
    inv = Invocation(s, TPS, init_ms=402.77)
    inv.py("INFO", "Building weekly digest for 214 recipients")
    frames = [
        '  File "/var/task/digest.py", line 88, in build',
        "    rows = [render(r) for r in fetch_rows(week)]",
        '  File "/var/task/digest.py", line 51, in render',
        '    return TEMPLATE.format(**row) + f"{row["total"] / row["count"]:.2f}"',
        "ZeroDivisionError: division by zero",
    ]
    inv.py("ERROR", "Digest rendering failed\nTraceback (most recent call last):\n" + "\n".join(frames), after_ms=37)
    inv.py("INFO", "Digest sent without the totals table")
    inv.end(903.12, 71)
    return s


def invoice_render(clock_ms: int) -> Stream:
    s = INVOICES.stream(INITECH, clock_ms)
    inv = Invocation(s, INVOICES, init_ms=187.40)
    inv.line("INFO", "rendering invoice INV-77812 for Penetrode Corp")
    inv.line("ERROR", "Payment Failed: card_declined (invoice INV-77812, retry scheduled in 24h)", after_ms=62)
    inv.end(318.22, 96)
    inv = Invocation(s, INVOICES, gap_ms=2900)
    inv.line("INFO", "rendering invoice INV-77813 for Chotchkie's")
    inv.line("INFO", "payment retry succeeded for INV-77790")
    inv.end(121.09, 97)
    return s


def billing_dotnet(clock_ms: int) -> Stream:
    """globex's .NET 8 billing function: exceptions are one multi-line event each."""
    s = BILLING.stream(GLOBEX, clock_ms)
    inv = Invocation(s, BILLING, init_ms=742.58)
    inv.line("info", "Processing invoice batch 2026-11-28/0042 (37 invoices)")
    inv.line("info", "Invoice GLX-88120 posted to ledger", after_ms=88)
    stack = [
        "System.NullReferenceException: Object reference not set to an instance of an object.",
        "   at Billing.Handler.FunctionHandler(InvoiceBatch batch, ILambdaContext context) in /src/Handler.cs:line 57",
        "   at lambda_method1(Closure, Stream, ILambdaContext, Stream)",
        "   at Amazon.Lambda.RuntimeSupport.LambdaBootstrap.InvokeOnceAsync(CancellationToken cancellationToken)",
    ]
    inv.line("fail", "\n".join(stack), after_ms=9)
    inv.end(141.86, 118)
    inv = Invocation(s, BILLING, gap_ms=1200)
    inv.line("info", "Processing invoice batch 2026-11-28/0043 (12 invoices)")
    inv.line("warn", "Exchange rate for ARS is 26 hours old, using it anyway")
    stack = [
        "System.InvalidOperationException: Sequence contains no matching element",
        "   at System.Linq.ThrowHelper.ThrowNoMatchException()",
        "   at System.Linq.Enumerable.First[TSource](IEnumerable`1 source, Func`2 predicate)",
        "   at Billing.TaxTable.RateFor(String region) in /src/TaxTable.cs:line 31",
        "   at Billing.Handler.FunctionHandler(InvoiceBatch batch, ILambdaContext context) in /src/Handler.cs:line 49",
    ]
    inv.line("fail", "\n".join(stack), after_ms=21)
    inv.end(77.40, 121)
    inv = Invocation(s, BILLING, gap_ms=900)
    inv.line("info", "Processing invoice batch 2026-11-28/0044 (58 invoices)")
    inv.line(
        "warn", "Amazon.DynamoDBv2.Model.ProvisionedThroughputExceededException: Rate exceeded; retry 1/3", after_ms=240
    )
    inv.line("info", "Ledger write succeeded after 2 retries", after_ms=610)
    inv.end(1022.93, 126)
    inv = Invocation(s, BILLING, gap_ms=700)
    inv.line("info", "Processing invoice batch 2026-11-28/0045 (301 invoices)")
    inv.timeout()
    return s


def nginx(owner: str, clock_ms: int, requests: list[tuple[str, int, int]]) -> Stream:
    """nginx access lines from the awslogs driver on ECS: (request line, status, bytes)."""
    s = Stream(owner, "/ecs/web", f"web/nginx/{hex_id(32, owner, 'ecs-task')}", clock_ms)
    for n, (request, status, size) in enumerate(requests):
        at = s.clock_ms + 40 + digest(owner, n) % 900
        stamp = (EPOCH + timedelta(milliseconds=at)).strftime("%d/%b/%Y:%H:%M:%S +0000")
        client = f"10.0.{digest(owner, n, 'net') % 4}.{2 + digest(owner, n, 'host') % 250}"
        seconds = 0.002 + (digest(owner, n, "rt") % 400) / 1000 if status < 500 else 30.001
        agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Safari/605.1.15"
        line = f'{client} - - [{stamp}] "{request} HTTP/1.1" {status} {size} "-" "{agent}" rt={seconds:.3f}'
        s.log(line, at - s.clock_ms)
    return s


def web_app(clock_ms: int) -> Stream:
    """acme's web app container (logfmt): the big-bucks line here is outside the rule's /aws/lambda/* scope."""
    s = Stream(ACME_WEB, "/ecs/web", f"web/app/{hex_id(32, ACME_WEB, 'ecs-task')}", clock_ms)
    lines = [
        'level=info msg="listening" addr=:8080 version=2026.11.3',
        'level=info msg="cart loaded" cart=8812 items=3',
        'level=error msg="charge failed" customer=cus_Zt40Bb UserTier=BigBucksCustomer error=CreditCardExpired',
        'level=warn msg="upstream slow" upstream=inventory-service latency_ms=4870',
        'level=error msg="upstream timeout" upstream=inventory-service status=504',
        'level=info msg="order created" order_id=ord_7Kq2mX91',
    ]
    for n, line in enumerate(lines):
        at = s.clock_ms + 300 + 97 * n
        s.log(f"time={iso(at)} {line}", at - s.clock_ms)
    return s


def pack(message: dict[str, Any]) -> str:
    """A record's data as CloudWatch Logs writes it and Lambda hands it over: base64 of gzipped JSON."""
    return base64.b64encode(gzip_json(message)).decode()


def kinesis_event() -> dict[str, Any]:
    """The Lambda Kinesis event: 6 data records, a CONTROL_MESSAGE health check and 5 poison records."""
    t = START_MS
    health_check = "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."
    control: dict[str, Any] = {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
    }
    # Yes: AWS sends no subscription filter and an empty event id in its health checks.
    control |= {"subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": t + 8_512, "message": health_check}]}
    acme_charges = payments(ACME_PAYMENTS, t + 1_000, 0, big_bucks_expired=True, timeout=True)
    acme_checkout = checkout(ACME_WEB, t + 4_000, 0, outcome="error")
    globex_ledger = report_export(t + 9_000, "2026-11", peak_mb=2871)
    initech_tps = tps_report(t + 14_000)
    unclaimed_charges = payments(UNCLAIMED, t + 20_000, 0, big_bucks_expired=True, timeout=True)
    acme_charges_2 = payments(ACME_PAYMENTS, t + 41_000, 1, big_bucks_expired=False, timeout=False)
    # The poison records' payloads.
    health = Stream(GLOBEX, "/ecs/web", f"web/nginx/{hex_id(32, GLOBEX, 'ecs-task')}", t + 17_000)
    health.log('10.0.2.61 - - [28/Nov/2026:14:00:17 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "ELB-HealthChecker/2.0"')
    not_gzipped = json.dumps(health.message("logfan-globex"), separators=(",", ":")).encode()
    halved = base64.b64decode(pack(checkout(ACME_WEB, t + 30_000, 9, outcome="ok").message("logfan-acme-web")))
    raw_line = gzip_bytes(b"START RequestId: 3f0c9a5e-1b7d-4e22-9c41-0d8e6f2a7b13 Version: $LATEST\n")
    incomplete = payments(ACME_PAYMENTS, t + 50_000, 9, big_bucks_expired=False, timeout=False).message("logfan-acme")
    del incomplete["logEvents"]
    payloads = [
        pack(acme_charges.message("logfan-acme")),
        pack(acme_checkout.message("logfan-acme-web")),
        pack(control),
        pack(globex_ledger.message("logfan-globex")),
        "H4sIAAAAAAAA/!!corrupted-by-producer!!===",  # (i) not base64 at all
        pack(initech_tps.message("logfan-initech")),
        base64.b64encode(not_gzipped).decode(),  # (ii) valid base64 of plain JSON: someone forgot to gzip
        pack(unclaimed_charges.message("logfan-trial")),
        base64.b64encode(halved[: len(halved) // 2]).decode(),  # (iii) a gzip stream cut in half
        pack(acme_charges_2.message("logfan-acme")),
        base64.b64encode(raw_line).decode(),  # (iv) gzip of a raw log line, not JSON
        pack(incomplete),  # (v) gzip of JSON without logEvents
    ]
    records = []
    sequence = 49_657_316_201_734_860_118_442_911_036_555_772_640_912_387_405_118_292_994
    for index, data in enumerate(payloads, start=1):
        sequence += 10**21 + digest("sequence", index) % 10**20
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": hex_id(32, "partition", index),
                    "sequenceNumber": str(sequence),
                    "data": data,
                    "approximateArrivalTimestamp": (START_MS + 60_000 + index * 137) / 1000,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{sequence}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{LOGFAN}:role/logfan-fan-out-role",
                "awsRegion": REGION,
                "eventSourceARN": f"arn:aws:kinesis:{REGION}:{LOGFAN}:stream/logfan-logs",
            }
        )
    return {"Records": records}


def api_messages() -> list[dict[str, Any]]:
    t = START_MS + 120_000
    shop = [("GET / ", 200, 5120), ("GET /static/app.3f9c.js", 200, 88213), ("GET /api/cart", 200, 512)]
    acme_requests = [
        *shop,
        ("POST /api/checkout", 201, 342),
        ("GET /api/cart", 304, 0),
        ("GET /favicon.ico", 404, 153),
        ("POST /api/checkout", 502, 157),
        ("GET /api/orders?page=2", 200, 2210),
        ("POST /api/checkout", 504, 167),
        ("GET /healthz", 200, 2),
        *shop,
    ]
    globex_requests = [
        *shop,
        ("GET /reports/ledger/2026-11.csv", 200, 2516582),
        ("POST /api/invoices", 503, 197),
        *shop,
    ]
    return [
        payments(ACME_PAYMENTS, t, 2, big_bucks_expired=True, timeout=False).message(
            "logfan-acme", account_policy=True
        ),
        nginx(ACME_WEB, t + 3_000, acme_requests).message("logfan-acme-web"),
        web_app(t + 5_000).message("logfan-acme-web"),
        checkout(ACME_WEB, t + 8_000, 1, outcome="timeout").message("logfan-acme-web"),
        nginx(GLOBEX, t + 10_000, globex_requests).message("logfan-globex"),
        report_export(t + 40_000, "2026-10", peak_mb=912).message("logfan-globex", account_policy=True),
        tps_digest(t + 52_000).message("logfan-initech", account_policy=True),
        invoice_render(t + 55_000).message("logfan-initech"),
        checkout(UNCLAIMED, t + 57_000, 0, outcome="error").message("logfan-trial"),
    ]


def app_server_log() -> str:
    """initech's app server: a plain-text file, one event per line, each starting with its UTC time."""
    special = {
        1: "INFO  [main] c.i.tps.TpsApplication - Started TpsApplication in 7.412 seconds (process running for 8.1)",
        9: "WARN  [http-nio-8080-exec-2] c.i.billing.PaymentService - payment declined order=ORD-558220 UserTier=Standard reason=InsufficientFunds",
        14: "ERROR [http-nio-8080-exec-7] c.i.billing.PaymentService - Payment FAILED order=ORD-558213 UserTier=BigBucksCustomer gateway=adyen reason=CreditCardExpired amount=1249.00 USD",
        15: 'INFO  [http-nio-8080-exec-7] access 10.20.4.17 "POST /api/payments HTTP/1.1" 402 188 131ms',
        21: "ERROR [http-nio-8080-exec-3] c.i.tps.CoverSheetController - Request processing failed: java.lang.IllegalStateException: TPS report is missing its cover sheet",
        22: 'INFO  [http-nio-8080-exec-3] access 10.20.4.52 "POST /api/tps-reports HTTP/1.1" 500 214 18ms',
        27: f"DEBUG [scheduling-1] c.i.export.CsvExporter - row {CSV_PROBE}",
        31: "INFO  [http-nio-8080-exec-5] c.i.billing.PaymentService - Payment succeeded order=ORD-558240 UserTier=BigBucksCustomer",
        34: "WARN  [HikariPool-1 housekeeper] com.zaxxer.hikari.pool.HikariPool - HikariPool-1 - Thread starvation or clock leap detected (housekeeper delta=1m2s).",
        35: "ERROR [http-nio-8080-exec-1] c.i.billing.GatewayClient - PAYMENT FAILED order=ORD-558251 gateway=adyen status=503 after 30012ms",
        36: 'INFO  [http-nio-8080-exec-1] access 10.20.4.17 "POST /api/payments HTTP/1.1" 502 166 30014ms',
        44: "INFO  [scheduling-1] c.i.billing.PaymentService - retry policy loaded: payment failover disabled, max attempts 3",
        50: 'INFO  [http-nio-8080-exec-9] access 10.20.5.8 "GET /api/reports/export HTTP/1.1" 503 97 2ms',
        55: "INFO  [SpringApplicationShutdownHook] c.i.tps.TpsApplication - Graceful shutdown complete",
    }
    paths = [("/api/tps-reports?week=47", 6120), ("/api/staplers/red", 1480), ("/healthz", 2), ("/api/memos", 3310)]
    lines, clock = [], START_MS + 200
    for n in range(1, 57):
        clock += 150 + digest("app", n) % 4000
        if n in special:
            text = special[n]
        else:
            (path, typical), status = paths[digest("path", n) % 4], (200, 200, 200, 304, 404)[digest("status", n) % 5]
            size = {304: 0, 404: 153}.get(status, typical + digest("size", n) % (typical // 10 + 1))
            took = 1 + digest("took", n) % 90
            text = f'INFO  [http-nio-8080-exec-{n % 10}] access 10.20.{4 + n % 2}.{17 + n % 40} "GET {path} HTTP/1.1" {status} {size} {took}ms'
        lines.append(f"{iso(clock)} {text}\n")
    return "".join(lines)


def write_json(name: str, document: Any) -> None:
    (HERE / name).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8", newline="\n")


def main() -> None:
    write_json("kinesis_event_lambda_prod.json", kinesis_event())
    lines = "".join(json.dumps(message, separators=(",", ":")) + "\n" for message in api_messages())
    (HERE / "cwl_messages_api.jsonl").write_text(lines, encoding="utf-8", newline="\n")
    write_json("cwl_message_dotnet.json", billing_dotnet(START_MS + 240_000).message("logfan-globex"))
    (HERE / "app_server.log").write_text(app_server_log(), encoding="utf-8", newline="\n")
    print(f"wrote the sample captures to {HERE}")


if __name__ == "__main__":
    main()
