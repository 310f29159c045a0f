"""Shared helpers for the rules tests: small configurations loaded with the real
parser and builder, and the table set opened for them."""

from __future__ import annotations

from mta.config.load import load_text
from mta.config.model import Config
from mta.envelope import Address
from mta.rules.ruleset import MatchContext
from mta.rules.tableset import TableSet

HOSTNAME = "mx.example.org"
LOCAL_ADDRESSES = ["127.0.0.1", "::1", "192.0.2.10"]


def load(text: str) -> Config:
    """A configuration from text (interfaces are not checked)."""
    return load_text(text, "test.conf", hostname=HOSTNAME, check_interfaces=False).config


def open_tables(config: Config) -> TableSet:
    return TableSet.open(config, HOSTNAME, LOCAL_ADDRESSES)


def remote(**changes: object) -> MatchContext:
    """A session from a remote client, changed as asked."""
    values: dict[str, object] = {
        "socket": False,
        "src": "203.0.113.5",
        "sender": Address("bob", "sender.example"),
        "rdns": "mail.sender.example",
        "helo": "mail.sender.example",
    }
    values.update(changes)
    return MatchContext(**values)  # type: ignore[arg-type]


def local_socket(**changes: object) -> MatchContext:
    """A session through the local socket."""
    values: dict[str, object] = {
        "socket": True,
        "local": True,
        "src": "local",
        "sender": Address("root", HOSTNAME),
        "rdns": "localhost",
        "helo": "localhost",
    }
    values.update(changes)
    return MatchContext(**values)  # type: ignore[arg-type]
