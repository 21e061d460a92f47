"""`logfan subscribe`, `logfan unsubscribe`, `logfan destination create`: wire log groups to the stream.

Plans with `pipeline.subscriptions` (pure), then carries the plan out through the CloudWatch Logs
adapter one group at a time: a group CloudWatch Logs refuses is reported and the others go on.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pipeline.adapters.cloudwatch_logs import CloudWatchLogsSubscriptions, logs_client
from pipeline.subscriptions import (
    DEFAULT_FILTER_NAME,
    DEFAULT_POLICY_NAME,
    Action,
    Step,
    SubscriptionError,
    Target,
    account_policy,
    destination_policy,
    plan_subscribe,
    plan_unsubscribe,
)

__all__ = ["register"]

_PAST = {
    Action.SUBSCRIBE: "subscribed",
    Action.UPDATE: "updated",
    Action.UNCHANGED: "unchanged",
    Action.SKIP_OWN: "skipped (pipeline's own)",
    Action.SKIP_FULL: "skipped (two filters already)",
    Action.UNSUBSCRIBE: "unsubscribed",
    Action.NOT_SUBSCRIBED: "not subscribed",
}


def _write(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _service(args: argparse.Namespace) -> CloudWatchLogsSubscriptions:
    return CloudWatchLogsSubscriptions(logs_client(args.region))


def _target(args: argparse.Namespace) -> Target:
    destination = args.stream_arn or args.destination_arn
    if destination is None:
        raise SubscriptionError("name where to send: --stream-arn with --role-arn, or --destination-arn")
    return Target(
        destination_arn=destination,
        role_arn=args.role_arn,
        filter_pattern=args.filter_pattern,
        filter_name=args.filter_name,
    )


def _carry_out(
    steps: Sequence[Step], service: CloudWatchLogsSubscriptions, target: Target | None, *, dry_run: bool
) -> int:
    """Print and (unless `dry_run`) apply each step; 1 when any group failed."""
    if dry_run:
        _write("dry run: nothing is changed")
    counts: Counter[str] = Counter()
    width = max(len(action.value) for action in Action)
    for step in steps:
        label = step.action.value
        if step.action.changes and not dry_run:
            try:
                if step.action is Action.UNSUBSCRIBE:
                    service.delete_filter(step.log_group, step.detail)
                else:
                    assert target is not None
                    service.put_filter(step.log_group, target)
            except SubscriptionError as exc:
                counts["failed"] += 1
                _write(f"{'failed'.ljust(width)}  {step.log_group}  {exc}")
                continue
        counts[f"would be {_PAST[step.action]}" if dry_run and step.action.changes else _PAST[step.action]] += 1
        _write(f"{label.ljust(width)}  {step.log_group}  {step.detail}".rstrip())
    summary = ", ".join(f"{count} {what}" for what, count in sorted(counts.items())) or "no log groups matched"
    _write(summary)
    return 1 if counts["failed"] else 0


def _subscribe(args: argparse.Namespace) -> int:
    target = _target(args)
    service = _service(args)
    if args.account_policy:
        policy = account_policy(target, prefix=args.pipeline_prefix, name=args.policy_name)
        _write(f"account policy {policy.name}: {policy.document}")
        _write(f"selection: {policy.selection_criteria}")
        if args.dry_run:
            _write("dry run: nothing is changed")
        else:
            service.put_account_policy(policy)
            _write("account policy put")
        return 0
    groups = service.log_groups(names=args.log_group or (), prefix=args.prefix)
    return _carry_out(
        plan_subscribe(groups, target, prefix=args.pipeline_prefix), service, target, dry_run=args.dry_run
    )


def _unsubscribe(args: argparse.Namespace) -> int:
    service = _service(args)
    if args.account_policy:
        _write(f"account policy {args.policy_name}: delete")
        if args.dry_run:
            _write("dry run: nothing is changed")
        else:
            service.delete_account_policy(args.policy_name)
            _write("account policy deleted")
        return 0
    groups = service.log_groups(names=args.log_group or (), prefix=args.prefix)
    return _carry_out(plan_unsubscribe(groups, filter_name=args.filter_name), service, None, dry_run=args.dry_run)


def _destination_create(args: argparse.Namespace) -> int:
    # Validates the accounts before anything is created.
    destination_policy(f"arn:aws:logs:::destination:{args.name}", args.allow_account)
    if args.dry_run:
        _write(f"dry run: would put destination {args.name} -> {args.stream_arn} (role {args.role_arn})")
        _write(f"allowing accounts: {', '.join(sorted(set(args.allow_account)))}")
        return 0
    service = _service(args)
    arn = service.put_destination(args.name, target_arn=args.stream_arn, role_arn=args.role_arn)
    service.put_destination_policy(args.name, destination_policy(arn, args.allow_account))
    _write(f"destination {arn}")
    _write(f"allowing accounts: {', '.join(sorted(set(args.allow_account)))}")
    _write(f"senders run: logfan subscribe --destination-arn {arn} --prefix <their log groups>")
    return 0


def _selection(parser: argparse.ArgumentParser, verb: str) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--log-group", action="append", metavar="NAME", help=f"{verb} this log group (repeatable)")
    which.add_argument("--prefix", metavar="PREFIX", help=f"{verb} every log group whose name starts with PREFIX")
    which.add_argument(
        "--account-policy",
        action="store_true",
        help=f"{verb} the account-level subscription filter policy (every group but the pipeline's own)",
    )
    parser.add_argument("--filter-name", default=DEFAULT_FILTER_NAME, help="subscription filter name (default logfan)")
    parser.add_argument("--policy-name", default=DEFAULT_POLICY_NAME, help="account policy name (default logfan)")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's configuration)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def register(subcommands: Any) -> None:
    """Add `subscribe`, `unsubscribe` and `destination` to the `logfan` command line."""
    subscribe = subcommands.add_parser(
        "subscribe",
        help="subscribe CloudWatch Logs log groups to the pipeline's stream",
        description=(
            "Subscribe log groups to the logfan Kinesis stream (same account: --stream-arn and --role-arn, the "
            "stack's StreamArn and CloudWatchLogsRoleArn outputs) or to a cross-account destination "
            "(--destination-arn). Groups that already have two subscription filters and the pipeline's own "
            "log groups are skipped and reported."
        ),
    )
    _selection(subscribe, "subscribe")
    destination = subscribe.add_mutually_exclusive_group()
    destination.add_argument("--stream-arn", metavar="ARN", help="the Kinesis stream (StreamArn output)")
    destination.add_argument(
        "--destination-arn", metavar="ARN", help="a CloudWatch Logs destination in another account"
    )
    subscribe.add_argument("--role-arn", metavar="ARN", help="role CloudWatch Logs assumes (CloudWatchLogsRoleArn)")
    subscribe.add_argument("--filter-pattern", default="", help="CloudWatch Logs filter pattern (default: every event)")
    subscribe.add_argument(
        "--pipeline-prefix", default="logfan", help="the stack's Prefix: its /aws/lambda/PREFIX-* groups are skipped"
    )
    subscribe.set_defaults(run=_subscribe)

    unsubscribe = subcommands.add_parser(
        "unsubscribe",
        help="remove logfan's subscription filter from log groups",
        description="Delete the subscription filter named --filter-name (default logfan), or the account policy.",
    )
    _selection(unsubscribe, "unsubscribe")
    unsubscribe.set_defaults(run=_unsubscribe)

    destination_parser = subcommands.add_parser(
        "destination", help="cross-account CloudWatch Logs destination for the stream"
    )
    actions = destination_parser.add_subparsers(dest="destination_command", required=True)
    create = actions.add_parser(
        "create",
        help="create or update the destination and the accounts allowed to subscribe to it",
        description=(
            "Create (or update) a CloudWatch Logs destination that forwards to the stream, and its access "
            "policy. The role must trust logs.amazonaws.com for the sender accounts: the stack's "
            "DestinationRoleArn output."
        ),
    )
    create.add_argument("--allow-account", action="append", required=True, metavar="ID", help="sender account")
    create.add_argument("--stream-arn", required=True, metavar="ARN", help="the Kinesis stream (StreamArn output)")
    create.add_argument("--role-arn", required=True, metavar="ARN", help="role the destination uses to write")
    create.add_argument("--name", default="logfan", help="destination name (default logfan)")
    create.add_argument("--region", default=None, help="AWS region (default: the SDK's configuration)")
    create.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    create.set_defaults(run=_destination_create)
