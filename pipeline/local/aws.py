"""Emulated AWS for the local runtime: moto in-process (or a moto server at an endpoint, such as the one
`logfan local up` starts), resources named as the SAM template names them.

moto's backends are plain dicts without locks, and the local runtime calls them from several
worker threads (concurrent parser invocations). Every client handed out is therefore wrapped so
that one AWS call runs at a time, which is also how a real service serialises conditional writes
on one item. A server would cope with concurrent calls, but its clients are wrapped the same way, so
a replay behaves the same on either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from pipeline.config import ResourceNames

__all__ = [
    "LOCAL_ACCOUNT",
    "LOCAL_REGION",
    "LocalAws",
    "SerializedClient",
    "create_resources",
    "endpoint_aws",
    "local_aws",
]

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "123456789012"
LOCAL_DYNAMODB_CONFIG = Config(retries={"mode": "legacy", "max_attempts": 3})
"""moto's default account id."""


class SerializedClient:
    """A boto3 client proxy whose API calls run one at a time across threads."""

    def __init__(self, client: Any, lock: threading.RLock) -> None:
        self._client = client
        self._lock = lock

    @property
    def unwrapped(self) -> Any:
        """The client itself, for registering botocore event handlers on it."""
        return self._client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith("_") or not callable(attribute) or name in ("get_paginator", "get_waiter"):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


@dataclass(frozen=True)
class LocalAws:
    names: ResourceNames
    dynamodb: Any
    kinesis: Any
    sqs: Any
    sns: Any
    stream_arn: str
    poison_queue_url: str
    new_dynamodb: Callable[[], Any]
    """Another DynamoDB client on the same emulated account (e.g. one for chaos to break)."""
    endpoint_url: str | None = None
    """The server every client talks to; None: moto in-process."""


def _tables(names: ResourceNames) -> list[dict[str, Any]]:
    composite = {
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
    }
    return [
        {"TableName": names.config_table, **composite},
        {
            "TableName": names.batches_table,
            "KeySchema": composite["KeySchema"],
            "AttributeDefinitions": [
                *composite["AttributeDefinitions"],
                {"AttributeName": "open_shard", "AttributeType": "S"},
                {"AttributeName": "created_at", "AttributeType": "N"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "open-batches",
                    "KeySchema": [
                        {"AttributeName": "open_shard", "KeyType": "HASH"},
                        {"AttributeName": "created_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        },
        {
            "TableName": names.matches_table,
            "KeySchema": [{"AttributeName": "match_key", "KeyType": "HASH"}],
            "AttributeDefinitions": [
                {"AttributeName": "match_key", "AttributeType": "S"},
                {"AttributeName": "held_shard", "AttributeType": "S"},
                {"AttributeName": "hold_until", "AttributeType": "N"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "held-notifications",
                    "KeySchema": [
                        {"AttributeName": "held_shard", "KeyType": "HASH"},
                        {"AttributeName": "hold_until", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        },
    ]


def create_resources(
    session: boto3.session.Session, names: ResourceNames, *, shards: int = 1, **client_kwargs: Any
) -> LocalAws:
    """Create the tables, stream and queue the template declares (idempotent), return clients."""
    lock = threading.RLock()
    # Three attempts with DynamoDB's legacy 50 ms backoff: throttling mostly heals inside the SDK,
    # as on AWS, and what does not reaches our code quickly instead of after ten doubling waits.
    dynamodb = session.client("dynamodb", config=LOCAL_DYNAMODB_CONFIG, **client_kwargs)
    kinesis = session.client("kinesis", **client_kwargs)
    sqs = session.client("sqs", **client_kwargs)
    sns = session.client("sns", **client_kwargs)
    # A long-lived server (`local up`, a shared test server) holds more tables and streams than one
    # listing page: tables are listed page by page, the stream is asked for by name.
    existing = {name for page in dynamodb.get_paginator("list_tables").paginate() for name in page["TableNames"]}
    for table in _tables(names):
        if table["TableName"] not in existing:
            dynamodb.create_table(BillingMode="PAY_PER_REQUEST", **table)
    for ttl_table in (names.batches_table, names.matches_table):
        dynamodb.update_time_to_live(
            TableName=ttl_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
    try:
        kinesis.describe_stream_summary(StreamName=names.stream)
    except kinesis.exceptions.ResourceNotFoundException:
        kinesis.create_stream(StreamName=names.stream, ShardCount=shards)
    stream_arn = kinesis.describe_stream_summary(StreamName=names.stream)["StreamDescriptionSummary"]["StreamARN"]
    queue_url = sqs.create_queue(QueueName=names.poison_queue)["QueueUrl"]
    wrap: Callable[[Any], SerializedClient] = lambda client: SerializedClient(client, lock)  # noqa: E731
    return LocalAws(
        names=names,
        new_dynamodb=lambda: wrap(session.client("dynamodb", config=LOCAL_DYNAMODB_CONFIG, **client_kwargs)),
        dynamodb=wrap(dynamodb),
        kinesis=wrap(kinesis),
        sqs=wrap(sqs),
        sns=wrap(sns),
        stream_arn=stream_arn,
        poison_queue_url=queue_url,
        endpoint_url=client_kwargs.get("endpoint_url"),
    )


def _session() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=LOCAL_REGION)


@contextmanager
def local_aws(names: ResourceNames | None = None, *, shards: int = 1) -> Iterator[LocalAws]:
    """A fresh, empty emulated AWS account with logfan's resources, for the duration of the block."""
    from moto import mock_aws  # the `local` extra; Lambda deployments never import it

    with mock_aws():
        yield create_resources(_session(), names or ResourceNames(), shards=shards)


def endpoint_aws(endpoint_url: str, names: ResourceNames | None = None, *, shards: int = 1) -> LocalAws:
    """The emulated account of the server at `endpoint_url`, with logfan's resources (created when
    missing; `shards` applies only to a stream created now). What it holds stays for the next run."""
    return create_resources(_session(), names or ResourceNames(), shards=shards, endpoint_url=endpoint_url)
