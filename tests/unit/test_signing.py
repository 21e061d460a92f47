"""Webhook signatures: what logfan sends verifies, and nothing else does."""

from __future__ import annotations

import hashlib
import hmac

from pipeline.signing import DEFAULT_TOLERANCE_S, sign, signature_header, verify_signature

SECRET = "lfs_0123456789abcdef0123456789abcdef"
BODY = '{"schema": "logfan.notification/v1", "notification_id": "n-1", "rule_name": "Zahlung für"}'.encode()
NOW = 1_800_000_000
STAMP = str(NOW)


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{STAMP}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert sign(SECRET, STAMP, BODY) == expected
    assert signature_header(SECRET, STAMP, BODY) == f"v1={expected}"
    assert sign(SECRET, NOW, BODY.decode()) == expected


def test_a_genuine_signature_verifies() -> None:
    header = signature_header(SECRET, STAMP, BODY)

    assert verify_signature(SECRET, STAMP, BODY, header, now=NOW + 10)
    assert verify_signature(SECRET, STAMP, BODY.decode(), header, now=NOW)


def test_a_tampered_body_fails() -> None:
    header = signature_header(SECRET, STAMP, BODY)

    assert not verify_signature(SECRET, STAMP, BODY.replace(b"n-1", b"n-2"), header, now=NOW)
    assert not verify_signature(SECRET, STAMP, BODY + b" ", header, now=NOW)


def test_a_wrong_secret_fails() -> None:
    header = signature_header("lfs_another-secret-entirely-000", STAMP, BODY)

    assert not verify_signature(SECRET, STAMP, BODY, header, now=NOW)


def test_a_stale_or_future_timestamp_fails_even_with_a_genuine_signature() -> None:
    old = str(NOW - DEFAULT_TOLERANCE_S - 1)
    ahead = str(NOW + DEFAULT_TOLERANCE_S + 1)

    assert not verify_signature(SECRET, old, BODY, signature_header(SECRET, old, BODY), now=NOW)
    assert not verify_signature(SECRET, ahead, BODY, signature_header(SECRET, ahead, BODY), now=NOW)
    assert verify_signature(SECRET, old, BODY, signature_header(SECRET, old, BODY), now=NOW, tolerance_s=3600)


def test_a_replayed_signature_with_another_timestamp_fails() -> None:
    header = signature_header(SECRET, STAMP, BODY)

    assert not verify_signature(SECRET, str(NOW + 1), BODY, header, now=NOW)


def test_malformed_headers_and_timestamps_fail_without_raising() -> None:
    genuine = sign(SECRET, STAMP, BODY)

    for header in ("", "v1=", "v0=" + genuine, genuine, "v1=zz", "v1=ünïcode"):
        assert not verify_signature(SECRET, STAMP, BODY, header, now=NOW), header
    for stamp in ("", "soon", "-1", "1.5e9"):
        assert not verify_signature(SECRET, stamp, BODY, f"v1={genuine}", now=NOW), stamp


def test_one_matching_signature_among_several_is_enough() -> None:
    header = f"v1={sign('lfs_the-old-secret-0123456789', STAMP, BODY)}, {signature_header(SECRET, STAMP, BODY)}"

    assert verify_signature(SECRET, STAMP, BODY, header, now=NOW)
