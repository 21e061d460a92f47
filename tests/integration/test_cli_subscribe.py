"""`logfan subscribe / unsubscribe / destination` end to end: in-process under mock_aws, and as a separate
process against moto's server on 127.0.0.1, where a subscribed group's events really reach the stream."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from pipeline.cli import main

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_logs import CloudWatchLogsClient

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/logfan-cwl"
ROOT = Path(__file__).resolve().parents[2]


def _stream(kinesis: KinesisClient, name: str) -> str:
    kinesis.create_stream(StreamName=name, ShardCount=1)
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def _rows(out: str) -> dict[str, str]:
    """`action  group  detail` lines -> {group: action}."""
    return {
        parts[1]: parts[0] for line in out.splitlines() if len(parts := line.split()) >= 2 and parts[1].startswith("/")
    }


def _filters(logs: CloudWatchLogsClient, group: str) -> list[str]:
    return sorted(
        f["filterName"] for f in logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
    )


# ---------------------------------------------------------------- in-process, mock_aws


@pytest.fixture
def account() -> Iterator[tuple[CloudWatchLogsClient, str]]:
    """Log groups of every kind the planner tells apart, and the stream to subscribe them to."""
    with mock_aws():
        logs = boto3.client("logs", region_name=REGION)
        arn = _stream(boto3.client("kinesis", region_name=REGION), "logfan-logs")
        for group in ("/app/api", "/app/full", "/app/worker", "/aws/lambda/logfan-parser", "/aws/lambda/shop"):
            logs.create_log_group(logGroupName=group)
        for name in ("a", "b"):
            logs.put_subscription_filter(
                logGroupName="/app/full", filterName=name, filterPattern="", destinationArn=arn, roleArn=ROLE
            )
        yield logs, arn


def test_subscribe_a_prefix_reports_each_group_and_skips_the_full_one(
    account: tuple[CloudWatchLogsClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    logs, arn = account

    status = main(["subscribe", "--prefix", "/app/", "--stream-arn", arn, "--role-arn", ROLE])

    out = capsys.readouterr().out
    assert status == 0
    assert _filters(logs, "/app/api") == ["logfan"]
    assert _filters(logs, "/app/worker") == ["logfan"]
    assert _filters(logs, "/app/full") == ["a", "b"]
    assert _rows(out) == {"/app/api": "subscribe", "/app/full": "skip-full", "/app/worker": "subscribe"}
    assert "already has 2 filters: a, b" in out
    assert out.splitlines()[-1] == "1 skipped (two filters already), 2 subscribed"


def test_subscribing_again_changes_nothing(
    account: tuple[CloudWatchLogsClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, arn = account
    main(["subscribe", "--log-group", "/app/api", "--stream-arn", arn, "--role-arn", ROLE])
    capsys.readouterr()

    status = main(["subscribe", "--log-group", "/app/api", "--stream-arn", arn, "--role-arn", ROLE])

    assert status == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 unchanged"


def test_the_pipelines_own_group_is_never_subscribed_even_by_name(
    account: tuple[CloudWatchLogsClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    logs, arn = account

    status = main(
        [
            "subscribe",
            "--prefix",
            "/aws/lambda/",
            "--stream-arn",
            arn,
            "--role-arn",
            ROLE,
            "--pipeline-prefix",
            "logfan",
        ]
    )

    out = capsys.readouterr().out
    assert status == 0
    assert _filters(logs, "/aws/lambda/logfan-parser") == []
    assert _filters(logs, "/aws/lambda/shop") == ["logfan"]
    assert _rows(out) == {"/aws/lambda/logfan-parser": "skip-own", "/aws/lambda/shop": "subscribe"}


def test_dry_run_prints_the_plan_and_changes_nothing(
    account: tuple[CloudWatchLogsClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    logs, arn = account

    status = main(["subscribe", "--prefix", "/app/", "--stream-arn", arn, "--role-arn", ROLE, "--dry-run"])

    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[0] == "dry run: nothing is changed"
    assert _rows(out) == {"/app/api": "subscribe", "/app/full": "skip-full", "/app/worker": "subscribe"}
    assert _filters(logs, "/app/api") == []
    assert out.splitlines()[-1] == "1 skipped (two filters already), 2 would be subscribed"


def test_unsubscribe_removes_our_filter_and_leaves_others(
    account: tuple[CloudWatchLogsClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    logs, arn = account
    main(["subscribe", "--prefix", "/app/", "--stream-arn", arn, "--role-arn", ROLE])
    capsys.readouterr()

    status = main(["unsubscribe", "--prefix", "/app/"])

    assert status == 0
    assert _filters(logs, "/app/api") == []
    assert _filters(logs, "/app/full") == ["a", "b"]
    assert capsys.readouterr().out.splitlines()[-1] == "1 not subscribed, 2 unsubscribed"


def test_groups_cloudwatch_logs_refuses_are_reported_one_by_one_and_the_exit_status_says_so(
    account: tuple[CloudWatchLogsClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stream that does not exist (CloudWatch Logs tests delivery when a filter is put)
    missing = "arn:aws:kinesis:us-east-1:123456789012:stream/no-such-stream"

    # When two groups are subscribed to it
    status = main(
        [
            "subscribe",
            "--log-group",
            "/app/api",
            "--log-group",
            "/app/worker",
            "--stream-arn",
            missing,
            "--role-arn",
            ROLE,
        ]
    )

    # Then each group is reported failed with CloudWatch Logs' reason, and the status is 1
    out = capsys.readouterr().out
    assert status == 1
    assert _rows(out) == {"/app/api": "failed", "/app/worker": "failed"}
    assert "InvalidParameterException" in out
    assert out.splitlines()[-1] == "2 failed"


def test_bad_input_is_an_error_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["subscribe", "--prefix", "/app/", "--stream-arn", "arn:aws:kinesis:us-east-1:123456789012:stream/s"])

    assert status == 2
    assert "needs --role-arn" in capsys.readouterr().err


def test_destination_create_sets_the_access_policy(
    account: tuple[CloudWatchLogsClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    logs, arn = account

    status = main(
        [
            "destination",
            "create",
            "--allow-account",
            "111122223333",
            "--allow-account",
            "444455556666",
            "--stream-arn",
            arn,
            "--role-arn",
            ROLE,
        ]
    )

    (destination,) = logs.describe_destinations(DestinationNamePrefix="logfan")["destinations"]
    assert status == 0
    assert json.loads(destination["accessPolicy"])["Statement"][0]["Principal"] == {
        "AWS": ["111122223333", "444455556666"]
    }
    assert f"destination {destination['arn']}" in capsys.readouterr().out


def test_destination_create_refuses_a_bad_account_id(
    account: tuple[CloudWatchLogsClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    logs, arn = account

    status = main(["destination", "create", "--allow-account", "42", "--stream-arn", arn, "--role-arn", ROLE])

    assert status == 2
    assert "not 12-digit AWS account ids: 42" in capsys.readouterr().err
    assert logs.describe_destinations()["destinations"] == []


# ---------------------------------------------------------------- a separate process, moto's server


@pytest.fixture(scope="module")
def endpoint(server: str) -> str:
    """The module's moto server; these tests create their own log groups and stream on it."""
    return server


