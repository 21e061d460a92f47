"""`logfan bench` / `make bench`: run the five sections, print the table, write the results file."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.bench import sections
from pipeline.bench.report import BenchReport, Row, format_table, write_results
from pipeline.bench.sections import Scale

__all__ = ["DEFAULT_RESULTS", "SECTIONS", "run_bench"]

DEFAULT_RESULTS = Path("tests/bench/results.json")
"""Committed with the code it measured; the README's Performance section quotes it."""
SECTIONS = ("decode", "matching", "fan-out", "end-to-end", "memory")


def run_bench(
    scale: Scale,
    *,
    seed: int = 7,
    only: tuple[str, ...] = SECTIONS,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    report = BenchReport(seed=seed, scale=scale.name)
    started = time.perf_counter()

    def step(name: str, run: Callable[[], list[Row]]) -> None:
        if name not in only:
            return
        if progress is not None:
            progress(name)
        report.rows.extend(run())

    details = report.details
    step("decode", lambda: sections.decode_section(scale, seed, details))
    step("matching", lambda: sections.matching_section(scale, seed, details))
    step("fan-out", lambda: sections.fan_out_section(scale, seed, details))
    step("end-to-end", lambda: sections.end_to_end_section(scale, seed, details, _pure_rate(scale, seed, details)))
    step("memory", lambda: sections.memory_section(scale, seed, details))
    report.wall_time_s = time.perf_counter() - started
    return report


def _pure_rate(scale: Scale, seed: int, details: dict[str, Any]) -> float:
    """Events/s of (1) and (2) back to back, as the end-to-end run's yardstick."""
    if "decode" not in details:
        sections.decode_section(scale, seed, details)
    if "matching" not in details:
        sections.matching_section(scale, seed, details)
    decode = details["decode"]["events_per_s"]["ours"]
    matching = details["matching"]
    ten = matching.get("10") or next(iter(matching.values()))
    match_rate = ten["lines_per_s"]["ours"]
    return float(1 / (1 / decode + 1 / match_rate))


def print_report(report: BenchReport, results: Path | None) -> None:
    print(format_table(report))  # noqa: T201
    summary = "every target met" if report.all_met else "some targets MISSED"
    where = f"; results in {results}" if results else ""
    print(f"\n{summary} ({report.wall_time_s:.0f} s, seed {report.seed}, scale {report.scale}){where}")  # noqa: T201


def write(report: BenchReport, results: Path) -> None:
    write_results(report, results)
