"""Sessions per client address: what a client counts as, its limits, the
knob, and refusal lines at most once a minute per address."""

from __future__ import annotations

import logging

import pytest

from mta.server.peers import (
    DEFAULT_LIMIT,
    REPEAT,
    ClientLimit,
    client_key,
    limit_from_env,
    too_many,
)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        (("192.0.2.7", 40000), ("192.0.2.7", False)),
        (("127.0.0.1", 40000), ("127.0.0.1", True)),
        (("127.1.2.3", 40000), ("127.1.2.3", True)),
        (("::1", 40000, 0, 0), ("::1", True)),
        (("2001:db8:1:2:aaaa::1", 25, 0, 0), ("2001:db8:1:2::/64", False)),
        (("2001:db8:1:2:bbbb::9", 25, 0, 0), ("2001:db8:1:2::/64", False)),
        (("2001:db8:1:3::1", 25, 0, 0), ("2001:db8:1:3::/64", False)),
        (("fe80::1%eth0", 25, 0, 2), ("fe80::/64", False)),
        (("::ffff:198.51.100.1", 25, 0, 0), ("198.51.100.1", False)),
        (("::ffff:127.0.0.1", 25, 0, 0), ("127.0.0.1", True)),
        ("", None),  # a Unix socket
        ("/spool/enqueue.sock", None),
    ],
)
def test_what_a_client_counts_as(address: object, key: tuple[str, bool] | None) -> None:
    assert client_key(address) == key


def test_limits_by_default_and_by_the_knob() -> None:
    big = ClientLimit(489)  # 1,024 descriptors
    assert (big.remote, big.loopback) == (DEFAULT_LIMIT, 244)
    small = ClientLimit(9)
    assert (small.remote, small.loopback) == (4, 4)  # never more than half the cap
    assert (ClientLimit(1).remote, ClientLimit(1).loopback) == (1, 1)
    assert (ClientLimit(489, 3).remote, ClientLimit(489, 3).loopback) == (3, 3)
    assert (ClientLimit(489, 0).remote, ClientLimit(489, 0).loopback) == (0, 0)


def test_the_knob_is_checked() -> None:
    assert limit_from_env({}) is None
    assert limit_from_env({"MTA_MAX_CONN_PER_CLIENT": "20"}) == 20
    assert limit_from_env({"MTA_MAX_CONN_PER_CLIENT": "0"}) == 0
    for bad in ("-1", "ten", "1.5", "2 3"):
        with pytest.raises(ValueError, match="MTA_MAX_CONN_PER_CLIENT must be a whole number"):
            limit_from_env({"MTA_MAX_CONN_PER_CLIENT": bad})


def test_enter_and_leave() -> None:
    limit = ClientLimit(100, 2)
    assert limit.enter("192.0.2.1", False) and limit.enter("192.0.2.1", False)
    assert not limit.enter("192.0.2.1", False)  # a third is refused, and not counted
    assert limit.enter("192.0.2.2", False)  # others are not concerned
    assert limit.count("192.0.2.1") == 2 and len(limit) == 2
    assert limit.busiest() == "192.0.2.1 holds 2"
    limit.leave("192.0.2.1")
    assert limit.enter("192.0.2.1", False)
    for key in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
        limit.leave(key)
    assert len(limit) == 0 and limit.busiest() == ""


def test_loopback_gets_half_the_cap() -> None:
    limit = ClientLimit(10)
    assert all(limit.enter("127.0.0.1", True) for _ in range(5))
    assert not limit.enter("127.0.0.1", True)


def test_no_limit() -> None:
    limit = ClientLimit(4, 0)
    assert all(limit.enter("192.0.2.1", False) for _ in range(100))


def test_refusals_are_logged_once_a_minute_per_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtpd")
    limit = ClientLimit(100, 2)
    for n in range(10):
        limit.refused("192.0.2.1", False, 1000.0 + n)
    limit.refused("192.0.2.9", False, 1005.0)
    limit.flush(1030.0)  # not a minute yet: nothing more
    assert [r.getMessage() for r in caplog.records] == [
        "smtp: too many connections from 192.0.2.1 (2 sessions, the most one client may hold):"
        " refused with 421",
        "smtp: too many connections from 192.0.2.9 (2 sessions, the most one client may hold):"
        " refused with 421",
    ]
    caplog.clear()
    limit.flush(1000.0 + REPEAT)
    assert [r.getMessage() for r in caplog.records] == [
        "smtp: too many connections from 192.0.2.1: 9 more refused in the last 60 s"
    ]
    caplog.clear()
    limit.flush(1000.0 + 3 * REPEAT)  # nothing left unsaid: forgotten
    assert caplog.records == []
    limit.refused("192.0.2.1", False, 1000.0 + 3 * REPEAT)
    assert "refused with 421" in caplog.text  # logged at once again


def test_the_reply() -> None:
    reply = too_many("mx.example.org")
    assert reply.encode() == (
        b"421 4.7.0 mx.example.org Too many connections from your address, try again later\r\n"
    )
    assert reply.close