def _client(endpoint: str, service: Any) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _logfan(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_cli_process_subscribes_groups_whose_events_then_reach_the_stream(endpoint: str) -> None:
    # Given a moto server with the stream and two application log groups
    logs, kinesis = _client(endpoint, "logs"), _client(endpoint, "kinesis")
    arn = _stream(kinesis, "cli-logs")
    for group in ("/cli/api", "/cli/worker"):
        logs.create_log_group(logGroupName=group)

    # When `logfan subscribe` runs as its own process against it
    result = _logfan(endpoint, "subscribe", "--prefix", "/cli/", "--stream-arn", arn, "--role-arn", ROLE)

    # Then it reports both groups subscribed
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "2 subscribed"

    # And an event logged to one of them arrives in the stream as a CloudWatch Logs subscription message
    logs.create_log_stream(logGroupName="/cli/api", logStreamName="s1")
    logs.put_log_events(
        logGroupName="/cli/api",
        logStreamName="s1",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "hello"}],
    )
    shard = kinesis.list_shards(StreamName="cli-logs")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="cli-logs", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    (record,) = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    data = record["Data"]
    message = json.loads(gzip.decompress(data if data[:2] == b"\x1f\x8b" else base64.b64decode(data)))
    assert message["logGroup"] == "/cli/api"
    assert message["subscriptionFilters"] == ["logfan"]
    assert [event["message"] for event in message["logEvents"]] == ["hello"]


def test_the_cli_process_dry_run_and_unsubscribe(endpoint: str) -> None:
    logs, kinesis = _client(endpoint, "logs"), _client(endpoint, "kinesis")
    arn = _stream(kinesis, "cli-unsub-logs")
    logs.create_log_group(logGroupName="/unsub/api")

    dry = _logfan(
        endpoint, "subscribe", "--log-group", "/unsub/api", "--stream-arn", arn, "--role-arn", ROLE, "--dry-run"
    )
    before = _filters(logs, "/unsub/api")
    real = _logfan(endpoint, "subscribe", "--log-group", "/unsub/api", "--stream-arn", arn, "--role-arn", ROLE)
    gone = _logfan(endpoint, "unsubscribe", "--log-group", "/unsub/api")

    assert (dry.returncode, real.returncode, gone.returncode) == (0, 0, 0), dry.stderr + real.stderr + gone.stderr
    assert before == []
    assert dry.stdout.splitlines()[-1] == "1 would be subscribed"
    assert gone.stdout.splitlines()[-1] == "1 unsubscribed"
    assert _filters(logs, "/unsub/api") == []
