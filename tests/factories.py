"""Builders for test inputs in the real wire formats."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
from typing import Any

from pipeline.decoding import parse_logs_message
from pipeline.fanout import KinesisRecordRef
from pipeline.models import Channel, ChannelType, Customer, LogEvent, Match, Rule, StreamEvents
from pipeline.routing import DecodedRecord

_ids = itertools.count(1)


def event(message: str, *, timestamp: int = 1_764_380_000_000, event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or f"{next(_ids):056d}", "timestamp": timestamp, "message": message}


def logs_message(
    owner: str,
    messages: list[str] | None = None,
    *,
    log_group: str = "/aws/lambda/checkout",
    log_stream: str = "2026/11/28/[$LATEST]abc",
    events: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "messageType": "DATA_MESSAGE",
        "owner": owner,
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": ["logfan"],
        "logEvents": events if events is not None else [event(m) for m in messages or []],
        **extra,
    }


def control_message() -> dict[str, Any]:
    return {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [event("CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.")],
    }


def encode(document: dict[str, Any] | bytes) -> str:
    """base64(gzip(JSON)), as a CloudWatch Logs record appears in a Lambda Kinesis event."""
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode()


_sequence = itertools.count(49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000)


def record_ref(data: str, *, shard_id: str = "shardId-000000000000") -> KinesisRecordRef:
    sequence = str(next(_sequence))
    return KinesisRecordRef(event_id=f"{shard_id}:{sequence}", shard_id=shard_id, sequence_number=sequence, data=data)


def kinesis_event(datas: list[str], *, shard_id: str = "shardId-000000000000") -> dict[str, Any]:
    """A Lambda Kinesis event as the event source mapping delivers it."""
    refs = [record_ref(d, shard_id=shard_id) for d in datas]
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "p",
                    "sequenceNumber": ref.sequence_number,
                    "data": ref.data,
                    "approximateArrivalTimestamp": 1_764_380_000.5,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": ref.event_id,
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/logfan-fan-out",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/logfan-logs",
            }
            for ref in refs
        ]
    }


def customer(customer_id: str, accounts: list[str], channel_id: str = "ops") -> Customer:
    return Customer(
        customer_id=customer_id,
        accounts=accounts,
        channels=[Channel(channel_id=channel_id, type=ChannelType.WEBHOOK, url="https://hooks.example.com/x")],
    )


def rule(customer_id: str, rule_id: str, *patterns: str, channel: str = "ops", **fields: Any) -> Rule:
    return Rule(customer_id=customer_id, rule_id=rule_id, patterns=list(patterns), channel=channel, **fields)


def decoded_record(document: dict[str, Any], *, sequence_number: str | None = None) -> DecodedRecord:
    """A record the fan-out decoded, as routing receives it."""
    return DecodedRecord(
        sequence_number=sequence_number or str(next(_sequence)),
        message=parse_logs_message(json.dumps(document).encode()),
    )


def stream_events(
    messages: list[str],
    *,
    owner: str = "111122223333",
    log_group: str = "/aws/lambda/checkout",
    log_stream: str = "2026/11/28/[$LATEST]abc",
    timestamp: int = 1_764_380_000_000,
) -> StreamEvents:
    """One stream's events as a parser receives them; timestamps rise by one millisecond per event."""
    return StreamEvents(
        owner=owner,
        log_group=log_group,
        log_stream=log_stream,
        events=[LogEvent.model_validate(event(m, timestamp=timestamp + i)) for i, m in enumerate(messages)],
    )


def log_match(
    message: str = "ERROR boom",
    *,
    customer_id: str = "acme",
    rule_id: str = "errors",
    event_id: str | None = None,
    timestamp: int = 1_764_380_000_000,
    log_group: str = "/aws/lambda/checkout",
    log_stream: str = "2026/11/28/[$LATEST]abc",
    owner: str = "111122223333",
) -> Match:
    return Match(
        customer_id=customer_id,
        rule_id=rule_id,
        event_id=event_id or f"{next(_ids):056d}",
        owner=owner,
        log_group=log_group,
        log_stream=log_stream,
        timestamp=timestamp,
        message=message,
    )
