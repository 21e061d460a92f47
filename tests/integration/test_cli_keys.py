"""`logfan customers keys create|list|revoke` against moto's server on 127.0.0.1 (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest

from pipeline.adapters.dynamodb_api_keys import DynamoDBApiKeyStore
from pipeline.api_keys import KEY_PATTERN, authenticate
from pipeline.cli import main
from pipeline.config import ResourceNames
from pipeline.observability import CountingMetrics


@pytest.fixture
def table(endpoint: str, server_names: ResourceNames) -> str:
    return server_names.config_table


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _client(server: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _store(server: str, table: str) -> DynamoDBApiKeyStore:
    return DynamoDBApiKeyStore(_client(server), table)


def test_create_prints_the_key_once_and_list_shows_it_without_the_key(
    server: str, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a customer
    assert _run(capsys, "customers", "add", "acme", "--account", "111122223333")[0] == 0

    # When a key is created and the keys are listed
    status, out, err = _run(capsys, "customers", "keys", "create", "--customer", "acme")
    listed = _run(capsys, "customers", "keys", "list", "--customer", "acme")

    # Then the key alone is on stdout, works, and is never shown again
    key = out.strip()
    key_id = key.split("_")[1]
    assert status == 0 and re.match(KEY_PATTERN, key) and out == key + "\n"
    assert f"created key {key_id} for customer acme" in err
    decision = authenticate(_store(server, table), f"Bearer {key}", CountingMetrics())
    assert decision.customer_id == "acme"
    assert listed[0] == 0
    assert key_id in listed[1] and f"...{key[-4:]}" in listed[1] and "active" in listed[1]
    assert listed[1].splitlines()[-1] == "1 key(s), 1 active"
    assert key not in listed[1]
    items = _client(server).scan(TableName=table)["Items"]
    assert key not in json.dumps(items)


def test_revoke_refuses_the_key_from_then_on(server: str, table: str, capsys: pytest.CaptureFixture[str]) -> None:
    _run(capsys, "customers", "add", "acme", "--account", "111122223333")
    key = _run(capsys, "customers", "keys", "create", "--customer", "acme")[1].strip()
    key_id = key.split("_")[1]

    revoked = _run(capsys, "customers", "keys", "revoke", "--customer", "acme", key_id)
    again = _run(capsys, "customers", "keys", "revoke", "--customer", "acme", key)  # the key itself works too
    listed = _run(capsys, "customers", "keys", "list", "--customer", "acme")

    assert revoked[:2] == (0, f"key {key_id} of acme revoked\n")
    assert again[:2] == (0, f"key {key_id} of acme was already revoked\n")
    assert "revoked 20" in listed[1] and listed[1].splitlines()[-1] == "1 key(s), 0 active"
    assert not authenticate(_store(server, table), f"Bearer {key}", CountingMetrics()).allowed


def test_another_customers_key_cannot_be_revoked(server: str, table: str, capsys: pytest.CaptureFixture[str]) -> None:
    _run(capsys, "customers", "add", "acme", "--account", "111122223333")
    _run(capsys, "customers", "add", "globex", "--account", "444455556666")
    key = _run(capsys, "customers", "keys", "create", "--customer", "acme")[1].strip()

    status, out, err = _run(capsys, "customers", "keys", "revoke", "--customer", "globex", key.split("_")[1])

    assert status == 2 and out == ""
    assert err.startswith("logfan: error: customer 'globex' has no key")
    assert authenticate(_store(server, table), f"Bearer {key}", CountingMetrics()).allowed


def test_a_key_for_an_unknown_customer_is_refused(table: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "customers", "keys", "create", "--customer", "initech")

    assert (status, out) == (2, "")
    assert err == "logfan: error: no customer 'initech'\n"


def test_the_endpoint_can_be_given_on_the_command_line(
    server: str, table: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(capsys, "customers", "add", "acme", "--account", "111122223333")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("LOGFAN_CONFIG_TABLE")

    created = _run(
        capsys, "customers", "keys", "create", "--customer", "acme", "--endpoint-url", server, "--table", table
    )
    listed = _run(capsys, "customers", "keys", "list", "--customer", "acme", "--endpoint-url", server, "--table", table)

    assert created[0] == 0 and listed[1].splitlines()[-1] == "1 key(s), 1 active"
