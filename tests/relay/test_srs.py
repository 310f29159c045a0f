"""SRS as OpenSMTPD's srs.c writes and reads it."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.relay.srs import (
    BASE32,
    MAX_ADDRESS,
    relay_sender,
    srs_decode,
    srs_encode,
    srs_timestamp,
)

KEY = "secret"
DAY = 86400
NOW = 20000 * DAY + 3600  # day 20000: 20000 % 1024 = 544 = "RA"


def hhhh(key: str, rest: str) -> str:
    """The formula, spelled out: first 4 chars of URL-safe base64(SHA1(key || rest))."""
    return base64.urlsafe_b64encode(hashlib.sha1((key + rest).encode()).digest()).decode()[:4]


def test_srs0_layout() -> None:
    assert srs_timestamp(NOW) == 544 and BASE32[544 >> 5] + BASE32[544 & 31] == "RA"
    rest = "RA=example.org=alice@rcpt.test"
    assert (
        srs_encode("alice@example.org", "rcpt.test", KEY, NOW) == f"SRS0={hhhh(KEY, rest)}={rest}"
    )


def test_srs1_from_srs0_and_srs1_chain() -> None:
    srs0 = srs_encode("alice@example.org", "hop1.test", KEY, NOW)
    assert srs0.startswith("SRS0=") and srs0.endswith("@hop1.test")
    srs1 = srs_encode(srs0, "hop2.test", "other key", NOW)
    local0 = srs0.rpartition("@")[0]
    rest = f"hop1.test=={local0[5:]}@hop2.test"  # the SRS0 local part after "SRS0="
    assert srs1 == f"SRS1={hhhh('other key', rest)}={rest}"
    # forwarded again: the chain stays, only the hash changes
    again = srs_encode(srs1, "hop3.test", "third", NOW)
    tail = srs1.rpartition("@")[0][10:] + "@hop3.test"
    assert again == f"SRS1={hhhh('third', tail)}={tail}"
    assert srs_encode("srs0=" + srs0[5:], "hop2.test", "other key", NOW).startswith("SRS1=")


def test_decode_srs0_round_trip_with_key_rotation() -> None:
    address = srs_encode("alice@example.org", "rcpt.test", KEY, NOW)
    assert srs_decode(address, KEY, None, 4, NOW) == "alice@example.org"
    assert srs_decode(address, "new key", KEY, 4, NOW) == "alice@example.org"  # backup key
    assert srs_decode(address, "new key", None, 4, NOW) is None
    assert srs_decode("srs0=" + address[5:], KEY, None, 4, NOW) == "alice@example.org"


def test_decode_srs1_gives_the_previous_hops_srs0() -> None:
    srs0 = srs_encode("alice@example.org", "hop1.test", "key one", NOW)
    srs1 = srs_encode(srs0, "hop2.test", KEY, NOW)
    assert srs_decode(srs1, KEY, None, 4, NOW) == srs0
    assert srs_decode(srs0, "key one", None, 4, NOW) == "alice@example.org"


@pytest.mark.parametrize(
    ("days", "ok"), [(0, True), (-4, True), (-5, False), (1, True), (2, False), (-600, False)]
)
def test_srs0_days(days: int, ok: bool) -> None:
    address = srs_encode("alice@example.org", "rcpt.test", KEY, NOW)
    decoded = srs_decode(address, KEY, None, 4, NOW - days * DAY)
    assert (decoded == "alice@example.org") is ok


def test_days_wrap_around_1024() -> None:
    start = 1023 * DAY  # day 1023 ("77"); three days later the counter reads 2
    address = srs_encode("alice@example.org", "rcpt.test", KEY, start)
    assert srs_decode(address, KEY, None, 4, start + 3 * DAY) == "alice@example.org"
    assert srs_decode(address, KEY, None, 4, start + 5 * DAY) is None
    early = srs_encode("alice@example.org", "rcpt.test", KEY, 1024 * DAY)  # day 0
    assert srs_decode(early, KEY, None, 4, 1023 * DAY) == "alice@example.org"  # a day ahead


@pytest.mark.parametrize(
    "rcpt",
    [
        "bob@example.org",
        "SRS0=",
        "SRS0=abcd",
        "SRS0=AAAA=RA=example.org=alice@rcpt.test",  # wrong hash
        "SRS1=AAAA=hop.test==HHHH=RA=d=u@x",
    ],
)
def test_not_decodable(rcpt: str) -> None:
    assert srs_decode(rcpt, KEY, None, 4, NOW) is None


def test_tampering_is_detected() -> None:
    address = srs_encode("alice@example.org", "rcpt.test", KEY, NOW)
    assert srs_decode(address.replace("alice", "mallory"), KEY, None, 4, NOW) is None
    assert srs_decode(address.replace("=RA=", "=RB="), KEY, None, 4, NOW) is None


def test_too_long_is_left_alone() -> None:
    sender = "a" * 250 + "@" + "d" * 250
    assert srs_encode(sender, "rcpt.test", KEY, NOW) == sender
    assert srs_encode("x" * 300 + "@d", "rcpt.test", KEY, NOW) == "x" * 300 + "@d"
    assert srs_encode("SRS1=ab@d", "rcpt.test", KEY, NOW) == "SRS1=ab@d"  # no room for a hash


@given(
    st.from_regex(r"[a-z0-9.+_-]{1,40}", fullmatch=True),
    st.from_regex(r"[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True),
    st.integers(0, 3_000_000_000),
)
def test_round_trip(user: str, domain: str, now: int) -> None:
    sender = f"{user}@{domain}"
    address = srs_encode(sender, "fwd.test", KEY, now)
    assert len(address) <= MAX_ADDRESS
    assert srs_decode(address, KEY, None, 4, now) == sender


def test_relay_sender_only_for_forwarded_mail() -> None:
    forwarded = relay_sender("alice@example.org", "bob@ours.test", "carol@far.test", KEY, NOW)
    assert forwarded == srs_encode("alice@example.org", "ours.test", KEY, NOW)
    assert relay_sender("alice@example.org", "carol@far.test", "carol@far.test", KEY, NOW) == (
        "alice@example.org"
    )  # not forwarded
    assert relay_sender("", "bob@ours.test", "carol@far.test", KEY, NOW) == ""  # a bounce
    assert relay_sender("alice@example.org", "bob@ours.test", "carol@far.test", None, NOW) == (
        "alice@example.org"
    )  # no key
