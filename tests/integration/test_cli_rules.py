"""`logfan customers|channels|rules|local` against moto's server on 127.0.0.1 (AWS_ENDPOINT_URL / --endpoint-url)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[2]
SECRET = "https://hooks.slack.com/services/T0/B0/s3cr3t"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _acme(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "customers", "add", "acme", "--name", "Acme", "--account", "111122223333")[0] == 0
    assert _run(capsys, "channels", "add", "--customer", "acme", "ops", "--type", "slack", "--url", SECRET)[0] == 0


def test_register_a_customer_a_channel_and_rules_then_list_and_show_them(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a customer with a Slack channel
    _acme(capsys)

    # When rules are added and one is edited
    added = _run(
        capsys,
        "rules",
        "add",
        "--customer",
        "acme",
        "tier",
        "--pattern",
        "UserTier=BigBucksCustomer",
        "--channel",
        "ops",
    )
    oom = _run(
        capsys,
        "rules",
        "add",
        "--customer",
        "acme",
        "oom",
        "--pattern",
        r"(?<=Max Memory Used: )\d{4,} MB",
        "--channel",
        "ops",
    )
    edited = _run(
        capsys,
        "rules",
        "add",
        "--customer",
        "acme",
        "tier",
        "--pattern",
        "UserTier=Big",
        "--channel",
        "ops",
        "--replace",
    )
    listed = _run(capsys, "rules", "list", "--customer", "acme")
    shown = _run(capsys, "rules", "show", "--customer", "acme", "tier")
    customers = _run(capsys, "customers", "list")
    channels = _run(capsys, "channels", "list", "--customer", "acme")

    # Then
    assert added[:2] == (0, "rule acme/tier added (version 1)\n")
    assert oom[0] == 0
    assert edited[1] == "rule acme/tier updated (version 2)\n"
    assert listed[1].splitlines()[-1] == "2 rule(s), 0 quarantined"
    assert yaml.safe_load(shown[1])["version"] == 2
    assert "acme" in customers[1] and "111122223333" in customers[1]
    assert "https://hooks.slack.com/***" in channels[1]
    assert "s3cr3t" not in "".join(out for _, out, _ in (listed, shown, customers, channels))


def test_a_catastrophic_rule_is_refused_with_why(endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    _acme(capsys)

    status, _, err = _run(
        capsys, "rules", "add", "--customer", "acme", "csv", "--pattern", r"^(.*?,){11}P", "--channel", "ops"
    )

    assert status == 2
    assert "logfan: error: patterns[0] '^(.*?,){11}P': backtracks catastrophically" in err


def test_a_private_webhook_is_refused_without_echoing_it(endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    _acme(capsys)

    status, out, err = _run(
        capsys,
        "channels",
        "add",
        "--customer",
        "acme",
        "meta",
        "--type",
        "webhook",
        "--url",
        "http://169.254.169.254/s3cr3t",
    )

    assert status == 2
    assert "url must use https" in err
    assert "s3cr3t" not in out + err


def test_quarantine_shows_in_rules_list(endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.adapters.dynamodb_config import config_store

    _acme(capsys)
    _run(capsys, "rules", "add", "--customer", "acme", "tier", "--pattern", "UserTier", "--channel", "ops")
    config_store(os.environ["LOGFAN_CONFIG_TABLE"], region="us-east-1").quarantine_rule(
        "acme", "tier", "over budget", 7
    )

    _, out, _ = _run(capsys, "rules", "list", "--customer", "acme")

    assert "quarantined at 7 ms: over budget (edit the rule to lift it)" in out
    assert out.splitlines()[-1] == "1 rule(s), 1 quarantined"


def test_import_export_remove_and_test(endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the sample rules file, which holds a catastrophic rule for the run-time demo: refused whole
    sample = ROOT / "sample_logs" / "rules.yaml"
    refused = _run(capsys, "rules", "import", str(sample))
    source = yaml.safe_load(sample.read_text())
    source["rules"] = [r for r in source["rules"] if r["rule_id"] != "csv-catastrophic"]
    vetted = tmp_path / "rules.yaml"
    vetted.write_text(yaml.safe_dump(source))
    imported = _run(capsys, "rules", "import", str(vetted))
    again = _run(capsys, "rules", "import", str(vetted))

    # When it is exported, and a rule of it is tried on sample lines and then removed
    out = tmp_path / "export.yaml"
    exported = _run(capsys, "rules", "export", "--out", str(out))
    document = yaml.safe_load(out.read_text())
    customer = document["rules"][0]["customer_id"]
    rule_id = document["rules"][0]["rule_id"]
    lines = tmp_path / "lines.log"
    lines.write_text("nothing here\n" + "\n".join(document["rules"][0]["patterns"]) + "\n")
    tried = _run(capsys, "rules", "test", "--customer", customer, "--rule", rule_id, str(lines))
    removed = _run(capsys, "rules", "remove", "--customer", customer, rule_id)
    missing = _run(capsys, "rules", "show", "--customer", customer, rule_id)

    # Then
    assert refused[0] == 2
    assert "rule globex/csv-catastrophic: patterns[0] '^(.*?,){11}P': backtracks catastrophically" in refused[2]
    assert imported[0] == 0, imported[2]
    assert "0 updated" in again[1] and "0 created" in again[1]
    assert exported[0] == 0
    assert sorted((r["customer_id"], r["rule_id"]) for r in document["rules"]) == sorted(
        (r["customer_id"], r["rule_id"]) for r in source["rules"]
    )
    assert tried[0] == 0, tried[2]
    assert rule_id in tried[1] and "time ms" in tried[1]
    assert removed[1] == f"rule {customer}/{rule_id} removed\n"
    assert missing[0] == 2 and "no rule" in missing[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _logfan(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_local_up_then_rules_against_it_then_local_down(tmp_path: Path) -> None:
    # Given no AWS at all
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOGFAN_"))}
    port = _free_port()

    # When `logfan local up` starts the server and the printed exports are used by the next commands
    up = _logfan("local", "up", "--port", str(port), "--state-dir", str(tmp_path), env=env)
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines() if line.startswith("export ")
        )
        local_env = {**env, **exports}
        added = _logfan("customers", "add", "acme", env=local_env)
        listed = _logfan("customers", "list", env=local_env)
        tables = boto3.client("dynamodb", endpoint_url=exports["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing").list_tables()["TableNames"]  # fmt: skip
    finally:
        down = _logfan("local", "down", "--state-dir", str(tmp_path), env=env)

    # Then
    assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
    assert added.returncode == 0, added.stderr
    assert "acme" in listed.stdout
    assert set(tables) >= {"logfan-config", "logfan-batches", "logfan-matches"}
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (tmp_path / "moto.json").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_channels_show_signing_and_delivery_health_and_an_edit_clears_it(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.adapters.dynamodb_config import config_store

    # Given a customer with a Slack channel and a webhook, whose generated secret is printed once
    _acme(capsys)
    added = _run(
        capsys,
        "channels",
        "add",
        "--customer",
        "acme",
        "hook",
        "--type",
        "webhook",
        "--url",
        "https://a.example/s3cr3t",
    )
    secret = added[1].split("store it now): ")[1].strip()
    config_store(os.environ["LOGFAN_CONFIG_TABLE"], region="us-east-1").record_delivery_failure(
        "acme", "hook", error="webhook channel hook answered HTTP 410", at_ms=77
    )

    # When the channels are listed, the webhook edited, and listed again
    before = _run(capsys, "channels", "list", "--customer", "acme")
    edited = _run(
        capsys, "channels", "add", "--customer", "acme", "hook", "--type", "webhook", "--url", "https://a.example/new"
    )
    after = _run(capsys, "channels", "list", "--customer", "acme")

    # Then the list shows the secret's end only and the failure, until the edit (which keeps the secret)
    assert added[0] == 0 and secret.startswith("lfs_")
    hook_line = next(line for line in before[1].splitlines() if line.startswith("hook"))
    assert f"…{secret[-4:]}" in hook_line
    assert "1 failure(s), last at 77 ms: webhook channel hook answered HTTP 410" in hook_line
    assert before[1].splitlines()[-1] == "2 channel(s), 1 failing"
    assert edited[1] == "channel acme/hook replaced\n"
    assert after[1].splitlines()[-1] == "2 channel(s), 0 failing"
    assert f"…{secret[-4:]}" in after[1]
    assert secret not in before[1] + after[1]
    assert "s3cr3t" not in before[1] + after[1]
