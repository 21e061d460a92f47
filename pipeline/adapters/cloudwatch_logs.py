"""CloudWatch Logs subscription filters, account policies and destinations for `logfan subscribe`.

Reads log groups as `LogGroup` models for the planner in `pipeline.subscriptions` and carries out its
steps; every SDK error becomes a `SubscriptionError` naming the call and the group.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.subscriptions import AccountPolicy, ExistingFilter, LogGroup, SubscriptionError, Target

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["IAM_ACTIONS", "CloudWatchLogsSubscriptions", "logs_client"]

IAM_ACTIONS = frozenset(
    {
        "logs:DescribeLogGroups",
        "logs:DescribeSubscriptionFilters",
        "logs:PutSubscriptionFilter",
        "logs:DeleteSubscriptionFilter",
        "logs:PutAccountPolicy",
        "logs:DeleteAccountPolicy",
        "logs:PutDestination",
        "logs:PutDestinationPolicy",
        # PutSubscriptionFilter with a roleArn and PutDestination hand a role to CloudWatch Logs.
        "iam:PassRole",
    }
)
"""What the operator running `logfan subscribe` / `destination` needs; no Lambda function calls these."""

SUBSCRIPTION_FILTER_POLICY: Final[Literal["SUBSCRIPTION_FILTER_POLICY"]] = "SUBSCRIPTION_FILTER_POLICY"


def logs_client(region: str | None = None) -> CloudWatchLogsClient:
    """A CloudWatch Logs client with standard retries (honours AWS_ENDPOINT_URL like every boto3 client)."""
    return boto3.client("logs", region_name=region, config=Config(retries={"mode": "standard", "max_attempts": 5}))


def _failure(exc: ClientError | BotoCoreError, action: str) -> SubscriptionError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return SubscriptionError(f"{action}: {error.get('Code', '')}: {error.get('Message', '')}".rstrip(": "))
    return SubscriptionError(f"{action}: {exc}")


class CloudWatchLogsSubscriptions:
    def __init__(self, client: CloudWatchLogsClient) -> None:
        self._client = client

    # -- reading -----------------------------------------------------------------------------
    def log_groups(self, *, names: Sequence[str] = (), prefix: str | None = None) -> list[LogGroup]:
        """The named groups (all must exist) or every group under `prefix`, with their filters."""
        if names:
            found = {name for name in names if name in self._names_with_prefix(name)}
            missing = [name for name in names if name not in found]
            if missing:
                raise SubscriptionError(f"no such log group: {', '.join(missing)}")
            wanted = list(dict.fromkeys(names))
        else:
            wanted = list(self._names_with_prefix(prefix))
        return [LogGroup(name, tuple(self._filters(name))) for name in wanted]

    def _names_with_prefix(self, prefix: str | None) -> Iterator[str]:
        paginator = self._client.get_paginator("describe_log_groups")
        pages = paginator.paginate(logGroupNamePrefix=prefix) if prefix else paginator.paginate()
        try:
            for page in pages:
                for group in page.get("logGroups", []):
                    yield group["logGroupName"]
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, f"describe log groups {prefix or ''}".rstrip()) from exc

    def _filters(self, log_group: str) -> Iterator[ExistingFilter]:
        paginator = self._client.get_paginator("describe_subscription_filters")
        try:
            for page in paginator.paginate(logGroupName=log_group):
                for item in page.get("subscriptionFilters", []):
                    yield ExistingFilter(
                        name=item.get("filterName", ""),
                        destination_arn=item.get("destinationArn", ""),
                        filter_pattern=item.get("filterPattern", ""),
                        role_arn=item.get("roleArn") or None,
                    )
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, f"describe subscription filters of {log_group}") from exc

    # -- subscription filters ------------------------------------------------------------------
    def put_filter(self, log_group: str, target: Target) -> None:
        request = {
            "logGroupName": log_group,
            "filterName": target.filter_name,
            "filterPattern": target.filter_pattern,
            "destinationArn": target.destination_arn,
        }
        if target.role_arn is not None:
            request["roleArn"] = target.role_arn
        try:
            self._client.put_subscription_filter(**request)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, f"subscribe {log_group}") from exc

    def delete_filter(self, log_group: str, filter_name: str) -> None:
        try:
            self._client.delete_subscription_filter(logGroupName=log_group, filterName=filter_name)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, f"unsubscribe {log_group}") from exc

    # -- account policy ------------------------------------------------------------------------
    def put_account_policy(self, policy: AccountPolicy) -> None:
        try:
            self._client.put_account_policy(
                policyName=policy.name,
                policyDocument=policy.document,
                policyType=SUBSCRIPTION_FILTER_POLICY,
                scope="ALL",
                selectionCriteria=policy.selection_criteria,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, f"put account policy {policy.name}") from exc

    def delete_account_policy(self, name: str) -> None:
        try:
            self._client.delete_account_policy(policyName=name, policyType=SUBSCRIPTION_FILTER_POLICY)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, f"delete account policy {name}") from exc

    # -- cross-account destination -------------------------------------------------------------
    def put_destination(self, name: str, *, target_arn: str, role_arn: str) -> str:
        """Create or update the destination; returns its ARN (its access policy needs it)."""
        try:
            response = self._client.put_destination(destinationName=name, targetArn=target_arn, roleArn=role_arn)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, f"put destination {name}") from exc
        return str(response["destination"]["arn"])

    def put_destination_policy(self, name: str, access_policy: str) -> None:
        try:
            self._client.put_destination_policy(destinationName=name, accessPolicy=access_policy)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, f"put destination policy {name}") from exc
