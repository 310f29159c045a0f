"""The relay inventory: hosts, relays and hoststats (``mta max-deferred``) as
OpenSMTPD's mta.c keeps them, bounded."""

from __future__ import annotations

import pytest

from mta.config.model import InlineTable, NamedTable, Relay
from mta.relay.client import ClientConfig, TlsPolicy
from mta.relay.inventory import (
    HostStatView,
    HostView,
    RelayInventory,
    RelayKey,
    RelayView,
    Wait,
    relay_key,
)
from mta.relay.plan import Plan
from mta.relay.tlsclient import ClientTls
from mta.tables.relayhost import parse_relay_url
from tests.relay.inventorykit import MX, SMART, T0, Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def inventory(clock: Clock) -> RelayInventory:
    return RelayInventory(max_deferred=3, clock=clock)


# -- relay keys -----------------------------------------------------------------


def test_relay_text_is_opensmtpds_mta_relay_to_text() -> None:
    assert MX.text == str(MX) == "[relay:example.org,smtp]"
    assert SMART.text == "[relay:smart.example.net,port=587,smtp+tls,auth=secrets:bob,mx]"
    every = RelayKey(
        "example.org",
        tls="smtp+notls",
        pki="mx",
        backup="mx2.example.org",
        source_table="sources",
        helo_table="helos",
        helo="out.example.org",
    )
    assert every.text == (
        "[relay:example.org,smtp+notls,pki_name=mx,backup=mx2.example.org,"
        "sourcetable=sources,helotable=helos,heloname=out.example.org]"
    )


def _plan(url: str | None, tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC, lmtp: bool = False) -> Plan:
    smarthost = parse_relay_url(url) if url is not None else None
    return Plan(
        domain="example.org",
        smarthost=smarthost,
        port=smarthost.port if smarthost is not None else 25,
        client=ClientConfig(helo="out.example.org", tls=tls, lmtp=lmtp),
        tls=ClientTls(),
        sender="alice@example.com",
        backup_name="mx.example.com" if url is None else None,
    )


def test_relay_key_from_a_plan_and_its_action() -> None:
    assert relay_key(_plan(None)) == RelayKey("example.org", backup="mx.example.com")
    action = Relay(
        host=NamedTable("hosts"),
        auth=NamedTable("secrets"),
        src=InlineTable((("192.0.2.1", None),)),
        helo_src=InlineTable((("192.0.2.1", "a.example"), ("192.0.2.2", "b.example"))),
        helo="out.example.org",
        pki="out",
    )
    key = relay_key(_plan("smtp+tls://bob@smart.example.net:587", TlsPolicy.REQUIRED), action)
    assert key.text == (
        "[relay:smart.example.net,port=587,smtp+tls,auth=secrets:bob,pki_name=out,mx,"
        "sourcetable=192.0.2.1,helotable={192.0.2.1,192.0.2.2},heloname=out.example.org]"
    )
    lmtp = relay_key(_plan("lmtp://127.0.0.1:24", TlsPolicy.NONE, lmtp=True))
    assert lmtp.text == "[relay:127.0.0.1,port=24,lmtp,mx]"
    assert relay_key(_plan("smtps://smart.example.net", TlsPolicy.SMTPS)).tls == "smtps"
    assert relay_key(_plan("smtp+notls://smart.example.net", TlsPolicy.NONE)).tls == "smtp+notls"


# -- hosts and relays -------------------------------------------------------------


