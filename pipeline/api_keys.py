"""API keys for the rules API: issue, recognise and check them (pure; storage is a port).

A key reads `lf_<key id>_<secret>`: 16 hex digits that name it, then 40 random letters and digits
(about 238 bits from `secrets`). Only the SHA-256 of the whole key is stored, with the customer it
belongs to and the last four characters to tell keys apart, so the config table never holds a
usable key. A plain hash suffices because the secret is random and long: there is nothing to guess
a dictionary for, which is what a slow password hash defends against. Hashes are compared in
constant time.

Callers present a key as `Authorization: Bearer <key>`. `x-api-key` is deliberately not read: on
API Gateway that header belongs to usage-plan keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from pipeline.models import IDENTIFIER_PATTERN
from pipeline.ports import MetricsSink

__all__ = [
    "BEARER_PATTERN",
    "KEY_PATTERN",
    "ApiKey",
    "ApiKeyLookup",
    "Decision",
    "IssuedKey",
    "PresentedKey",
    "StoredApiKey",
    "authenticate",
    "bearer_key",
    "hash_key",
    "issue_key",
    "parse_key",
]

KEY_PREFIX = "lf"
KEY_ID_HEX = 16
SECRET_CHARS = 40
SECRET_ALPHABET = string.ascii_letters + string.digits
KEY_PATTERN = rf"^{KEY_PREFIX}_([0-9a-f]{{{KEY_ID_HEX}}})_([A-Za-z0-9]{{{SECRET_CHARS}}})$"
"""What a key looks like; group 1 is its id."""
BEARER_PATTERN = rf"^Bearer {KEY_PATTERN[1:]}"
"""The whole `Authorization` header carrying a key; API Gateway's token authorizer checks it too
(`IdentityValidationExpression`), so malformed headers are refused before any Lambda runs."""

_KEY = re.compile(KEY_PATTERN)
_BEARER = re.compile(r"^Bearer[ \t]+(\S+)[ \t]*$", re.IGNORECASE)
_NO_HASH = hashlib.sha256(b"no such key").hexdigest()
"""Compared against when the key id is unknown, so a miss costs the same as a wrong secret."""


class ApiKey(BaseModel):
    """What anyone may see about a key: whose it is, when it was made, whether it still works."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(pattern=rf"^[0-9a-f]{{{KEY_ID_HEX}}}$")
    customer_id: str = Field(pattern=IDENTIFIER_PATTERN)
    last4: str = Field(min_length=4, max_length=4, description="the key's last four characters")
    created_at: int = Field(ge=0, description="epoch ms")
    revoked_at: int | None = Field(default=None, ge=0, description="epoch ms; None while the key is active")

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class StoredApiKey(ApiKey):
    """A key as the authorizer checks it: with the SHA-256 of the key, never the key."""

    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$", repr=False)

    def public(self) -> ApiKey:
        return ApiKey.model_validate(self.model_dump(exclude={"key_hash"}))


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: what is stored, and the key itself, which is shown once and then forgotten."""

    stored: StoredApiKey
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PresentedKey:
    key_id: str
    key: str = field(repr=False)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _random_secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_CHARS))


def _random_key_id() -> str:
    return secrets.token_hex(KEY_ID_HEX // 2)


def issue_key(
    customer_id: str,
    *,
    now_ms: int,
    key_id: Callable[[], str] = _random_key_id,
    secret: Callable[[], str] = _random_secret,
) -> IssuedKey:
    """A fresh key for `customer_id`, and the record to store for it."""
    identifier, token = key_id(), secret()
    key = f"{KEY_PREFIX}_{identifier}_{token}"
    if not _KEY.match(key):
        raise ValueError("generated key does not have the key format")
    stored = StoredApiKey(
        key_id=identifier, customer_id=customer_id, key_hash=hash_key(key), last4=token[-4:], created_at=now_ms
    )
    return IssuedKey(stored=stored, key=key)


def parse_key(text: str) -> PresentedKey | None:
    """The key's id, when `text` has the key format at all."""
    found = _KEY.match(text)
    return PresentedKey(key_id=found[1], key=text) if found else None


def bearer_key(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    found = _BEARER.match(authorization or "")
    return found[1] if found else None


class ApiKeyLookup(Protocol):
    """What authenticating needs of the key store (`DynamoDBApiKeyStore` implements it)."""

    def get_key(self, key_id: str) -> StoredApiKey | None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """Who a request is from, or why it is refused (never the key)."""

    customer_id: str | None
    key_id: str | None
    reason: str

    @property
    def allowed(self) -> bool:
        return self.customer_id is not None

    def context(self) -> dict[str, str]:
        """What the authorizer hands API Gateway for the API's handler (`requestContext.authorizer`)."""
        if self.customer_id is None or self.key_id is None:
            return {}
        return {"customer_id": self.customer_id, "key_id": self.key_id}


def authenticate(keys: ApiKeyLookup, authorization: str | None, metrics: MetricsSink) -> Decision:
    """Which customer the `Authorization` header's key belongs to; refused when it is malformed,
    unknown, wrong or revoked. Counts `ApiKeysAccepted` / `ApiKeysRefused`."""
    decision = _decide(keys, authorization)
    if decision.allowed:
        metrics.count("ApiKeysAccepted")
    else:
        metrics.count("ApiKeysRefused")
    return decision


def _decide(keys: ApiKeyLookup, authorization: str | None) -> Decision:
    token = bearer_key(authorization)
    presented = parse_key(token) if token else None
    if presented is None:
        return Decision(customer_id=None, key_id=None, reason="no key in the Authorization header")
    stored = keys.get_key(presented.key_id)
    expected = stored.key_hash if stored is not None else _NO_HASH
    if not hmac.compare_digest(expected, hash_key(presented.key)) or stored is None:
        return Decision(customer_id=None, key_id=presented.key_id, reason="unknown key")
    if stored.revoked:
        return Decision(customer_id=None, key_id=stored.key_id, reason="revoked key")
    return Decision(customer_id=stored.customer_id, key_id=stored.key_id, reason="valid key")
