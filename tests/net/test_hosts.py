"""Tests for mta.net.hosts: the hosts-file parser (sans-IO), the file on disk
reread when it changes, and the ``MTA_HOSTS`` setting."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from mta.net.hosts import HOSTS_FILE, Hosts, HostsFile, hosts_path, normal_address, parse_hosts

DEBIAN = """\
127.0.0.1\tlocalhost
127.0.1.1\tmail.example.org mail

# The following lines are desirable for IPv6 capable hosts
::1     localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
"""


def test_debian_hosts_file() -> None:
    hosts = parse_hosts(DEBIAN)
    assert hosts.name_of("127.0.0.1") == "localhost"
    assert hosts.name_of("::1") == "localhost"
    assert hosts.name_of("127.0.1.1") == "mail.example.org"
    assert hosts.name_of("ff02::1") == "ip6-allnodes"
    assert hosts.addresses_of("localhost") == ("127.0.0.1", "::1")
    assert hosts.addresses_of("localhost", 4) == ("127.0.0.1",)
    assert hosts.addresses_of("localhost", 6) == ("::1",)
    assert hosts.addresses_of("mail") == ("127.0.1.1",)
    assert hosts.addresses_of("ip6-loopback") == ("::1",)
    assert hosts.name_of("192.0.2.1") is None
    assert hosts.addresses_of("example.org") == ()


def test_first_line_of_an_address_names_it() -> None:
    # this machine's /etc/hosts: three lines for 127.0.0.1
    hosts = parse_hosts("127.0.0.1 localhost\n127.0.0.1 runsc\n127.0.0.1 vm\n")
    assert hosts.name_of("127.0.0.1") == "localhost"
    assert hosts.addresses_of("vm") == ("127.0.0.1",)
    assert hosts.addresses_of("runsc") == ("127.0.0.1",)


def test_a_name_on_several_lines_has_every_address_once() -> None:
    hosts = parse_hosts(
        "192.0.2.1 multi.example.org\n"
        "2001:db8::1 other multi.example.org\n"
        "192.0.2.2 MULTI.example.org\n"
        "192.0.2.1 multi.example.org\n"
    )
    assert hosts.addresses_of("multi.example.org") == ("192.0.2.1", "2001:db8::1", "192.0.2.2")
    assert hosts.addresses_of("Multi.Example.ORG.") == hosts.addresses_of("multi.example.org")
    assert hosts.addresses_of("multi.example.org", 6) == ("2001:db8::1",)
    assert hosts.name_of("2001:db8::1") == "other"
    assert hosts.name_of("192.0.2.2") == "MULTI.example.org"  # as written


def test_comments_blank_and_malformed_lines_are_ignored() -> None:
    hosts = parse_hosts(
        "# a comment\n"
        "\n"
        "   \t  \n"
        "192.0.2.1\n"  # no name
        "192.0.2.300 badaddress\n"
        "not-an-address name\n"
        "[192.0.2.3] bracketed\n"
        "fe80::1%eth0 scoped\n"
        "192.0.2.4 four # the comment ends the names: not-a-name\n"
        "192.0.2.5#glued\n"
        "#192.0.2.6 commented\n"
        "192.0.2.7\tseven\t\tseven-alias  \r\n"
    )
    assert hosts.names == {"192.0.2.4": "four", "192.0.2.7": "seven"}
    assert hosts.addresses_of("not-a-name") == ()
    assert hosts.addresses_of("seven-alias") == ("192.0.2.7",)
    assert hosts.name_of("192.0.2.1") is None


def test_ipv4_mapped_addresses_stand_for_ipv4() -> None:
    hosts = parse_hosts("::ffff:192.0.2.8 mapped\n192.0.2.9 plain\n")
    assert hosts.name_of("192.0.2.8") == "mapped"
    assert hosts.name_of("::ffff:192.0.2.9") == "plain"
    assert hosts.name_of("[::ffff:192.0.2.9]") == "plain"
    assert hosts.addresses_of("mapped") == ("192.0.2.8",)
    assert hosts.addresses_of("mapped", 4) == ("192.0.2.8",)


def test_ipv6_addresses_are_compared_as_addresses() -> None:
    hosts = parse_hosts("2001:DB8:0:0::25 v6\n")
    assert hosts.name_of("2001:db8::25") == "v6"
    assert hosts.addresses_of("v6") == ("2001:db8::25",)


def test_normal_address() -> None:
    assert str(normal_address("[::ffff:127.0.0.1]")) == "127.0.0.1"
    assert str(normal_address("::1")) == "::1"
    assert normal_address("local") is None
    assert normal_address("fe80::1%lo") is None


def test_hosts_path_from_the_environment() -> None:
    assert hosts_path({}) == HOSTS_FILE == "/etc/hosts"
    assert hosts_path({"MTA_HOSTS": "/tmp/lab/hosts"}) == "/tmp/lab/hosts"
    assert hosts_path({"MTA_HOSTS": "none"}) is None
    assert hosts_path({"MTA_HOSTS": " NONE "}) is None
    assert hosts_path({"MTA_HOSTS": ""}) is None
    assert HostsFile.from_env({"MTA_HOSTS": "none"}) is None
    found = HostsFile.from_env({"MTA_HOSTS": "/tmp/lab/hosts"})
    assert found is not None and found.path == "/tmp/lab/hosts"


def _touch_later(path: Path) -> None:
    """Move the mtime on, for file systems whose clock is coarse."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_the_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost\n")
    table = HostsFile(str(path))
    first = table.load()
    assert first.name_of("127.0.0.1") == "localhost"
    assert table.load() is first  # unchanged: not parsed again
    path.write_text("127.0.0.1 renamed\n")
    _touch_later(path)
    assert table.load().name_of("127.0.0.1") == "renamed"
    path.unlink()
    assert table.load() == Hosts()  # gone: empty, without a warning
    path.write_text("127.0.0.1 back\n")
    assert table.load().name_of("127.0.0.1") == "back"


def test_a_missing_file_is_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = HostsFile(str(tmp_path / "nosuch"))
    with caplog.at_level(logging.DEBUG, "mta"):
        assert table.load() == Hosts()
    assert caplog.records == []


def test_an_unreadable_file_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hosts"
    path.mkdir()  # unreadable as a file, even by root
    table = HostsFile(str(path))
    with caplog.at_level(logging.WARNING, "mta"):
        for _ in range(3):
            assert table.load() == Hosts()
    assert [r.getMessage() for r in caplog.records] == [f"dns: cannot read {path}: Is a directory"]
    path.rmdir()
    path.write_text("127.0.0.1 localhost\n")
    assert table.load().name_of("127.0.0.1") == "localhost"


async def test_current_rereads_in_a_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hosts"
    path.write_text("192.0.2.1 one\n")
    table = HostsFile(str(path))
    assert (await table.current()).name_of("192.0.2.1") == "one"
    path.write_text("192.0.2.1 two\n")
    _touch_later(path)
    reads = 0
    original = trio.to_thread.run_sync

    async def counting(function: Callable[[], Hosts]) -> Hosts:
        nonlocal reads
        reads += 1
        return await original(function)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting)
    assert (await table.current()).name_of("192.0.2.1") == "two"
    assert (await table.current()).name_of("192.0.2.1") == "two"
    assert reads == 1  # read once, when it changed, in a worker thread