def test_sessions_are_counted_per_host_and_per_relay(
    inventory: RelayInventory, clock: Clock
) -> None:
    assert inventory.hosts() == [] and inventory.relays() == []
    inventory.connecting(MX, "192.0.2.7", "mx1.example.org")
    clock.now += 5
    inventory.connecting(MX, "192.0.2.7", "mx1.example.org")
    inventory.connecting(SMART, "2001:db8::1", "smart.example.net")
    inventory.connecting(MX, "192.0.2.10", "mx2.example.org")
    assert inventory.hosts() == [
        HostView("192.0.2.7", "mx1.example.org", 2, 2, T0 + 5),
        HostView("192.0.2.10", "mx2.example.org", 1, 1, T0 + 5),  # numeric order
        HostView("2001:db8::1", "smart.example.net", 1, 1, T0 + 5),  # IPv6 after IPv4
    ]
    inventory.closed(MX, "192.0.2.7")
    inventory.closed(MX, "192.0.2.7")
    assert inventory.hosts()[0] == HostView("192.0.2.7", "mx1.example.org", 0, 0, T0 + 5)
    assert [(v.relay, v.nconn, v.lastconn) for v in inventory.relays()] == [
        (MX, 1, T0 + 5),  # "[relay:example.org..." sorts before "[relay:smart..."
        (SMART, 1, T0 + 5),
    ]
    for _ in range(3):  # more than were opened: never below zero
        inventory.closed(MX, "192.0.2.7")
    inventory.closed(RelayKey("unknown.example"), "198.51.100.1")  # unknown: ignored
    assert [(h.address, h.nconn) for h in inventory.hosts()] == [
        ("192.0.2.7", 0),
        ("192.0.2.10", 1),
        ("2001:db8::1", 1),
    ]
    assert [(v.relay, v.nconn) for v in inventory.relays()] == [(MX, 0), (SMART, 1)]


def test_tasks_and_waits_are_counted_per_relay(inventory: RelayInventory) -> None:
    with inventory.task(MX):
        inventory.task_started(MX)
        with inventory.waiting(MX, Wait.LIMITS), inventory.waiting(MX, Wait.MX):
            inventory.wait_started(MX, Wait.MX)
            assert inventory.relays() == [
                RelayView(MX, 2, 2, 0, None, (Wait.MX, Wait.LIMITS))  # OpenSMTPD's order
            ]
            inventory.wait_done(MX, Wait.MX)
            assert inventory.relays()[0].wait == (Wait.MX, Wait.LIMITS)  # one still waits
        assert inventory.relays()[0].wait == ()
        inventory.task_done(MX)
        with inventory.session(MX, "192.0.2.7", "mx.example.org"):
            [view] = inventory.relays()
            assert (view.refcount, view.ntask, view.nconn, view.text) == (
                2,
                1,
                1,
                "[relay:example.org,smtp]",
            )
    assert inventory.relays() == [RelayView(MX, 0, 0, 0, T0, ())]
    inventory.task_done(MX)  # one too many
    inventory.wait_done(MX, Wait.SOURCE)
    assert inventory.relays() == [RelayView(MX, 0, 0, 0, T0, ())]


def test_the_context_managers_undo_on_errors(inventory: RelayInventory) -> None:
    with (
        pytest.raises(RuntimeError),
        inventory.task(MX),
        inventory.waiting(MX, Wait.MX),
        inventory.session(MX, "192.0.2.7", "mx.example.org"),
    ):
        raise RuntimeError
    assert inventory.relays() == [RelayView(MX, 0, 0, 0, T0, ())]
    assert inventory.hosts() == [HostView("192.0.2.7", "mx.example.org", 0, 0, T0)]


def test_a_host_takes_the_name_of_its_last_session(inventory: RelayInventory) -> None:
    inventory.connecting(MX, "192.0.2.7", "mx1.example.org")
    inventory.connecting(SMART, "192.0.2.7", "smart.example.net")
    assert [h.name for h in inventory.hosts()] == ["smart.example.net"]


def test_idle_records_expire_and_are_capped(clock: Clock) -> None:
    inventory = RelayInventory(clock=clock, idle_ttl=100, idle_max=2)
    busy = RelayKey("busy.example")
    inventory.connecting(busy, "192.0.2.1", "busy.example")  # stays open
    for n in range(2, 5):
        relay = RelayKey(f"r{n}.example")
        with inventory.session(relay, f"192.0.2.{n}", f"h{n}"):
            clock.now += 1
    # three went idle, two are kept: the longest idle is dropped first
    assert [h.address for h in inventory.hosts()] == ["192.0.2.1", "192.0.2.3", "192.0.2.4"]
    assert [r.relay.domain for r in inventory.relays()] == [
        "busy.example",
        "r3.example",
        "r4.example",
    ]
    # a record that is busy again is no longer idle
    inventory.task_started(RelayKey("r3.example"))
    inventory.connecting(RelayKey("r3.example"), "192.0.2.3", "h3")
    clock.now += 100
    assert [h.address for h in inventory.hosts()] == ["192.0.2.1", "192.0.2.3"]
    assert [r.relay.domain for r in inventory.relays()] == ["busy.example", "r3.example"]
    # busy records never go, however old
    clock.now += 10 * 86400
    assert len(inventory.hosts()) == 2 and len(inventory.relays()) == 2


