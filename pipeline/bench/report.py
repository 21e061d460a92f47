"""The benchmark table and its JSON file."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchReport", "Row", "format_table", "write_results"]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table; a row with a `target` ends in `met` or `MISSED`."""

    section: str
    measure: str
    ours: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def status(self) -> str:
        return "" if self.met is None else ("met" if self.met else "MISSED")


@dataclass
class BenchReport:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seed: int = 7
    scale: str = "full"
    wall_time_s: float = 0.0

    @property
    def all_met(self) -> bool:
        return all(row.met is not False for row in self.rows)


_COLUMNS = ("section", "measure", "ours", "baseline", "ratio", "target", "status")


def format_table(report: BenchReport) -> str:
    cells = [_COLUMNS] + [tuple(getattr(row, c) for c in _COLUMNS) for row in report.rows]
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(_COLUMNS))]
    rule = "+".join("-" * (w + 2) for w in widths)
    lines = []
    for number, line in enumerate(cells):
        lines.append("|".join(f" {value!s:<{widths[i]}} " for i, value in enumerate(line)).rstrip())
        if number == 0:
            lines.append(rule)
    return "\n".join(lines)


def write_results(report: BenchReport, path: Path) -> None:
    document = {
        "seed": report.seed,
        "scale": report.scale,
        "wall_time_s": round(report.wall_time_s, 1),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.machine(),
        },
        "all_targets_met": report.all_met,
        "rows": [{**asdict(row), "status": row.status} for row in report.rows],
        "details": report.details,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
