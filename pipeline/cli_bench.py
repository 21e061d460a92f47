"""`logfan bench`: the performance benchmark (see the README's Performance section)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _bench(args: argparse.Namespace) -> int:
    # Before Powertools is touched: the handlers' EMF metrics would otherwise go to stdout.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from pipeline.bench.runner import DEFAULT_RESULTS, SECTIONS, print_report, run_bench, write
    from pipeline.bench.sections import Scale
    from pipeline.observability import get_logger

    get_logger().setLevel("CRITICAL")
    scale = Scale.smoke() if args.smoke else Scale()
    only = tuple(args.section) if args.section else SECTIONS

    def progress(name: str) -> None:
        if not args.quiet:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)  # noqa: T201

    report = run_bench(scale, seed=args.seed, only=only, progress=progress)
    results: Path | None = None if args.no_results else (args.results or DEFAULT_RESULTS)
    if results is not None:
        write(report, results)
    print_report(report, results)
    return 0 if report.all_met else 1


def register(subcommands: Any) -> None:
    """Add `bench` to the `logfan` subcommands."""
    from pipeline.bench.runner import SECTIONS

    bench = subcommands.add_parser(
        "bench",
        help="benchmark throughput, latency, memory and AWS cost against baselines in the same run",
        description=(
            "Generated CloudWatch Logs traffic through the fan-out's decode and plan, the rule engine, the "
            "concurrent invoker, the whole pipeline on moto and the fan-out's memory, each next to its baseline. "
            "Prints one table (each target met or MISSED) and writes a JSON results file. Exit 1 if a target is missed."
        ),
    )
    bench.add_argument("--seed", type=int, default=7, help="traffic generator seed (default 7)")
    bench.add_argument("--section", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    bench.add_argument("--results", type=Path, default=None, help="results file (default tests/bench/results.json)")
    bench.add_argument("--no-results", action="store_true", help="write no results file")
    bench.add_argument(
        "--smoke", action="store_true", help="tiny sizes: checks the code paths in seconds, times nothing"
    )
    bench.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    bench.set_defaults(run=_bench)
