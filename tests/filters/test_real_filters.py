"""Debian's own filters run by OpenSMTPD 6.8 and by mta: filter-dkimsign signs what it
delivers (the signature verifies with dkimpy against the key the test made),
filter-senderscore reads a reputation from a DNS zone served by dnsmasq in the
namespace and blocks, junks or labels accordingly.  Where the filters are
installed is told in opensmtpd_oracle's docstring.

filter-senderscore asks the nameserver of /etc/resolv.conf: both servers run in
a private namespace where that names the scenario's dnsmasq, and must agree
(normalised: where the filter's reply has no enhanced status code, mta adds
``5.0.0``, mta.filters.verdict)."""

from __future__ import annotations

import base64
import os

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.filters.opensmtpd_oracle import (
    FILTERS,
    Run,
    Scenario,
    namespace_unavailable,
    normalise,
    opensmtpd_unavailable,
    run_mta,
    run_opensmtpd,
)


def needs(filter_name: str) -> None:
    """Skips unless both servers can run ``filter_name`` in a private namespace."""
    why = opensmtpd_unavailable() or namespace_unavailable()
    if why is not None:
        pytest.skip(why)
    if not (FILTERS / filter_name).exists():
        pytest.skip(f"{FILTERS / filter_name} is missing (scripts/setup --test installs it)")


DELIVER = """\
listen on 127.0.0.1 port @PORT@ hostname mx.test filter {filter}
action "local" maildir "@DIR@/mail/%{{user.username}}"
match from any for domain "localhost" action "local"
"""
MESSAGE = (
    "From: Alice <alice@example.test>\r\nTo: <nobody@localhost>\r\nSubject: signed\r\n"
    "Date: Mon, 7 Dec 2026 17:03:28 +0000\r\nMessage-ID: <m1@example.test>\r\n\r\n"
    "A body|with|pipes,\r\n..a line with a dot\r\nand the end.\r\n."
)
SESSION = [
    "EHLO client.test",
    "MAIL FROM:<alice@example.test>",
    "RCPT TO:<nobody@localhost>",
    "DATA",
    MESSAGE,
    "QUIT",
]


def rsa_key() -> tuple[bytes, bytes]:
    """A new RSA key: its PEM (PKCS#1, as ``openssl genrsa`` writes) and the
    DNS TXT record that publishes it (README.Debian's recipe)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


SERVERS = ["opensmtpd", "mta"]


@pytest.mark.parametrize("server", SERVERS)
def test_dkimsign_signs_and_dkimpy_verifies(server: str) -> None:
    if server == "opensmtpd":
        needs("filter-dkimsign")
    elif not (FILTERS / "filter-dkimsign").exists():
        pytest.skip("filter-dkimsign is missing (scripts/setup --test installs it)")
    pem, record = rsa_key()
    command = "filter-dkimsign -d example.test -s sel1 -k @DIR@/dkim/private.rsa.key"
    # as README.Debian says: as _dkimsign, which alone reads the key (run
    # unprivileged, mta runs its filters as its own user, who owns the key)
    as_user = os.geteuid() == 0 or server == "opensmtpd"
    scenario = Scenario(
        config=f'filter "dkim" proc-exec "{command}"'
        + (" user _dkimsign group _dkimsign\n" if as_user else "\n")
        + DELIVER.format(filter='"dkim"'),
        files={"dkim/private.rsa.key": pem},
        modes={"dkim/private.rsa.key": 0o600},
        owners={"dkim/private.rsa.key": "_dkimsign"} if as_user else {},
        dialogues=[SESSION],
    )
    run = run_opensmtpd(scenario) if server == "opensmtpd" else run_mta(scenario)
    assert run.exit is None and run.delivered_all, run.log
    assert normalise(run)["transcripts"][0][-3:] == [
        "250 2.0.0 MSGID1 Message accepted for delivery",
        ">>> QUIT",
        "221 2.0.0 Bye",
    ]
    [delivered] = run.delivered["nobody"]
    lines = delivered.split("\n")
    # Return-Path and Delivered-To come from the delivery; the filter put its
    # header first in what it was given, before the Received header smtpd wrote
    assert lines[2].startswith("DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; s=sel1;")
    value = delivered.partition("\nReceived: ")[0].partition("DKIM-Signature: ")[2]
    tags = dict(tag.strip().split("=", 1) for tag in value.replace("\n\t", "").split(";"))
    assert (tags["d"], tags["s"]) == ("example.test", "sel1")
    assert set(tags["h"].split(":")) == {"from", "to", "subject", "date"}
    assert "\nReceived: from client.test (localhost [127.0.0.1])\n" in delivered
    message = delivered.encode("latin-1").replace(b"\n", b"\r\n")
    asked: list[bytes] = []

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record if name == b"sel1._domainkey.example.test." else b""

    assert dkim.verify(message, dnsfunc=dnsfunc)
    assert asked == [b"sel1._domainkey.example.test."]
    tampered = message.replace(b"and the end.", b"and the End.")
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)
    _, other = rsa_key()
    assert not dkim.verify(message, dnsfunc=lambda name, timeout=5: other)


SCORE_ZONE = "1.0.0.127.score.senderscore.com"  # the client is 127.0.0.1


def senderscore(score: int, options: str) -> Scenario:
    return Scenario(
        config=f'filter "score" proc-exec "filter-senderscore {options}"\n'
        + DELIVER.format(filter='"score"'),
        dialogues=[SESSION],
        # the score is the last byte of the address the zone gives
        dns=["--local=/senderscore.com/", f"--address=/{SCORE_ZONE}/127.0.4.{score}"],
    )


def run_senderscore(server: str, scenario: Scenario) -> Run:
    """The scenario run by ``server``, both in a private namespace: the filter
    reads /etc/resolv.conf, which names the scenario's dnsmasq there only."""
    needs("filter-senderscore")
    if server == "opensmtpd":
        return run_opensmtpd(scenario)
    return run_mta(scenario, namespace=True)


