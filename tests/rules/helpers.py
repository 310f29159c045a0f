"""Shared helpers for the rules tests: small configurations loaded with the real
parser and builder, and the table set opened for them."""

from __future__ import annotations

import sys
from pathlib import Path

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


PROC_HELPER = """\
import json, sys, time
aliases, domains = json.loads(sys.argv[1])
for line in sys.stdin:
    if line.rstrip("\\n") == "config|ready":
        break
print("register|alias")
print("register|domain")
print("register|ready", flush=True)
for line in sys.stdin:
    fields = line.rstrip("\\n").split("|", 7)
    op, service, rid, key = fields[4], fields[5], fields[6], fields[7]
    time.sleep(0.002)
    data = aliases if service == "alias" else {d: d for d in domains}
    if key in data:
        print(f"{op}-result|{rid}|found" + ("" if op == "check" else "|" + data[key]), flush=True)
    else:
        print(f"{op}-result|{rid}|not-found", flush=True)
"""


def write_proc_helper(directory: Path) -> Path:
    """A table-proc helper; its argument is JSON ``[aliases, domains]``."""
    path = directory / "table-test"
    path.write_text(f"#!{sys.executable}\n{PROC_HELPER}")
    path.chmod(0o755)
    return path
