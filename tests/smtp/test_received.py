"""Tests for mta.smtp.received: OpenSMTPD's Received: header, every option."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.envelope import Address
from mta.smtp.received import LOCAL_PEER, ReceivedInfo, TlsDetails, received_header, trace_text

DATE = dt.datetime(2025, 1, 5, 12, 34, 56, tzinfo=ZoneInfo("Europe/Paris"))
DATE_TEXT = "Sun, 5 Jan 2025 12:34:56 +0100 (CET)"
TLS = TlsDetails("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)
RCPT = Address("alice", "example.org")

BASE = ReceivedInfo(
    helo="client.example.net",
    rdns="mail.example.net",
    peer="192.0.2.7",
    smtpname="mx.example.org",
    msgid=0x1A2B3C,
    date=DATE,
    esmtp=False,
)


def text(info: ReceivedInfo) -> str:
    return received_header(info).decode()


def test_helo_plain() -> None:
    assert text(BASE) == (
        "Received: from client.example.net (mail.example.net [192.0.2.7])\r\n"
        "\tby mx.example.org (mta) with SMTP id 001a2b3c;\r\n"
        f"\t{DATE_TEXT}\r\n"
    )


def test_ehlo_one_recipient() -> None:
    info = attrs.evolve(BASE, esmtp=True, rcpt=RCPT)
    assert text(info) == (
        "Received: from client.example.net (mail.example.net [192.0.2.7])\r\n"
        "\tby mx.example.org (mta) with ESMTP id 001a2b3c\r\n"
        "\tfor <alice@example.org>;\r\n"
        f"\t{DATE_TEXT}\r\n"
    )


def test_unknown_rdns() -> None:
    info = attrs.evolve(BASE, rdns=None, esmtp=True)
    assert text(info).startswith(
        "Received: from client.example.net (<unknown> [192.0.2.7])\r\n"
        "\tby mx.example.org (mta) with ESMTP id 001a2b3c;\r\n"
    )


@pytest.mark.parametrize(
    ("peer", "shown"),
    [
        ("::1", "[::1]"),
        ("2001:DB8:0:0::1", "[2001:db8::1]"),
        ("fe80::1%eth0", "[fe80::1%eth0]"),
        ("::ffff:192.0.2.1", "[::ffff:192.0.2.1]"),
        ("::FFFF:c000:0201", "[::ffff:192.0.2.1]"),
        (LOCAL_PEER, "[local]"),
    ],
)
def test_peer_forms(peer: str, shown: str) -> None:
    info = attrs.evolve(BASE, peer=peer)
    assert text(info).startswith(
        f"Received: from client.example.net (mail.example.net {shown})\r\n"
    )


def test_mask_src_drops_the_from_part() -> None:
    info = attrs.evolve(BASE, mask_src=True, esmtp=True, rcpt=RCPT)
    assert text(info) == (
        "Received: \r\n"
        "\tby mx.example.org (mta) with ESMTP id 001a2b3c\r\n"
        "\tfor <alice@example.org>;\r\n"
        f"\t{DATE_TEXT}\r\n"
    )


def test_tls_not_verified() -> None:
    info = attrs.evolve(BASE, esmtp=True, tls=TLS)
    assert text(info) == (
        "Received: from client.example.net (mail.example.net [192.0.2.7])\r\n"
        "\tby mx.example.org (mta) with ESMTPS id 001a2b3c "
        "(TLSv1.3:TLS_AES_256_GCM_SHA384:256:NO);\r\n"
        f"\t{DATE_TEXT}\r\n"
    )


def test_tls_verified_authenticated_received_auth() -> None:
    info = attrs.evolve(
        BASE,
        esmtp=True,
        tls=TLS,
        verified=True,
        authenticated=True,
        username="bob",
        received_auth=True,
        rcpt=RCPT,
    )
    assert text(info) == (
        "Received: from client.example.net (mail.example.net [192.0.2.7])\r\n"
        "\tby mx.example.org (mta) with ESMTPSA id 001a2b3c "
        "(TLSv1.3:TLS_AES_256_GCM_SHA384:256:YES) auth=yes user=bob\r\n"
        "\tfor <alice@example.org>;\r\n"
        f"\t{DATE_TEXT}\r\n"
    )


def test_received_auth_without_user() -> None:
    info = attrs.evolve(BASE, esmtp=True, tls=TLS, received_auth=True)
    assert text(info) == (
        "Received: from client.example.net (mail.example.net [192.0.2.7])\r\n"
        "\tby mx.example.org (mta) with ESMTPS id 001a2b3c "
        "(TLSv1.3:TLS_AES_256_GCM_SHA384:256:NO) auth=no;\r\n"
        f"\t{DATE_TEXT}\r\n"
    )


def test_received_auth_needs_tls() -> None:
    info = attrs.evolve(BASE, esmtp=True, authenticated=True, username="bob", received_auth=True)
    assert text(info) == (
        "Received: from client.example.net (mail.example.net [192.0.2.7])\r\n"
        "\tby mx.example.org (mta) with ESMTPA id 001a2b3c;\r\n"
        f"\t{DATE_TEXT}\r\n"
    )


def test_local_enqueue() -> None:
    info = attrs.evolve(
        BASE,
        helo="localhost",
        rdns="mx.example.org",
        peer=LOCAL_PEER,
        esmtp=True,
        authenticated=True,
        rcpt=RCPT,
        date=dt.datetime(2025, 3, 9, 1, 2, 3, tzinfo=dt.UTC),
    )
    assert text(info) == (
        "Received: from localhost (mx.example.org [local])\r\n"
        "\tby mx.example.org (mta) with ESMTPA id 001a2b3c\r\n"
        "\tfor <alice@example.org>;\r\n"
        "\tSun, 9 Mar 2025 01:02:03 +0000 (UTC)\r\n"
    )


BOOLS = (False, True)


@pytest.mark.parametrize(
    ("mask_src", "esmtp", "tls", "verified", "authenticated", "received_auth", "user", "rcpt"),
    list(itertools.product(BOOLS, BOOLS, BOOLS, BOOLS, BOOLS, BOOLS, BOOLS, BOOLS)),
)
def test_option_matrix(
    mask_src: bool,
    esmtp: bool,
    tls: bool,
    verified: bool,
    authenticated: bool,
    received_auth: bool,
    user: bool,
    rcpt: bool,
) -> None:
    info = attrs.evolve(
        BASE,
        mask_src=mask_src,
        esmtp=esmtp,
        tls=TLS if tls else None,
        verified=verified,
        authenticated=authenticated,
        received_auth=received_auth,
        username="bob" if user else "",
        rcpt=RCPT if rcpt else None,
    )
    lines = text(info).split("\r\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert lines[0] == (
        "Received: "
        if mask_src
        else "Received: from client.example.net (mail.example.net [192.0.2.7])"
    )
    assert all(line.startswith("\t") for line in lines[1:])
    assert lines[-1] == f"\t{DATE_TEXT}"
    by = lines[1]
    assert by.startswith("\tby mx.example.org (mta) with ")
    proto = by.split(" with ", 1)[1].split(" ", 1)[0]
    assert proto == ("E" if esmtp else "") + "SMTP" + ("S" if tls else "") + (
        "A" if authenticated else ""
    )
    tls_part = f"(TLSv1.3:TLS_AES_256_GCM_SHA384:256:{'YES' if verified else 'NO'})"
    assert (tls_part in by) == tls
    assert ("auth=yes user=bob" in by) == (tls and received_auth and user)
    assert ("auth=no" in by) == (tls and received_auth and not user)
    assert len(lines) == 3 + rcpt
    assert (lines[2] == "\tfor <alice@example.org>;") == rcpt
    assert lines[-2].endswith(";")


def test_control_characters_are_escaped() -> None:
    info = attrs.evolve(
        BASE,
        helo="evil\r\nX-Injected: yes",
        rdns="a\x00b",
        esmtp=True,
        tls=TlsDetails("TLSv1.3\n", "C\tD", 128),
        username="bob\rX: \x7f",
        received_auth=True,
        authenticated=True,
        rcpt=Address("a\nb", "example.org"),
    )
    out = text(info)
    assert out == (
        "Received: from evil\\x0d\\x0aX-Injected: yes (a\\x00b [192.0.2.7])\r\n"
        "\tby mx.example.org (mta) with ESMTPSA id 001a2b3c (TLSv1.3\\x0a:C\\x09D:128:NO) "
        "auth=yes user=bob\\x0dX: \\x7f\r\n"
        "\tfor <a\\x0ab@example.org>;\r\n"
        f"\t{DATE_TEXT}\r\n"
    )


@given(helo=st.text(), user=st.text(), rdns=st.none() | st.text())
def test_client_values_never_add_lines(helo: str, user: str, rdns: str | None) -> None:
    info = attrs.evolve(
        BASE,
        helo=helo,
        rdns=rdns,
        username=user,
        tls=TLS,
        received_auth=True,
        authenticated=True,
        rcpt=RCPT,
    )
    raw = received_header(info)
    assert raw.endswith(b"\r\n")
    assert raw.count(b"\n") == 4
    assert raw.count(b"\r") == 4
    assert b"\0" not in raw
    for line in raw.split(b"\r\n")[1:-1]:
        assert line.startswith(b"\t")


def test_utf8_helo_is_kept() -> None:
    info = attrs.evolve(BASE, helo="bücher.example")
    assert received_header(info).startswith("Received: from bücher.example (".encode())


def test_lone_surrogate_does_not_raise() -> None:
    info = attrs.evolve(BASE, helo="a\ud800b")
    assert received_header(info).startswith(b"Received: from a\\ud800b (")


def test_trace_text() -> None:
    assert trace_text("plain text") == "plain text"
    assert trace_text("a\tb\x1fc\x7f") == "a\\x09b\\x1fc\\x7f"


@pytest.mark.parametrize("peer", ["", "example.org", "[192.0.2.1]", "300.1.1.1", "local "])
def test_bad_peer_refused(peer: str) -> None:
    with pytest.raises(ValueError):
        attrs.evolve(BASE, peer=peer)


def test_naive_date_refused() -> None:
    with pytest.raises(ValueError):
        attrs.evolve(BASE, date=dt.datetime(2025, 1, 1))


@pytest.mark.parametrize("msgid", [-1, 1 << 32])
def test_msgid_out_of_range(msgid: int) -> None:
    with pytest.raises(ValueError):
        attrs.evolve(BASE, msgid=msgid)


def test_msgid_is_eight_hex_digits() -> None:
    assert " id 00000000;" in text(attrs.evolve(BASE, msgid=0))
    assert " id ffffffff;" in text(attrs.evolve(BASE, msgid=0xFFFFFFFF))
