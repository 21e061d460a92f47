"""Child process of the memory section: peak RSS of the fan-out handler on one maximal Kinesis batch.

Run as `python -m pipeline.bench.memory BATCH_BYTES SEED`; prints one JSON line. The batch is
built first, then the kernel's peak-RSS mark is reset (Linux `clear_refs`), so the peak measured
is the handler's alone.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["main"]

EVENTS_PER_RECORD = 1_000
RECORD_WRAPPER_BYTES = 400
"""What the Lambda Kinesis event adds around each record's base64 data."""


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _DiscardingInvoker:
    def invoke_async(self, function_name: str, payload: bytes) -> None:
        del function_name, payload


def main(batch_bytes: int, seed: int) -> dict[str, Any]:
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from pipeline import composition
    from pipeline.bench.traffic import TrafficGenerator, cloudwatch_gzip, make_tenants
    from pipeline.handlers import fan_out
    from pipeline.local.aws import LOCAL_REGION, local_aws
    from pipeline.local.lambda_runtime import LocalLambdaContext
    from pipeline.local.sinks import CapturingNotifier, JsonlRejectSink, JsonlWriter
    from pipeline.local.wiring import LocalKnobs, local_wiring
    from pipeline.observability import CountingMetrics, get_logger

    get_logger().setLevel("CRITICAL")
    tenants = make_tenants(4, 3)
    # Highly compressible: one service's steady chatter, the same few templates over and over.
    generator = TrafficGenerator(tenants, seed=seed, events_per_record=EVENTS_PER_RECORD, match_rate=0.0)
    records: list[dict[str, Any]] = []
    size = 0
    decompressed = 0
    index = 0
    while True:
        document = generator.message()
        raw = json.dumps(document, separators=(",", ":")).encode()
        data = base64.b64encode(cloudwatch_gzip(document)).decode()
        if records and size + len(data) + RECORD_WRAPPER_BYTES > batch_bytes:
            break
        index += 1
        sequence = f"{49_650_000_000_000 + index}"
        records.append(
            {
                "kinesis": {
                    "partitionKey": "p",
                    "sequenceNumber": sequence,
                    "data": data,
                    "kinesisSchemaVersion": "1.0",
                },
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{sequence}",
                "eventName": "aws:kinesis:record",
            }
        )
        size += len(data) + RECORD_WRAPPER_BYTES
        decompressed += len(raw)
    event = {"Records": records}
    with tempfile.TemporaryDirectory() as tmp, local_aws() as aws:
        from pipeline.adapters.dynamodb_config import DynamoDBConfigStore

        config = DynamoDBConfigStore(aws.dynamodb, aws.names.config_table)
        for tenant in tenants:
            config.put_customer(tenant.customer)
        wiring = local_wiring(
            aws,
            LocalKnobs(),
            invoker=_DiscardingInvoker(),
            rejects=JsonlRejectSink(JsonlWriter(Path(tmp) / "rejected.jsonl")),
            notifier=CapturingNotifier(JsonlWriter(Path(tmp) / "notifications.jsonl"), LOCAL_REGION),
            metrics=CountingMetrics(),
        )
        with composition.install(wiring):
            gc.collect()
            before = _rss("VmRSS")
            reset = _reset_peak()
            context: Any = LocalLambdaContext("logfan-fan-out", 60)
            response = fan_out.handler(event, context)
            peak = _rss("VmHWM")
    return {
        "records": len(records),
        "event_bytes": size,
        "decompressed_bytes": decompressed,
        "rss_before_bytes": before,
        "peak_rss_bytes": peak,
        "peak_delta_bytes": max(0, peak - before),
        "peak_reset": reset,
        "failed_records": len(response["batchItemFailures"]),
    }


if __name__ == "__main__":  # pragma: no cover - run by the memory section
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))  # noqa: T201
