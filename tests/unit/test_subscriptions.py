"""Planning subscriptions: which groups to subscribe, update, skip or leave, and the policies sent."""

from __future__ import annotations

import json

import pytest

from pipeline.subscriptions import (
    Action,
    ExistingFilter,
    LogGroup,
    SubscriptionError,
    Target,
    account_policy,
    destination_policy,
    is_own_log_group,
    plan_subscribe,
    plan_unsubscribe,
)

STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/logfan-logs"
ROLE = "arn:aws:iam::123456789012:role/logfan-CloudWatchLogsRole-ABC"
DESTINATION = "arn:aws:logs:us-east-1:999988887777:destination:logfan-logs"
TARGET = Target(destination_arn=STREAM, role_arn=ROLE)


def _actions(groups: list[LogGroup], target: Target = TARGET) -> dict[str, Action]:
    return {step.log_group: step.action for step in plan_subscribe(groups, target, prefix="logfan")}


def test_a_group_without_filters_is_subscribed() -> None:
    assert _actions([LogGroup("/app/api")]) == {"/app/api": Action.SUBSCRIBE}


def test_a_group_with_two_other_filters_is_skipped_and_names_them() -> None:
    # Given a group that already has the two filters CloudWatch Logs allows
    group = LogGroup("/app/api", (ExistingFilter("a", STREAM), ExistingFilter("b", STREAM)))

    # When it is planned
    (step,) = plan_subscribe([group], TARGET, prefix="logfan")

    # Then it is skipped, and the report says which filters hold the places
    assert step.action is Action.SKIP_FULL
    assert "a, b" in step.detail


def test_a_group_with_one_other_filter_still_has_room() -> None:
    assert _actions([LogGroup("/app/api", (ExistingFilter("datadog", STREAM),))]) == {"/app/api": Action.SUBSCRIBE}


def test_the_pipelines_own_log_groups_are_never_subscribed() -> None:
    groups = [
        LogGroup("/aws/lambda/logfan-fan-out"),
        LogGroup("/aws/lambda/logfan-parser"),
        LogGroup("/aws/lambda/logfan-sweeper"),
        LogGroup("/aws/lambda/logfan-anything-added-later"),
        LogGroup("/aws/lambda/logfanatic"),
        LogGroup("/aws/lambda/other-logfan-parser"),
    ]

    actions = _actions(groups)

    assert actions == {
        "/aws/lambda/logfan-fan-out": Action.SKIP_OWN,
        "/aws/lambda/logfan-parser": Action.SKIP_OWN,
        "/aws/lambda/logfan-sweeper": Action.SKIP_OWN,
        "/aws/lambda/logfan-anything-added-later": Action.SKIP_OWN,
        "/aws/lambda/logfanatic": Action.SUBSCRIBE,
        "/aws/lambda/other-logfan-parser": Action.SUBSCRIBE,
    }


def test_own_groups_follow_the_stack_prefix() -> None:
    assert is_own_log_group("/aws/lambda/prod-logfan-parser", "prod-logfan")
    assert not is_own_log_group("/aws/lambda/logfan-parser", "prod-logfan")


def test_our_filter_with_the_same_settings_is_unchanged_and_a_different_one_is_updated() -> None:
    same = LogGroup("/a", (ExistingFilter("logfan", STREAM, "", ROLE),))
    moved = LogGroup("/b", (ExistingFilter("logfan", "arn:aws:kinesis:us-east-1:123456789012:stream/old", "", ROLE),))
    repatterned = LogGroup("/c", (ExistingFilter("logfan", STREAM, "ERROR", ROLE), ExistingFilter("x", STREAM)))

    assert _actions([same, moved, repatterned]) == {"/a": Action.UNCHANGED, "/b": Action.UPDATE, "/c": Action.UPDATE}


def test_unsubscribe_removes_only_our_filter() -> None:
    groups = [LogGroup("/a", (ExistingFilter("logfan", STREAM),)), LogGroup("/b", (ExistingFilter("other", STREAM),))]

    steps = plan_unsubscribe(groups)

    assert [(s.log_group, s.action, s.detail) for s in steps] == [
        ("/a", Action.UNSUBSCRIBE, "logfan"),
        ("/b", Action.NOT_SUBSCRIBED, "no filter named logfan"),
    ]


@pytest.mark.parametrize(
    ("destination", "role", "message"),
    [
        (STREAM, None, "needs --role-arn"),
        (DESTINATION, ROLE, "carries its own role"),
        ("arn:aws:sqs:us-east-1:123456789012:queue", None, "not a Kinesis stream"),
    ],
)
def test_targets_that_cloudwatch_logs_would_refuse_are_refused_first(
    destination: str, role: str | None, message: str
) -> None:
    with pytest.raises(SubscriptionError, match=message):
        Target(destination_arn=destination, role_arn=role)


def test_a_cross_account_destination_needs_no_role() -> None:
    assert Target(destination_arn=DESTINATION).role_arn is None


def test_the_account_policy_excludes_every_pipeline_function_by_name() -> None:
    policy = account_policy(Target(STREAM, ROLE, filter_pattern="ERROR"), prefix="prod")

    assert json.loads(policy.document) == {
        "DestinationArn": STREAM,
        "RoleArn": ROLE,
        "FilterPattern": "ERROR",
        "Distribution": "Random",
    }
    assert policy.selection_criteria == (
        'LogGroupName NOT IN ["/aws/lambda/prod-fan-out", "/aws/lambda/prod-parser", '
        '"/aws/lambda/prod-consolidator", "/aws/lambda/prod-sweeper", "/aws/lambda/prod-rules-api", '
        '"/aws/lambda/prod-authorizer"]'
    )


def test_the_destination_policy_allows_exactly_the_named_accounts() -> None:
    document = json.loads(destination_policy(DESTINATION, ["222233334444", "111122223333", "222233334444"]))

    (statement,) = document["Statement"]
    assert statement["Principal"] == {"AWS": ["111122223333", "222233334444"]}
    assert statement["Action"] == "logs:PutSubscriptionFilter"
    assert statement["Resource"] == DESTINATION


@pytest.mark.parametrize("accounts", [[], ["12345"], ["123456789012", "not-an-account"]])
def test_a_destination_policy_needs_real_account_ids(accounts: list[str]) -> None:
    with pytest.raises(SubscriptionError):
        destination_policy(DESTINATION, accounts)
