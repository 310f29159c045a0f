"""Tests for mta.tables.relayhost: relay URL parsing (modern and legacy)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.errors import TableError
from mta.tables.relayhost import RelayHost, RelayTLS, parse_relay_url


def test_modern_schemas() -> None:
    assert parse_relay_url("mx.example.org") == RelayHost(
        "smtp", "mx.example.org", 25, RelayTLS.OPPORTUNISTIC
    )
    assert parse_relay_url("SMTP+TLS://bob@smtp.example.com:587") == RelayHost(
        "smtp+tls", "smtp.example.com", 587, RelayTLS.STARTTLS, auth_label="bob"
    )
    assert parse_relay_url("smtp+notls://10.0.0.1").tls is RelayTLS.NO
    smtps = parse_relay_url("smtps://label@[::1]")
    assert (smtps.host, smtps.port, smtps.auth) == ("[::1]", 465, True)
    lmtp = parse_relay_url("lmtp://127.0.0.1:2026")
    assert lmtp.lmtp and lmtp.port == 2026


def test_legacy_schemas_map_to_modern() -> None:
    assert parse_relay_url("tls://mx.example.org").tls is RelayTLS.STARTTLS
    auth = parse_relay_url("tls+auth://label@mx.example.org")
    assert (auth.schema, auth.auth_label) == ("smtp+tls", "label")
    assert parse_relay_url("smtps+auth://l@mx.example.org").tls is RelayTLS.SMTPS
    assert parse_relay_url("secure://mx.example.org").tls is RelayTLS.SECURE
    assert parse_relay_url("backup://mx.example.org").backup


def test_legacy_mode_meanings() -> None:
    assert parse_relay_url("smtp://mx.example.org", legacy=True).tls is RelayTLS.NO
    assert parse_relay_url("mx.example.org", legacy=True).tls is RelayTLS.OPPORTUNISTIC
    with pytest.raises(TableError):
        parse_relay_url("tls://label@mx.example.org", legacy=True)
    with pytest.raises(TableError):
        parse_relay_url("smtps://label@mx.example.org", legacy=True)


@pytest.mark.parametrize(
    "url",
    [
        "lmtp://localhost",
        "smtp://label@mx.example.org",
        "smtp+notls://l@mx.example.org",
        "tls+auth://mx.example.org",
        "foo://mx.example.org",
        "smtp://mx.example.org:0",
        "smtp://mx.example.org:65536",
        "smtp://mx.example.org:25x",
        "smtp://[::1",
        "smtp://[nothex]",
        "smtp://",
        "smtp://mx.example.org.",
        "smtp://-bad.example.org",
        "smtp://host/path",
    ],
)
def test_invalid(url: str) -> None:
    with pytest.raises(TableError):
        parse_relay_url(url)


@given(st.text(max_size=80), st.booleans())
def test_only_table_error(url: str, legacy: bool) -> None:
    with contextlib.suppress(TableError):
        parse_relay_url(url, legacy=legacy)
