"""Tests for mta.tables.proc (the sans-IO codec) and mta.tables.proctable (the
driver), with a fake helper written in Python."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mta.errors import TableError
from mta.tables import open_table
from mta.tables.proc import Operation, ProcCodec, Reply, ReplyStatus
from mta.tables.services import Service, TableType

HELPER = """\
import sys
data = {"alias": {"bob": "robert, bob@example.org"}, "source": ["192.0.2.1", "192.0.2.2"]}
assert sys.argv[1:] == ["/etc/fake.conf"], sys.argv
config = {}
for line in sys.stdin:
    line = line.rstrip("\\n")
    if line == "config|ready":
        break
    config[line.split("|")[1]] = line.split("|", 2)[2]
assert config["protocol"] == "0.1"
print("register|alias")
print("register|source")
print("register|ready", flush=True)
turn = 0
for line in sys.stdin:
    fields = line.rstrip("\\n").split("|", 7)
    op = fields[4]
    if op == "update":
        print(f"update-result|{fields[5]}|ok", flush=True)
        continue
    service, rid = fields[5], fields[6]
    if op == "fetch":
        value = data[service][turn % 2]
        turn += 1
        print(f"fetch-result|{rid}|found|{value}", flush=True)
        continue
    key = fields[7]
    if key == "boom":
        print(f"{op}-result|{rid}|error|database down", flush=True)
    elif key == "garbage":
        print("nonsense", flush=True)
    elif key in data.get(service, {}):
        extra = "" if op == "check" else "|" + data[service][key]
        print(f"{op}-result|{rid}|found{extra}", flush=True)
    else:
        print(f"{op}-result|{rid}|not-found", flush=True)
"""


def codec() -> ProcCodec:
    c = ProcCodec("devs")
    c.receive_register("register|alias\n")
    assert c.receive_register("register|ready")
    return c


def test_handshake_bytes() -> None:
    assert ProcCodec("devs", "7.8.0").handshake() == (
        b"config|smtpd-version|7.8.0\nconfig|protocol|0.1\nconfig|tablename|devs\nconfig|ready\n"
    )


def test_handshake_errors() -> None:
    with pytest.raises(TableError):
        ProcCodec("devs").receive_register("hello")
    with pytest.raises(TableError):
        ProcCodec("devs").receive_register("register|ready")
    with pytest.raises(TableError):
        ProcCodec("devs").receive_register("register|bogus")
    with pytest.raises(TableError):
        ProcCodec("a|b")


def test_request_encoding_and_replies() -> None:
    c = codec()
    assert c.services == Service.ALIAS
    line = c.request(
        Operation.LOOKUP, Service.ALIAS, "op|x", timestamp=1713795082.354255, request_id="b72508d"
    )
    assert line == b"table|0.1|1713795082.354255|devs|lookup|alias|b72508d|op|x\n"
    assert c.receive_result("lookup-result|b72508d|found|a|b") == Reply(ReplyStatus.FOUND, "a|b")
    c.request(Operation.CHECK, Service.ALIAS, "k", timestamp=0, request_id="1")
    assert c.receive_result("check-result|1|found").status is ReplyStatus.FOUND
    c.request(Operation.UPDATE, timestamp=0, request_id="2")
    assert c.receive_result("update-result|2|ok") == Reply(ReplyStatus.OK)
    c.request(Operation.FETCH, Service.SOURCE, timestamp=0, request_id="3")
    assert c.receive_result("fetch-result|3|not-found").status is ReplyStatus.NOT_FOUND
    c.request(Operation.LOOKUP, Service.ALIAS, "k", timestamp=0, request_id="4")
    assert c.receive_result("lookup-result|4|error|down") == Reply(ReplyStatus.ERROR, "down")


def test_reply_errors() -> None:
    c = codec()
    with pytest.raises(TableError):
        c.receive_result("lookup-result|x|found|v")
    c.request(Operation.LOOKUP, Service.ALIAS, "k", timestamp=0, request_id="5")
    with pytest.raises(TableError):
        c.receive_result("lookup-result|6|found|v")
    c.request(Operation.LOOKUP, Service.ALIAS, "k", timestamp=0, request_id="7")
    with pytest.raises(TableError):
        c.receive_result("lookup-result|7|found|")
    with pytest.raises(TableError):
        c.request(Operation.LOOKUP, Service.ALIAS, "a\nb", timestamp=0)


@pytest.fixture
def helper_dir(tmp_path: Path) -> Path:
    helper = tmp_path / "table-fake"
    helper.write_text(f"#!{sys.executable}\n{HELPER}")
    helper.chmod(0o755)
    return tmp_path


def test_driver(helper_dir: Path) -> None:
    table = open_table("devs", "fake", "/etc/fake.conf", helper_dirs=(str(helper_dir),))
    try:
        assert table.type is TableType.DYNAMIC
        assert table.lookup(Service.ALIAS, "BOB") == "robert, bob@example.org"
        assert table.services == Service.ALIAS | Service.SOURCE
        assert table.match(Service.ALIAS, "bob")
        assert not table.match(Service.ALIAS, "carol")
        assert table.fetch(Service.SOURCE) == "192.0.2.1"
        assert table.fetch(Service.SOURCE) == "192.0.2.2"
        table.reload()
        with pytest.raises(TableError, match="database down"):
            table.lookup(Service.ALIAS, "boom")
        with pytest.raises(TableError, match="does not provide"):
            table.lookup(Service.USERINFO, "bob")
        with pytest.raises(TableError, match="parse reply"):
            table.lookup(Service.ALIAS, "garbage")
        assert table.lookup(Service.ALIAS, "bob") is not None
    finally:
        table.close()


def test_unknown_backend() -> None:
    with pytest.raises(TableError, match="backend nosuch does not exist"):
        open_table("t", "nosuch", "/x", helper_dirs=())
