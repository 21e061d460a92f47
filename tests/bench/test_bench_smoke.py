"""`logfan bench` at tiny sizes: every section's code path runs and reports; nothing is timed here."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.bench.costs import CountingDynamoDB, item_size
from pipeline.bench.report import format_table
from pipeline.bench.runner import SECTIONS, run_bench, write
from pipeline.bench.sections import Scale
from pipeline.bench.traffic import TrafficGenerator, make_tenants
from pipeline.cli import main


def test_every_section_runs_at_smoke_size_and_reports_target_rows(tmp_path: Path) -> None:
    # When the whole benchmark runs at smoke size
    report = run_bench(Scale.smoke(), seed=3)
    write(report, tmp_path / "results.json")

    # Then every section produced rows, and every row with a target says met or MISSED
    sections = {row.section.split()[0] for row in report.rows}
    assert sections == {"1", "2", "3", "4", "5"}
    assert all(row.status in ("met", "MISSED") for row in report.rows if row.target)
    assert "status" in format_table(report).splitlines()[0]
    written = json.loads((tmp_path / "results.json").read_text())
    assert len(written["rows"]) == len(report.rows)

    # And the prefiltered engine agreed with the plain one on the matching corpus
    assert all(entry["identical_to_plain"] for entry in report.details["matching"].values())
    assert report.details["end_to_end"]["base"]["all_batches_complete"]


def test_the_generator_is_deterministic_by_seed() -> None:
    tenants = make_tenants(3, 5)

    first = list(TrafficGenerator(tenants, seed=5).messages(3))
    again = list(TrafficGenerator(tenants, seed=5).messages(3))
    other = list(TrafficGenerator(tenants, seed=6).messages(3))

    assert first == again
    assert first != other
    assert all(len(d["logEvents"]) >= 90 for d in first)


def test_write_units_follow_item_size() -> None:
    class Client:
        def put_item(self, **kwargs: object) -> dict[str, object]:
            return {}

    counted = CountingDynamoDB(Client())
    small = {"pk": {"S": "a"}}
    large = {"pk": {"S": "a"}, "body": {"S": "x" * 2500}}

    counted.put_item(TableName="t", Item=small)
    counted.put_item(TableName="t", Item=large)

    assert item_size(small) == 3
    assert counted.write_units == 1 + 3
    assert counted.calls["put_item"] == 2


def test_the_cli_runs_one_section(capsys: object) -> None:
    assert main(["bench", "--smoke", "--section", "fan-out", "--no-results", "-q"]) in (0, 1)
    assert SECTIONS[2] == "fan-out"
