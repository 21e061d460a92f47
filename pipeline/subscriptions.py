"""Which log groups to subscribe to the stream, and how: pure planning for `logfan subscribe`.

CloudWatch Logs allows two subscription filters per log group, and the pipeline must never read its
own functions' logs (each fan-out would log, which would be fanned out again: a loop). The planner
decides per group from what the group already has; the adapter only carries the decisions out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pipeline.errors import LogfanError

__all__ = [
    "DEFAULT_FILTER_NAME",
    "DEFAULT_POLICY_NAME",
    "MAX_FILTERS_PER_GROUP",
    "AccountPolicy",
    "Action",
    "ExistingFilter",
    "LogGroup",
    "Step",
    "SubscriptionError",
    "Target",
    "account_policy",
    "destination_policy",
    "is_own_log_group",
    "own_function_names",
    "plan_subscribe",
    "plan_unsubscribe",
]

MAX_FILTERS_PER_GROUP = 2
"""CloudWatch Logs allows at most two subscription filters per log group."""
DEFAULT_FILTER_NAME = "logfan"
DEFAULT_POLICY_NAME = "logfan"
MAX_POLICY_EXCLUSIONS = 50
"""`LogGroupName NOT IN [...]` of an account policy takes at most 50 names."""

_FUNCTION_SUFFIXES = ("fan-out", "parser", "consolidator", "sweeper", "rules-api", "authorizer")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_KINESIS_STREAM_ARN = re.compile(r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[A-Za-z0-9_.-]+$")
_LOGS_DESTINATION_ARN = re.compile(r"^arn:aws[a-z-]*:logs:[a-z0-9-]+:\d{12}:destination:[A-Za-z0-9_.\-/#]+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")


class SubscriptionError(LogfanError):
    """A subscription request that cannot be planned or that CloudWatch Logs refused."""


class Action(StrEnum):
    SUBSCRIBE = "subscribe"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP_OWN = "skip-own"
    """One of the pipeline's own log groups: subscribing it would feed the pipeline its own logs."""
    SKIP_FULL = "skip-full"
    """The group already has the two subscription filters CloudWatch Logs allows."""
    UNSUBSCRIBE = "unsubscribe"
    NOT_SUBSCRIBED = "not-subscribed"

    @property
    def changes(self) -> bool:
        return self in (Action.SUBSCRIBE, Action.UPDATE, Action.UNSUBSCRIBE)


@dataclass(frozen=True, slots=True)
class ExistingFilter:
    name: str
    destination_arn: str
    filter_pattern: str = ""
    role_arn: str | None = None


@dataclass(frozen=True, slots=True)
class LogGroup:
    name: str
    filters: tuple[ExistingFilter, ...] = ()

    def filter_named(self, name: str) -> ExistingFilter | None:
        return next((f for f in self.filters if f.name == name), None)


@dataclass(frozen=True, slots=True)
class Target:
    """Where subscribed groups send their events.

    Same account: the Kinesis stream and the role CloudWatch Logs assumes to write to it (the stack's
    `StreamArn` and `CloudWatchLogsRoleArn` outputs). From another account: a CloudWatch Logs
    destination ARN, which carries its own role, so none is given.
    """

    destination_arn: str
    role_arn: str | None = None
    filter_pattern: str = ""
    filter_name: str = DEFAULT_FILTER_NAME

    def __post_init__(self) -> None:
        if _KINESIS_STREAM_ARN.match(self.destination_arn):
            if self.role_arn is None or not _ROLE_ARN.match(self.role_arn):
                raise SubscriptionError("a Kinesis stream target needs --role-arn, the ARN of an IAM role")
        elif _LOGS_DESTINATION_ARN.match(self.destination_arn):
            if self.role_arn is not None:
                raise SubscriptionError("a CloudWatch Logs destination carries its own role: leave out --role-arn")
        else:
            raise SubscriptionError(
                f"not a Kinesis stream or CloudWatch Logs destination ARN: {self.destination_arn!r}"
            )
        if not self.filter_name or len(self.filter_name) > 512 or ":" in self.filter_name or "*" in self.filter_name:
            raise SubscriptionError(f"invalid filter name {self.filter_name!r}")


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with one log group, and why in a few words."""

    log_group: str
    action: Action
    detail: str = ""


def own_function_names(prefix: str) -> tuple[str, ...]:
    """The pipeline's functions, named as `infra/template.yaml` names them (a test holds them equal)."""
    return tuple(f"{prefix}-{suffix}" for suffix in _FUNCTION_SUFFIXES)


