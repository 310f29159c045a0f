"""A relay session's smtp-out reports handed to its filters (mta.filters.outbound),
with fake sinks: stamped, encoded per sink, only what each registered, never
waiting on one, link-connect waiting for the remote's name."""

from __future__ import annotations

import ipaddress
import logging
from typing import cast

import pytest
import trio

from mta.config.model import Config
from mta.filters.events import LinkAuth, ProtocolClient, TxBegin
from mta.filters.host import FilterHost
from mta.filters.outbound import HOLD_MAX, SessionReports, reports_for, socket_addresses
from mta.filters.process import FilterProcess
from mta.filters.protocol import AuthResult, InetAddress, ProtocolVersion, ReportEvent, Subsystem

SESSION = 0x7EAD973648C5D995
SRC = InetAddress(ipaddress.ip_address("127.0.0.1"), 40514)
DEST = InetAddress(ipaddress.ip_address("127.0.0.1"), 2526)
SRC_TEXT = "127.0.0.1:40514"
V6 = InetAddress(ipaddress.ip_address("::1"), 25)
NS = 1_796_670_097_207_659_000


class Sink:
    """A filter process as the reports see it."""

    def __init__(
        self,
        name: str = "f",
        version: ProtocolVersion = ProtocolVersion.V0_7,
        events: frozenset[ReportEvent] = frozenset(ReportEvent),
        subsystem: Subsystem = Subsystem.SMTP_OUT,
        full: bool = False,
    ) -> None:
        self.name = name
        self.version = version
        self.events = events
        self.subsystem = subsystem
        self.full = full
        self.lines: list[str] = []

    def wants_report(self, subsystem: Subsystem, event: ReportEvent) -> bool:
        return subsystem is self.subsystem and event in self.events

    def post(self, line: bytes) -> bool:
        if self.full:
            return False
        self.lines.append(line.decode())
        return True


def clock() -> int:
    return NS


async def test_each_sink_gets_what_it_registered_in_its_version() -> None:
    old = Sink("old", ProtocolVersion.V0_6)
    few = Sink("few", events=frozenset({ReportEvent.LINK_AUTH}))
    inbound = Sink("in", subsystem=Subsystem.SMTP_IN)
    reports = SessionReports(SESSION, [old, few, inbound], clock=clock)
    reports.connected(SRC, DEST)
    reports.report(LinkAuth("alice", AuthResult.PASS))
    reports.report(TxBegin(0x0DFE6982))
    reports.disconnected()
    head = "report|0.6|1796670097.207659|smtp-out"
    assert old.lines == [
        f"{head}|link-connect|7ead973648c5d995|127.0.0.1|pass|127.0.0.1:40514|127.0.0.1:2526\n",
        f"{head}|link-auth|7ead973648c5d995|alice|pass\n",
        f"{head}|tx-begin|7ead973648c5d995|0dfe6982\n",
        f"{head}|link-disconnect|7ead973648c5d995\n",
    ]
    assert few.lines == [
        "report|0.7|1796670097.207659|smtp-out|link-auth|7ead973648c5d995|pass|alice\n"
    ]
    assert inbound.lines == []


