"""The daemon's side of ``mtactl show hosts|relays|hoststats``: smtpctl's lines
from the relay inventory."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from mta.cli import ctl
from mta.config.load import load_text
from mta.control.commands import Controller
from mta.delivery.result import Result
from mta.envelope import Envelope
from mta.errors import ControlError
from mta.relay.backoff import RouteBackoff
from mta.relay.inventory import RelayInventory, Wait
from mta.rules.tableset import TableSet
from mta.scheduler.runner import QueueRunner
from mta.server.listeners import SessionGate
from mta.spool.spool import Spool
from tests.envelopes import make_envelope
from tests.relay.inventorykit import MX, SMART, Clock

CONFIG = 'action "out" relay\nmatch from any for any action "out"\n'


async def _deliver(envelope: Envelope) -> Result:
    return Result.ok()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def inventory(clock: Clock) -> RelayInventory:
    return RelayInventory(clock=clock)


@pytest.fixture
async def parts(tmp_path: pathlib.Path) -> AsyncIterator[tuple[QueueRunner, Spool, TableSet]]:
    config = load_text(CONFIG, check_interfaces=False).config
    spool = await Spool.open(tmp_path / "spool")
    tables = TableSet.open(config, "mx.example.com", [])
    try:
        yield QueueRunner(config, spool, _deliver), spool, tables
    finally:
        tables.close()


def controller(
    parts: tuple[QueueRunner, Spool, TableSet], clock: Clock, inventory: RelayInventory | None
) -> Controller:
    runner, spool, tables = parts
    return Controller(
        runner,
        spool,
        SessionGate(4),
        tables,
        routes=RouteBackoff(),
        inventory=inventory,
        clock=clock,
    )


async def run(control: Controller, *argv: str) -> str:
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    await control.execute(list(argv), write)
    return out.decode("utf-8")


async def test_show_hosts(
    parts: tuple[QueueRunner, Spool, TableSet], clock: Clock, inventory: RelayInventory
) -> None:
    control = controller(parts, clock, inventory)
    assert await run(control, "show", "hosts") == ""
    inventory.connecting(MX, "192.0.2.10", "mx2.example.org")
    inventory.closed(MX, "192.0.2.10")
    clock.now += 65
    inventory.connecting(MX, "192.0.2.7", "mx1.example.org")
    inventory.connecting(MX, "192.0.2.7", "mx1.example.org")
    clock.now += 2
    assert await run(control, "show", "hosts") == (
        "192.0.2.7 mx1.example.org refcount=2 nconn=2 lastconn=2s\n"
        "192.0.2.10 mx2.example.org refcount=0 nconn=0 lastconn=1m7s\n"
    )


async def test_show_relays(
    parts: tuple[QueueRunner, Spool, TableSet], clock: Clock, inventory: RelayInventory
) -> None:
    control = controller(parts, clock, inventory)
    assert await run(control, "show", "relays") == ""
    inventory.task_started(MX)
    inventory.wait_started(MX, Wait.LIMITS)
    inventory.wait_started(MX, Wait.MX)
    inventory.task_started(SMART)
    inventory.connecting(SMART, "203.0.113.5", "smart.example.net")
    clock.now += 42
    assert await run(control, "show", "relays") == (
        "[relay:example.org,smtp] refcount=1 ntask=1 nconn=0 lastconn=- timeout=- wait=MX,limits\n"
        "[relay:smart.example.net,port=587,smtp+tls,auth=secrets:bob,mx] refcount=2 ntask=1"
        " nconn=1 lastconn=42s timeout=- wait=\n"
    )


async def test_show_hoststats(
    parts: tuple[QueueRunner, Spool, TableSet], clock: Clock, inventory: RelayInventory
) -> None:
    control = controller(parts, clock, inventory)
    assert await run(control, "show", "hoststats") == ""
    inventory.deferred("Example.ORG", 0x0123456789ABCDEF, "Connection refused")
    clock.now += 10.5
    inventory.update("a.example", "421 4.7.0 slow down\r\nnow")
    assert await run(control, "show", "hoststats") == (
        "a.example|1800000010|421 4.7.0 slow down\\r\\nnow\n"
        "example.org|1800000000|Connection refused\n"
    )


async def test_without_an_inventory_nothing_is_shown(
    parts: tuple[QueueRunner, Spool, TableSet], clock: Clock
) -> None:
    control = controller(parts, clock, None)
    for what in ("hosts", "relays", "hoststats"):
        assert await run(control, "show", what) == ""


async def test_show_hosts_takes_no_argument(
    parts: tuple[QueueRunner, Spool, TableSet], clock: Clock, inventory: RelayInventory
) -> None:
    control = controller(parts, clock, inventory)
    with pytest.raises(ControlError, match=r"usage: show .* \| hosts \| relays \| hoststats"):
        await run(control, "show", "hosts", "192.0.2.7")


def test_mtactl_knows_the_verbs(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    for what in ("hosts", "relays", "hoststats"):
        # accepted, then refused for want of a daemon (a wrong verb exits 2)
        assert ctl.main(["--spool", str(tmp_path), "show", what]) == 1
        assert "mta is not running on this spool" in capsys.readouterr().err


async def _queue(spool: Spool, *rcpts: str) -> list[Envelope]:
    """A message committed to the spool behind the scheduler's back (put back by hand)."""
    txn = await spool.begin()
    (await txn.open_message()).write(b"Subject: back\r\n\r\nagain\r\n")
    return await txn.commit([make_envelope(rcpt) for rcpt in rcpts])


async def test_discover_reads_only_the_message_named(
    parts: tuple[QueueRunner, Spool, TableSet],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, spool, _ = parts
    control = controller(parts, clock, None)
    first = await _queue(spool, "a@example.net", "b@example.net")
    second = await _queue(spool, "c@example.net")

    def whole_queue() -> None:
        raise AssertionError("discover read the whole queue")

    monkeypatch.setattr(spool.store, "iter_envelopes", whole_queue)
    assert await run(control, "discover", f"{first[1].id:016x}") == "1 envelope(s) discovered\n"
    assert first[1].id in runner.scheduler and first[0].id not in runner.scheduler
    # the message: its envelopes the scheduler does not know yet
    assert await run(control, "discover", f"{first[0].msgid:08x}") == "1 envelope(s) discovered\n"
    assert await run(control, "discover", f"{second[0].msgid:08x}") == "1 envelope(s) discovered\n"
    assert all(e.id in runner.scheduler for e in [*first, *second])
    assert await run(control, "discover", f"{first[0].msgid:08x}") == "0 envelope(s) discovered\n"
    assert await run(control, "discover", "0badc0de") == "0 envelope(s) discovered\n"
    with pytest.raises(ControlError, match="needs a message or envelope id"):
        await run(control, "discover", "all")
