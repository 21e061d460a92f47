"""CloudWatchLogsSubscriptions on moto; the account policy (which moto lacks) against a botocore Stubber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pipeline.adapters.cloudwatch_logs import CloudWatchLogsSubscriptions
from pipeline.subscriptions import (
    AccountPolicy,
    ExistingFilter,
    SubscriptionError,
    Target,
    account_policy,
    destination_policy,
)

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/logfan-cwl"


@pytest.fixture
def logs() -> Iterator[CloudWatchLogsClient]:
    with mock_aws():
        yield boto3.client("logs", region_name=REGION)


@pytest.fixture
def stream_arn(logs: CloudWatchLogsClient) -> str:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="logfan-logs", ShardCount=1)
    return kinesis.describe_stream_summary(StreamName="logfan-logs")["StreamDescriptionSummary"]["StreamARN"]


def test_every_group_under_a_prefix_is_read_across_pages(logs: CloudWatchLogsClient) -> None:
    # Given more groups under the prefix than one DescribeLogGroups page holds (50), and one outside it
    names = [f"/app/service-{index:03}" for index in range(73)]
    for name in [*names, "/other/x"]:
        logs.create_log_group(logGroupName=name)

    # When the adapter lists the prefix
    groups = CloudWatchLogsSubscriptions(logs).log_groups(prefix="/app/")

    # Then it has every page and nothing else
    assert [group.name for group in groups] == names


def test_named_groups_come_with_their_filters(logs: CloudWatchLogsClient, stream_arn: str) -> None:
    logs.create_log_group(logGroupName="/app/api")
    logs.create_log_group(logGroupName="/app/api-worker")
    logs.put_subscription_filter(
        logGroupName="/app/api", filterName="other", filterPattern="ERROR", destinationArn=stream_arn, roleArn=ROLE
    )

    groups = CloudWatchLogsSubscriptions(logs).log_groups(names=["/app/api"])

    assert [(g.name, g.filters) for g in groups] == [
        ("/app/api", (ExistingFilter("other", stream_arn, "ERROR", ROLE),))
    ]


def test_a_named_group_that_does_not_exist_fails_before_anything_is_done(logs: CloudWatchLogsClient) -> None:
    logs.create_log_group(logGroupName="/app/api")

    with pytest.raises(SubscriptionError, match="no such log group: /app/missing"):
        CloudWatchLogsSubscriptions(logs).log_groups(names=["/app/api", "/app/missing"])


def test_put_and_delete_a_filter(logs: CloudWatchLogsClient, stream_arn: str) -> None:
    logs.create_log_group(logGroupName="/app/api")
    service = CloudWatchLogsSubscriptions(logs)

    service.put_filter("/app/api", Target(stream_arn, ROLE, filter_pattern="ERROR"))
    subscribed = logs.describe_subscription_filters(logGroupName="/app/api")["subscriptionFilters"]
    service.delete_filter("/app/api", "logfan")

    assert [(f["filterName"], f["destinationArn"], f["filterPattern"]) for f in subscribed] == [
        ("logfan", stream_arn, "ERROR")
    ]
    assert logs.describe_subscription_filters(logGroupName="/app/api")["subscriptionFilters"] == []


def test_a_third_filter_is_refused_as_our_error(logs: CloudWatchLogsClient, stream_arn: str) -> None:
    # Given a group another tool filled up after we planned
    logs.create_log_group(logGroupName="/app/api")
    for name in ("a", "b"):
        logs.put_subscription_filter(
            logGroupName="/app/api", filterName=name, filterPattern="", destinationArn=stream_arn, roleArn=ROLE
        )

    # When we put ours, Then CloudWatch Logs' LimitExceededException comes back as a SubscriptionError
    with pytest.raises(SubscriptionError, match="subscribe /app/api: LimitExceededException"):
        CloudWatchLogsSubscriptions(logs).put_filter("/app/api", Target(stream_arn, ROLE))


def test_a_destination_and_its_access_policy(logs: CloudWatchLogsClient, stream_arn: str) -> None:
    service = CloudWatchLogsSubscriptions(logs)

    arn = service.put_destination("logfan", target_arn=stream_arn, role_arn=ROLE)
    service.put_destination_policy("logfan", destination_policy(arn, ["111122223333"]))

    (destination,) = logs.describe_destinations(DestinationNamePrefix="logfan")["destinations"]
    assert destination["arn"] == arn == f"arn:aws:logs:{REGION}:123456789012:destination:logfan"
    assert destination["targetArn"] == stream_arn
    assert json.loads(destination["accessPolicy"])["Statement"][0]["Principal"] == {"AWS": "111122223333"}


# moto 5.2 implements neither PutAccountPolicy nor DeleteAccountPolicy: the requests are checked at the
# SDK boundary instead (Stubber validates them against the CloudWatch Logs service model).
def test_the_account_policy_request_excludes_the_pipelines_groups() -> None:
    client = boto3.client("logs", region_name=REGION)
    policy: AccountPolicy = account_policy(
        Target("arn:aws:kinesis:us-east-1:123456789012:stream/logfan-logs", ROLE), prefix="logfan"
    )
    with Stubber(client) as stub:
        stub.add_response(
            "put_account_policy",
            {},
            {
                "policyName": "logfan",
                "policyDocument": policy.document,
                "policyType": "SUBSCRIPTION_FILTER_POLICY",
                "scope": "ALL",
                "selectionCriteria": policy.selection_criteria,
            },
        )
        stub.add_response(
            "delete_account_policy", {}, {"policyName": "logfan", "policyType": "SUBSCRIPTION_FILTER_POLICY"}
        )

        CloudWatchLogsSubscriptions(client).put_account_policy(policy)
        CloudWatchLogsSubscriptions(client).delete_account_policy("logfan")

        stub.assert_no_pending_responses()


def test_a_refused_account_policy_is_our_error() -> None:
    client = boto3.client("logs", region_name=REGION)
    policy = account_policy(Target("arn:aws:kinesis:us-east-1:123456789012:stream/s", ROLE), prefix="logfan")
    with Stubber(client) as stub:
        stub.add_client_error("put_account_policy", "LimitExceededException", "one subscription policy per account")

        with pytest.raises(SubscriptionError, match="put account policy logfan: LimitExceededException"):
            CloudWatchLogsSubscriptions(client).put_account_policy(policy)