def is_own_log_group(name: str, prefix: str) -> bool:
    """`/aws/lambda/<prefix>-*`: any function of the pipeline, including ones added later."""
    return name.startswith(f"/aws/lambda/{prefix}-")


def plan_subscribe(groups: Iterable[LogGroup], target: Target, *, prefix: str) -> list[Step]:
    steps: list[Step] = []
    for group in groups:
        if is_own_log_group(group.name, prefix):
            steps.append(Step(group.name, Action.SKIP_OWN, "the pipeline's own logs would loop back into it"))
            continue
        ours = group.filter_named(target.filter_name)
        if ours is None:
            if len(group.filters) >= MAX_FILTERS_PER_GROUP:
                taken = ", ".join(sorted(f.name for f in group.filters))
                steps.append(Step(group.name, Action.SKIP_FULL, f"already has {len(group.filters)} filters: {taken}"))
            else:
                steps.append(Step(group.name, Action.SUBSCRIBE, target.destination_arn))
            continue
        same = (
            ours.destination_arn == target.destination_arn
            and ours.filter_pattern == target.filter_pattern
            and (ours.role_arn or None) == target.role_arn
        )
        if same:
            steps.append(Step(group.name, Action.UNCHANGED, "already subscribed"))
        else:
            steps.append(Step(group.name, Action.UPDATE, f"{ours.destination_arn} -> {target.destination_arn}"))
    return steps


def plan_unsubscribe(groups: Iterable[LogGroup], *, filter_name: str = DEFAULT_FILTER_NAME) -> list[Step]:
    return [
        Step(group.name, Action.UNSUBSCRIBE, filter_name)
        if group.filter_named(filter_name) is not None
        else Step(group.name, Action.NOT_SUBSCRIBED, f"no filter named {filter_name}")
        for group in groups
    ]


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """An account-level subscription filter policy (`PutAccountPolicy`, SUBSCRIPTION_FILTER_POLICY)."""

    name: str
    document: str
    selection_criteria: str


def account_policy(target: Target, *, prefix: str, name: str = DEFAULT_POLICY_NAME) -> AccountPolicy:
    """Every log group of the account, except the pipeline's own, goes to `target`.

    The selection criteria take exact names only, so the pipeline's functions are listed by name.
    """
    document: dict[str, str] = {"DestinationArn": target.destination_arn, "FilterPattern": target.filter_pattern}
    if target.role_arn is not None:
        document["RoleArn"] = target.role_arn
    document["Distribution"] = "Random"
    excluded = [f"/aws/lambda/{function}" for function in own_function_names(prefix)]
    assert len(excluded) <= MAX_POLICY_EXCLUSIONS
    return AccountPolicy(
        name=name,
        document=json.dumps(document, separators=(",", ":")),
        selection_criteria=f"LogGroupName NOT IN {json.dumps(excluded)}",
    )


def destination_policy(destination_arn: str, accounts: Sequence[str]) -> str:
    """The access policy that lets `accounts` subscribe their log groups to a destination."""
    if not accounts:
        raise SubscriptionError("name at least one account allowed to send (--allow-account)")
    bad = [account for account in accounts if not _ACCOUNT_ID.match(account)]
    if bad:
        raise SubscriptionError(f"not 12-digit AWS account ids: {', '.join(bad)}")
    principals = sorted(set(accounts))
    statement = {
        "Sid": "LogfanSenders",
        "Effect": "Allow",
        "Principal": {"AWS": principals if len(principals) > 1 else principals[0]},
        "Action": "logs:PutSubscriptionFilter",
        "Resource": destination_arn,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":"))
