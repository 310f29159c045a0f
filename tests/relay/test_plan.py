"""The pure half of the relay agent: TLS policy, sender rewriting, transactions."""

from __future__ import annotations

import attrs
import pytest

from mta.envelope import Body, DsnNotify, DsnRet
from mta.errors import TemporaryFailure
from mta.relay.client import ClientConfig, TlsPolicy
from mta.relay.plan import (
    Plan,
    rewrite_sender,
    session_key,
    status_code,
    tls_policy,
    transaction_for,
)
from mta.relay.route import Family
from mta.relay.tlsclient import ClientTls
from mta.relay.transaction import Recipient
from mta.status import StatusCode
from mta.tables.relayhost import parse_relay_url
from tests.envelopes import make_envelope


@pytest.mark.parametrize(
    ("url", "action_tls", "expected"),
    [
        (None, None, (TlsPolicy.OPPORTUNISTIC, False)),
        (None, "required", (TlsPolicy.REQUIRED, True)),
        (None, "no-verify", (TlsPolicy.REQUIRED, False)),
        ("smtp://h", None, (TlsPolicy.OPPORTUNISTIC, False)),
        ("smtp://h", "required", (TlsPolicy.REQUIRED, True)),
        ("smtp+tls://h", None, (TlsPolicy.REQUIRED, True)),  # implicit verify
        ("smtp+tls://h", "no-verify", (TlsPolicy.REQUIRED, False)),
        ("smtps://h", None, (TlsPolicy.SMTPS, True)),
        ("smtps://h", "no-verify", (TlsPolicy.SMTPS, False)),
        ("smtp+notls://h", None, (TlsPolicy.NONE, False)),
        ("lmtp://h:24", None, (TlsPolicy.NONE, False)),
    ],
)
def test_tls_policy(url: str | None, action_tls: str | None, expected: object) -> None:
    host = parse_relay_url(url) if url is not None else None
    assert tls_policy(host, action_tls) == expected


def test_tls_with_a_plain_url_is_refused() -> None:
    with pytest.raises(TemporaryFailure, match="TLS required for relaying"):
        tls_policy(parse_relay_url("smtp+notls://h"), "required")


@pytest.mark.parametrize(
    ("sender", "mail_from", "expected"),
    [
        ("alice@example.org", None, "alice@example.org"),
        ("alice@example.org", "bounce@relay.test", "bounce@relay.test"),
        ("alice@example.org", "@relay.test", "alice@relay.test"),
        ("alice@example.org", "bounce", "bounce@example.org"),
        ("alice@example.org", "bounce@", "bounce@example.org"),
        ("", "bounce@relay.test", ""),  # <> stays <>
    ],
)
def test_rewrite_sender(sender: str, mail_from: str | None, expected: str) -> None:
    assert rewrite_sender(sender, mail_from) == expected


def test_transaction_for_a_group() -> None:
    envelopes = [
        make_envelope(
            "bob@example.net",
            dsn_notify=DsnNotify.SUCCESS,
            dsn_orcpt="rfc822;bob@example.net",
            dsn_ret=DsnRet.HDRS,
            dsn_envid="E1",
        ),
        make_envelope("carol@example.net", body=Body.EIGHTBITMIME),
    ]
    tx = transaction_for(envelopes, "srs@example.org")
    assert tx.sender == "srs@example.org"
    assert tx.recipients == (
        Recipient("bob@example.net", DsnNotify.SUCCESS, "rfc822;bob@example.net"),
        Recipient("carol@example.net"),
    )
    assert tx.eight_bit and not tx.smtputf8
    assert (tx.ret, tx.envid) == (DsnRet.HDRS, "E1")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("5.1.2", StatusCode(5, 1, 2)),
        ("4.4.3", StatusCode(4, 4, 3)),
        ("5.1.10", StatusCode(5, 1, 10)),  # RFC 7505 Null MX, kept whole
        ("5.4.6", StatusCode(5, 4, 6)),
        ("x", None),
        ("5.1.1000", None),
        ("", None),
    ],
)
def test_status_code(status: str, code: StatusCode | None) -> None:
    assert status_code(status) == code


def test_session_key_leaves_out_what_each_transaction_brings() -> None:
    mx = Plan("example.net", None, 25, ClientConfig("me.test"), ClientTls(), "a@x.test")
    assert session_key(mx) == session_key(attrs.evolve(mx, sender="b@y.test"))
    assert session_key(mx) != session_key(attrs.evolve(mx, domain="example.org"))
    smarthost = attrs.evolve(
        mx, smarthost=parse_relay_url("smtp://relay.test"), family=Family.INET4
    )
    other = attrs.evolve(smarthost, domain="example.org", sender="", family=None)
    assert session_key(smarthost) == session_key(other)
    assert session_key(smarthost) != session_key(attrs.evolve(smarthost, port=587))