def test_a_relay_that_only_waited_is_idle_afterwards(clock: Clock) -> None:
    inventory = RelayInventory(clock=clock, idle_ttl=10)
    with inventory.waiting(MX, Wait.MX):
        clock.now += 60
        assert len(inventory.relays()) == 1
    clock.now += 10
    assert inventory.relays() == []


# -- hoststats, max-deferred ----------------------------------------------------------


def test_update_records_the_last_result_by_lowercased_name(
    inventory: RelayInventory, clock: Clock
) -> None:
    inventory.update("Example.ORG", "421 4.3.0 try later")
    clock.now += 7
    inventory.update("example.org", "250 2.0.0 Ok")
    inventory.update("b.example", "x" * 5000)
    inventory.update("", "ignored")
    inventory.update("a" * 256, "ignored: longer than HOST_NAME_MAX")
    assert inventory.hoststats() == [
        HostStatView("b.example", T0 + 7, "x" * 2048, 0),
        HostStatView("example.org", T0 + 7, "250 2.0.0 Ok", 0),
    ]


def test_deferred_ids_are_kept_up_to_max_deferred_and_returned_on_success(
    inventory: RelayInventory,
) -> None:
    for evpid in (5, 3, 9):
        assert inventory.deferred("example.org", evpid, "Connection refused")
    # full: as OpenSMTPD's mta_hoststat_cache, the new one is not kept
    assert not inventory.deferred("Example.org", 1, "Connection refused")
    assert inventory.deferred("example.org", 3, "again")  # kept already
    assert inventory.hoststats() == [HostStatView("example.org", T0, "again", 3)]
    assert inventory.succeeded("other.example") == []
    assert inventory.succeeded("EXAMPLE.org") == [5, 3, 9]  # oldest first
    assert inventory.succeeded("example.org") == []  # forgotten once returned
    assert inventory.hoststats() == [HostStatView("example.org", T0, "again", 0)]
    assert inventory.deferred("example.org", 1, "refused")  # room again


def test_max_deferred_zero_keeps_nothing(clock: Clock) -> None:
    inventory = RelayInventory(max_deferred=0, clock=clock)
    assert not inventory.deferred("example.org", 1, "Connection refused")
    assert inventory.hoststats() == [HostStatView("example.org", T0, "Connection refused", 0)]
    assert inventory.succeeded("example.org") == []


def test_forget_drops_an_id(inventory: RelayInventory) -> None:
    for evpid in (1, 2, 3):
        inventory.deferred("example.org", evpid, "refused")
    inventory.forget(2)
    inventory.forget(2)
    inventory.forget(99)
    assert inventory.deferred("example.org", 4, "refused")  # 2 made room
    assert inventory.succeeded("example.org") == [1, 3, 4]


def test_an_id_deferred_under_another_name_moves(inventory: RelayInventory) -> None:
    inventory.deferred("a.example", 1, "refused")
    inventory.deferred("b.example", 1, "refused")
    assert inventory.succeeded("a.example") == []
    assert inventory.succeeded("b.example") == [1]


def test_hoststats_expire_four_hours_after_their_last_update(
    inventory: RelayInventory, clock: Clock
) -> None:
    inventory.deferred("a.example", 1, "refused")
    inventory.deferred("b.example", 2, "refused")
    clock.now += 4 * 3600 - 1
    inventory.update("b.example", "refused again")
    clock.now += 1
    assert [s.name for s in inventory.hoststats()] == ["b.example"]
    assert inventory.succeeded("a.example") == []  # gone with its entry
    inventory.forget(1)  # harmless
    assert inventory.succeeded("b.example") == [2]


def test_the_number_of_hoststats_is_capped(clock: Clock) -> None:
    inventory = RelayInventory(clock=clock, hoststat_max=2)
    inventory.deferred("a.example", 1, "refused")
    inventory.update("b.example", "refused")
    inventory.update("a.example", "refused")  # now b is the least recently updated
    inventory.update("c.example", "refused")
    assert [s.name for s in inventory.hoststats()] == ["a.example", "c.example"]
    assert inventory.succeeded("a.example") == [1]
