"""The replay summary table, as printed at the end of `logfan replay`."""

from __future__ import annotations

import sys
from typing import TextIO

from pipeline.local.replay import ReplayReport

__all__ = ["print_progress", "print_report"]


def print_progress(delivered: int, total: int, stream: TextIO | None = None) -> None:
    """A single updating line, only for inputs large enough to be worth watching."""
    if total < 200:
        return
    stream = stream or sys.stderr  # looked up now: sys.stderr may be replaced after import (tests capture it)
    end = "\n" if delivered >= total else ""
    stream.write(f"\r  replaying: {delivered}/{total} Kinesis records ({100 * delivered // total}%)" + end)
    stream.flush()


def print_report(report: ReplayReport, out_dir: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout  # looked up now, as in `print_progress`
    rows = [
        ("input files", report.files),
        ("kinesis records", report.records),
        ("log events", report.events),
        ("  of owners no customer claims", report.unclaimed_events),
        ("control messages dropped", report.control_records),
        ("customers / rules", f"{report.customers} / {report.rules}"),
        ("matches", report.matches),
        ("notifications", report.notifications),
        ("  of them digests", f"{report.digests} (folding {report.folded_alerts} alerts)"),
        ("rejected (poison) records", report.rejected),
        ("batches complete", f"{report.complete_batches} / {report.batches}"),
        ("sub-tasks (parser runs)", report.subtasks),
        ("wall time", f"{report.wall_time_s:.2f} s"),
    ]
    if report.endpoint_url is not None:
        after_matches = rows.index(("matches", report.matches)) + 1
        rows.insert(after_matches, ("  found again (recorded earlier)", report.already_recorded_matches))
    width = max(len(label) for label, _ in rows)
    print("\nlogfan replay summary", file=stream)
    print("-" * (width + 14), file=stream)
    for label, value in rows:
        print(f"{label:<{width}}  {value:>10}", file=stream)
    if report.endpoint_url is not None:
        rules = f"{report.rules_loaded_from}, loaded into it first" if report.rules_loaded_from else "registered there"
        print(
            f"\nagainst {report.endpoint_url} (kept for the next run); rules: {rules}. The counts and outputs "
            "cover only this run's records; matches already recorded were not notified again.",
            file=stream,
        )
    if report.quarantined_rules:
        print(f"\nquarantined at run time: {', '.join(report.quarantined_rules)}", file=stream)
    if report.matches_by_rule or report.timeouts_by_rule:
        print("\nmatches per rule (customer/rule)", file=stream)
        keys = sorted(set(report.matches_by_rule) | set(report.timeouts_by_rule))
        key_width = max(len(k) for k in keys)
        for key in keys:
            timeouts = report.timeouts_by_rule.get(key, 0)
            note = f"   ({timeouts} evaluations timed out)" if timeouts else ""
            print(f"  {key:<{key_width}}  {report.matches_by_rule.get(key, 0):>6}{note}", file=stream)
    if report.faults_injected or report.sweeper_runs or report.dead_letters:
        print(f"\nfaults injected: {sum(report.faults_injected.values())}", file=stream)
        for point, count in sorted(report.faults_injected.items()):
            print(f"  {point:<36}  {count:>6}", file=stream)
        print(
            f"recovered by: {report.sweeper_runs} sweeper run(s) re-driving {report.redriven_subtasks} sub-task(s) "
            f"({report.dead_letters} async invocation(s) had failed every attempt, see dead_letters.jsonl); "
            f"{report.redeliveries_suppressed} notification redelivery(ies) dropped by notification_id",
            file=stream,
        )
    print(
        f"\noutputs in {out_dir}/: matches.jsonl notifications.jsonl batches.jsonl rejected.jsonl",
        file=stream,
    )
    if not report.ok:
        print(
            f"\nWARNING: {report.batches - report.complete_batches} batch(es) not complete after "
            f"{report.sweeper_runs} sweeper run(s); {report.abandoned_subtasks} sub-task(s) abandoned; "
            f"{report.unnotified_matches} match(es) whose notification was never sent",
            file=stream,
        )