@pytest.mark.parametrize("server", SERVERS)
def test_senderscore_blocks_a_low_score_at_connect(server: str) -> None:
    run = run_senderscore(server, senderscore(10, "-blockBelow 50"))
    assert run.exit is None, run.log
    # normalised: mta adds 5.0.0 to the filter's reply, which has no enhanced code
    assert normalise(run)["transcripts"] == [
        ["550 your IP reputation is too low for this MX", ">>> EHLO client.test", "<<< closed"]
    ]
    assert "score=10" in run.log  # the filter's stderr, logged by the server
    assert run.delivered == {}


@pytest.mark.parametrize("server", SERVERS)
def test_senderscore_junks_and_labels_a_middling_score(server: str) -> None:
    run = run_senderscore(server, senderscore(70, "-blockBelow 50 -junkBelow 80 -scoreHeader"))
    assert run.exit is None and run.delivered_all, run.log
    assert normalise(run)["transcripts"][0][0] == "220 mx.test ESMTP SOFTWARE"
    [delivered] = run.delivered["nobody"]
    head = delivered.partition("\n\n")[0].split("\n")
    # the filter's header comes first: smtpd's X-Spam is already in the first data-lines
    assert head[2:4] == ["X-SenderScore: 70", "X-Spam: Yes"]
    assert head[4] == "Received: from client.test (localhost [127.0.0.1])"


@pytest.mark.parametrize("server", SERVERS)
def test_senderscore_passes_a_good_score_untouched(server: str) -> None:
    run = run_senderscore(server, senderscore(95, "-blockBelow 50 -junkBelow 80"))
    assert run.exit is None and run.delivered_all, run.log
    [delivered] = run.delivered["nobody"]
    assert "X-Spam" not in delivered and "X-SenderScore" not in delivered


@pytest.mark.parametrize(
    ("score", "options"),
    [
        (10, "-blockBelow 50"),
        (70, "-blockBelow 50 -junkBelow 80 -scoreHeader"),
        (95, "-blockBelow 50 -junkBelow 80 -scoreHeader"),
    ],
    ids=["block", "junk-label", "label"],
)
def test_senderscore_mta_agrees_with_opensmtpd(score: int, options: str) -> None:
    """The same sessions, the same deliveries (normalised) from both servers."""
    scenario = senderscore(score, options)
    oracle = run_senderscore("opensmtpd", scenario)
    assert normalise(run_senderscore("mta", scenario)) == normalise(oracle)
