"""Fixtures for the spool tests: a fresh spool root and envelope factories."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from mta.envelope import Address, Envelope, EnvelopeKind

KEY = bytes(range(32))


def make_envelope(rcpt: str = "bob@example.org", **changes: Any) -> Envelope:
    """An unassigned envelope (ids 0) as the SMTP server would hand it over."""
    values: dict[str, Any] = {
        "msgid": 0,
        "kind": EnvelopeKind.MTA,
        "dispatcher": "relay",
        "smtpname": "mx.example.net",
        "helo": "client.example.com",
        "hostname": "client.example.com",
        "sockaddr": "192.0.2.7",
        "sender": Address("alice", "example.com"),
        "rcpt": Address.parse(rcpt),
        "dest": Address.parse(rcpt),
        "ctime": 1_700_000_000,
    }
    values.update(changes)
    return Envelope(**values)


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "spool"