async def test_link_connect_waits_for_the_remote_s_name_and_the_rest_waits_behind_it() -> None:
    sink = Sink()
    asked: list[str] = []
    answer = trio.Event()

    async def lookup(ip: str) -> str | None:
        asked.append(ip)
        await answer.wait()
        return "mx.far.test"

    reports = SessionReports(SESSION, [sink], lookup=lookup, clock=clock)
    reports.connected(SRC, V6)
    reports.report(ProtocolClient("EHLO me"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reports.run)
        await trio.testing.wait_all_tasks_blocked()
        assert asked == ["::1"]
        assert sink.lines == []
        answer.set()
    assert [line.split("|")[4:] for line in sink.lines] == [
        [
            "link-connect",
            "7ead973648c5d995",
            "mx.far.test",
            "pass",
            "127.0.0.1:40514",
            "[::1]:25\n",
        ],
        ["protocol-client", "7ead973648c5d995", "EHLO me\n"],
    ]
    reports.report(ProtocolClient("QUIT"))  # no longer held
    assert sink.lines[-1].endswith("|protocol-client|7ead973648c5d995|QUIT\n")


async def test_without_a_name_the_address_stands_for_it() -> None:
    sink = Sink()

    async def lookup(ip: str) -> str | None:
        return None

    reports = SessionReports(SESSION, [sink], lookup=lookup, clock=clock)
    reports.connected(SRC, DEST)
    await reports.run()
    assert sink.lines[0].split("|")[6] == "127.0.0.1"


async def test_a_session_that_ends_first_does_not_wait_for_the_name() -> None:
    sink = Sink()

    async def lookup(ip: str) -> str | None:
        await trio.sleep_forever()
        raise AssertionError("not reached")

    reports = SessionReports(SESSION, [sink], lookup=lookup, clock=clock)
    reports.connected(SRC, DEST)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reports.run)
            await trio.testing.wait_all_tasks_blocked()
            reports.report(ProtocolClient("QUIT"))
            reports.disconnected()
    assert [line.split("|")[4] for line in sink.lines] == [
        "link-connect",
        "protocol-client",
        "link-disconnect",
    ]
    assert sink.lines[0].split("|")[6] == "127.0.0.1"
    reports.report(ProtocolClient("late"))
    assert len(sink.lines) == 3


async def test_a_lookup_that_fails_is_no_name() -> None:
    sink = Sink()

    async def lookup(ip: str) -> str | None:
        raise OSError("resolver broken")

    reports = SessionReports(SESSION, [sink], lookup=lookup, clock=clock)
    reports.connected(SRC, DEST)
    await reports.run()
    assert sink.lines[0].split("|")[6] == "127.0.0.1"


def test_what_waits_for_the_name_is_bounded() -> None:
    sink = Sink()

    async def lookup(ip: str) -> str | None:
        raise AssertionError("never run")

    reports = SessionReports(SESSION, [sink], lookup=lookup, clock=clock)
    reports.connected(SRC, DEST)
    for _ in range(HOLD_MAX):
        reports.report(ProtocolClient("NOOP"))
    assert sink.lines == []
    reports.report(ProtocolClient("NOOP"))
    assert len(sink.lines) == HOLD_MAX + 2  # link-connect, then all of them


def test_a_sink_that_cannot_take_a_line_is_noted_once_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mta.mta")
    stuck, fine = Sink("stuck", full=True), Sink("fine")
    reports = SessionReports(SESSION, [stuck, fine], clock=clock)
    reports.connected(SRC, DEST)
    reports.report(ProtocolClient("EHLO me"))
    reports.disconnected()
    assert len(fine.lines) == 3
    notes = [r for r in caplog.records if "report not sent" in r.getMessage()]
    assert len(notes) == 1
    assert notes[0].levelno == logging.DEBUG
    assert "filter stuck" in notes[0].getMessage()


class Host(FilterHost):
    """A host whose running processes are fake sinks."""

    def __init__(self, running: dict[str, Sink]) -> None:
        super().__init__(Config(), admd="vm")
        self.running = running

    def get(self, proc: str) -> FilterProcess | None:
        return cast(FilterProcess | None, self.running.get(proc))


def test_reports_go_to_the_running_processes_of_the_action_s_procs() -> None:
    a, b, other = Sink("a"), Sink("b"), Sink("other")
    host = Host({"a": a, "other": other})  # b is down
    assert reports_for(None, ("a",)) is None
    assert reports_for(host, ()) is None
    make = reports_for(host, ("a", "b"))
    assert make is not None
    made = make(SESSION)
    assert made.session == SESSION
    assert made.sinks == (a,)
    made.connected(SRC, DEST)
    assert len(a.lines) == 1 and not b.lines and not other.lines


async def test_socket_addresses_are_ours_then_the_remote_s() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
        async with client, server:
            found = socket_addresses(client)
            assert found is not None
            ours, theirs = found
            assert theirs == InetAddress(ipaddress.ip_address("127.0.0.1"), port)
            assert isinstance(ours, InetAddress) and ours.port != port
    a, _b = trio.testing.memory_stream_pair()
    assert socket_addresses(a) is None
