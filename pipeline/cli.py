"""`logfan`: the command line (also `python -m pipeline`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli_bench import register as register_bench
from pipeline.cli_keys import register as register_keys
from pipeline.cli_notify import register as register_notify
from pipeline.cli_rules import register as register_rules
from pipeline.cli_subscribe import register as register_subscriptions
from pipeline.config import ResourceNames
from pipeline.errors import LogfanError

__all__ = ["main"]


def _replay(args: argparse.Namespace) -> int:
    # Before Powertools is touched: EMF metrics go to the replay's own counters, not stdout.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")  # and no X-Ray daemon to look for
    from pipeline.local.inputs import PlainTextSource
    from pipeline.local.replay import ReplayOptions, replay
    from pipeline.local.report import print_progress, print_report
    from pipeline.observability import get_logger

    get_logger().setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    options = ReplayOptions(
        inputs=args.inputs,
        rules=args.rules,
        endpoint_url=args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
        names=ResourceNames(args.prefix),
        out=args.out,
        plain_text=PlainTextSource(owner=args.owner, log_group=args.log_group, log_stream=args.log_stream),
        batch_size=args.batch_size,
        shards=args.shards,
        workers=args.workers,
        rule_timeout_ms=args.rule_timeout_ms,
        chaos_rate=args.chaos,
        seed=args.seed,
        deliver=args.deliver,
        digest_window_s=args.digest_window,
        on_progress=None if args.quiet else print_progress,
    )
    report = replay(options)
    print_report(report, str(args.out))
    return 0 if report.ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logfan", description="Multi-tenant log alerting on AWS Lambda.")
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser(
        "replay",
        help="run log inputs through the real handlers on emulated AWS (moto)",
        description=(
            "Replay CloudWatch Logs traffic through the fan-out, parser and consolidator handlers on "
            "emulated AWS. INPUT: a Lambda Kinesis event JSON, CloudWatch Logs subscription messages "
            "(.json/.jsonl), a plain-text log (one event per line), or a directory of them."
        ),
    )
    replay.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    replay.add_argument(
        "--rules",
        type=Path,
        default=None,
        help="customers and rules (YAML or JSON); required without an endpoint, with one loaded into it first "
        "(default there: the rules registered on it)",
    )
    replay.add_argument(
        "--endpoint-url",
        default=None,
        help="run against this moto server (`logfan local up`), keeping its state, instead of a fresh in-process "
        "emulation (default: AWS_ENDPOINT_URL)",
    )
    replay.add_argument(
        "--prefix", default="logfan", help="the stack Prefix the resource names derive from (as `local up --prefix`)"
    )
    replay.add_argument("--out", type=Path, default=Path("out/replay"), help="output directory (default out/replay)")
    replay.add_argument("--owner", default="123456789012", help="AWS account of plain-text inputs")
    replay.add_argument("--log-group", default=None, help="log group of plain-text inputs (default /replay/<stem>)")
    replay.add_argument("--log-stream", default=None, help="log stream of plain-text inputs (default: file name)")
    replay.add_argument("--batch-size", type=int, default=100, help="Kinesis records per fan-out invocation")
    replay.add_argument(
        "--shards", type=int, default=1, help="shards of the emulated stream (on a server: only if it creates it)"
    )
    replay.add_argument("--workers", type=int, default=4, help="concurrent async invocations")
    replay.add_argument("--rule-timeout-ms", type=int, default=100, help="time bound of one rule on one line")
    replay.add_argument(
        "--chaos",
        type=float,
        default=0.0,
        metavar="RATE",
        help="inject faults at every boundary with this probability (0-1): throttling, failed and "
        "duplicated invokes, redelivered batches, crashes after each side effect (in-process emulation only)",
    )
    replay.add_argument("--seed", type=int, default=0, help="chaos seed: same seed, same faults")
    replay.add_argument(
        "--deliver",
        action="store_true",
        help="really deliver: HTTP to the channels' URLs (loopback allowed), SNS and EventBridge to the emulated "
        "AWS; without it notifications are only captured to notifications.jsonl",
    )
    replay.add_argument(
        "--digest-window",
        type=int,
        default=None,
        metavar="SECONDS",
        help="a rule's alerts within this long after one went out fold into a digest (default: the functions' 60; "
        "0 sends every alert as it comes)",
    )
    replay.add_argument("-v", "--verbose", action="store_true", help="show the handlers' structured logs")
    replay.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    replay.set_defaults(run=_replay)
    register_subscriptions(commands)
    register_bench(commands)
    register_rules(commands)
    register_keys(commands)
    register_notify(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except LogfanError as exc:
        print(f"logfan: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
