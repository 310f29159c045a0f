"""``show queue`` lines and ``show envelope`` dumps."""

from __future__ import annotations

import pytest

from mta.control.commands import parse_ids
from mta.control.queueview import RunState, envelope_dump, queue_line
from mta.envelope import Address, DsnNotify, Envelope, EnvelopeFlag, EnvelopeKind
from mta.errors import ControlError
from mta.status import StatusCode
from tests.envelopes import make_envelope


def envelope(**changes: object) -> Envelope:
    """A queued local delivery from alice@example.org, its ids assigned."""
    overrides = {
        "msgid": 0x12345678,
        "id": 0x12345678ABCDEF01,
        "kind": EnvelopeKind.MDA,
        "sender": Address.parse("alice@example.org"),
        "sockaddr": "127.0.0.1",
        "ctime": 1000,
    }
    return make_envelope("bob@example.org", **{**overrides, **changes})


def test_a_pending_envelope() -> None:
    line = queue_line(
        envelope(retry=2, last_try=1200, errorline="451 busy"), RunState("pending", 30, expire=5000)
    )
    assert line == (
        "12345678abcdef01|inet4|mda||alice@example.org|bob@example.org|bob@example.org"
        "|1000|5000|1200|2|pending|30|451 busy"
    )


def test_flags_family_and_run_states() -> None:
    e = envelope(
        sockaddr="::1",
        kind=EnvelopeKind.BOUNCE,
        flags=EnvelopeFlag.BOUNCE | EnvelopeFlag.AUTHENTICATED,
        sender=Address("", ""),
    )
    fields = queue_line(e, RunState("inflight", 4, suspended=True)).split("|")
    assert fields[1:5] == ["inet6", "bounce", "bounce,auth,suspend", ""]
    assert fields[11:13] == ["inflight", "4"]
    local = queue_line(envelope(sockaddr="local"), RunState("offline")).split("|")
    assert local[1] == "local" and local[11:] == ["offline", "", ""]


def test_client_text_cannot_forge_fields_or_lines() -> None:
    e = envelope(rcpt=Address("a|b\r\nc", "example.org"), errorline="x\nyz")
    line = queue_line(e, RunState("pending"))
    assert "\n" not in line and "\r" not in line
    assert len(line.split("|")) == 14
    assert "a\\174b\\r\\nc@example.org" in line


def test_envelope_dump() -> None:
    e = envelope(dsn_notify=DsnNotify.SUCCESS | DsnNotify.FAILURE, helo="evil\nhelo")
    dump = envelope_dump(e).splitlines()
    assert "id: 12345678abcdef01" in dump
    assert "msgid: 12345678" in dump
    assert "kind: mda" in dump
    assert "dsn_notify: success,failure" in dump
    assert "flags: none" in dump
    assert "helo: evil\\nhelo" in dump
    assert "sender: alice@example.org" in dump
    assert "esc: " in dump  # no failure yet


def test_envelope_dump_shows_the_whole_status_code() -> None:
    e = envelope(errorline="Domain does not accept mail", esc=StatusCode(5, 1, 10))
    dump = envelope_dump(e).splitlines()
    assert "esc: 5.1.10" in dump
    assert "errorline: Domain does not accept mail" in dump
    assert "esc: 4.7.350" in envelope_dump(envelope(esc=StatusCode(4, 7, 350))).splitlines()


@pytest.mark.parametrize(
    ("word", "parsed"),
    [
        ("all", ("all", 0)),
        ("12345678", ("msgid", 0x12345678)),
        ("1", ("msgid", 1)),
        ("12345678abcdef01", ("evpid", 0x12345678ABCDEF01)),
    ],
)
def test_ids(word: str, parsed: tuple[str, int]) -> None:
    assert parse_ids(word) == parsed


@pytest.mark.parametrize("word", ["", "xyz", "-1", "0x12", "12345678abcdef012", "+5"])
def test_bad_ids(word: str) -> None:
    with pytest.raises(ControlError, match="invalid id"):
        parse_ids(word)
