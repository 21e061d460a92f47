"""API keys: their format, what is stored (a hash, never the key), and who a header authenticates."""

from __future__ import annotations

import hashlib
import re

import pytest

from pipeline.api_keys import (
    BEARER_PATTERN,
    KEY_PATTERN,
    ApiKey,
    StoredApiKey,
    authenticate,
    bearer_key,
    hash_key,
    issue_key,
    parse_key,
)
from pipeline.observability import CountingMetrics

NOW = 1_764_380_000_000


class InMemoryKeys:
    """The `ApiKeyLookup` port over a dict, counting lookups."""

    def __init__(self, *keys: StoredApiKey) -> None:
        self.keys = {key.key_id: key for key in keys}
        self.lookups: list[str] = []

    def get_key(self, key_id: str) -> StoredApiKey | None:
        self.lookups.append(key_id)
        return self.keys.get(key_id)


def test_an_issued_key_has_the_key_format_and_only_its_hash_is_kept() -> None:
    issued = issue_key("acme", now_ms=NOW)

    assert re.match(KEY_PATTERN, issued.key)
    assert issued.key.startswith(f"lf_{issued.stored.key_id}_")
    assert issued.stored.key_hash == hashlib.sha256(issued.key.encode()).hexdigest()
    assert issued.stored.last4 == issued.key[-4:]
    assert (issued.stored.customer_id, issued.stored.created_at, issued.stored.revoked) == ("acme", NOW, False)
    assert issued.key not in issued.stored.model_dump_json()
    assert issued.key not in repr(issued)


def test_keys_are_random() -> None:
    keys = {issue_key("acme", now_ms=NOW).key for _ in range(50)}
    ids = {key.split("_")[1] for key in keys}

    assert len(keys) == len(ids) == 50


def test_the_public_view_of_a_key_has_no_hash() -> None:
    stored = issue_key("acme", now_ms=NOW).stored

    public = stored.public()

    assert type(public) is ApiKey
    assert "key_hash" not in public.model_dump()
    assert "key_hash" not in repr(stored)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("Bearer   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("", None),
        (None, None),
    ],
)
def test_a_bearer_token_is_read_from_the_authorization_header(header: str | None, token: str | None) -> None:
    assert bearer_key(header) == token


def test_only_the_key_format_parses() -> None:
    key = issue_key("acme", now_ms=NOW).key

    assert parse_key(key) is not None
    assert parse_key(key + "x") is None
    assert parse_key(key.replace("lf_", "xx_", 1)) is None
    assert parse_key("lf_ABCDEF0123456789_" + "a" * 40) is None  # the id is lowercase hex
    assert parse_key("") is None


def test_the_bearer_pattern_is_the_whole_header_with_a_key() -> None:
    key = issue_key("acme", now_ms=NOW).key

    assert re.match(BEARER_PATTERN, f"Bearer {key}")
    assert not re.match(BEARER_PATTERN, key)
    assert not re.match(BEARER_PATTERN, f"Bearer {key} ")


def test_a_valid_key_authenticates_as_its_customer() -> None:
    # Given acme's key
    issued = issue_key("acme", now_ms=NOW)
    keys = InMemoryKeys(issued.stored)
    metrics = CountingMetrics()

    # When it is presented
    decision = authenticate(keys, f"Bearer {issued.key}", metrics)

    # Then
    assert decision.allowed
    assert decision.context() == {"customer_id": "acme", "key_id": issued.stored.key_id}
    assert metrics.snapshot() == {"ApiKeysAccepted": 1}


def test_a_wrong_secret_for_a_known_key_id_is_refused() -> None:
    issued = issue_key("acme", now_ms=NOW)
    forged = issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B")
    metrics = CountingMetrics()

    decision = authenticate(InMemoryKeys(issued.stored), f"Bearer {forged}", metrics)

    assert not decision.allowed
    assert decision.context() == {}
    assert decision.reason == "unknown key"
    assert metrics.snapshot() == {"ApiKeysRefused": 1}


def test_an_unknown_key_is_refused() -> None:
    other = issue_key("acme", now_ms=NOW)

    decision = authenticate(InMemoryKeys(), f"Bearer {other.key}", CountingMetrics())

    assert (decision.allowed, decision.reason, decision.key_id) == (False, "unknown key", other.stored.key_id)


def test_a_revoked_key_is_refused() -> None:
    issued = issue_key("acme", now_ms=NOW)
    revoked = issued.stored.model_copy(update={"revoked_at": NOW + 1})

    decision = authenticate(InMemoryKeys(revoked), f"Bearer {issued.key}", CountingMetrics())

    assert (decision.allowed, decision.reason) == (False, "revoked key")


@pytest.mark.parametrize("header", [None, "", "Bearer not-a-key", "Basic dXNlcjpwYXNz", "lf_0123456789abcdef_x"])
def test_a_header_without_a_key_is_refused_without_a_lookup(header: str | None) -> None:
    keys = InMemoryKeys()

    decision = authenticate(keys, header, CountingMetrics())

    assert not decision.allowed
    assert keys.lookups == []


def test_a_key_is_compared_by_its_hash() -> None:
    issued = issue_key("acme", now_ms=NOW)
    # Stored under the id with some other key's hash: the presented key must hash to what is stored
    stored = issued.stored.model_copy(update={"key_hash": hash_key("lf_something_else")})

    decision = authenticate(InMemoryKeys(stored), f"Bearer {issued.key}", CountingMetrics())

    assert not decision.allowed
