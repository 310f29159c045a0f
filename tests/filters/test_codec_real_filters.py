"""The codec against real filters: Debian's ``filter-dkimsign`` 0.5 (C, on
libopensmtpd 0.7) and ``filter-senderscore`` 0.1.1 (Go, its own parsing) take our
handshake and lines in both protocol versions, register, and answer what
:mod:`mta.filters.parse` reads.  A line with protocol version 1.0 makes
libopensmtpd die ("Unsupported protocol received"): what these tests would see
if the codec spoke a version the library refuses.

The filters are Debian packages (``opensmtpd-filter-dkimsign``,
``opensmtpd-filter-senderscore``); without them these tests are skipped.
"""

from __future__ import annotations

import ipaddress
import os
import selectors
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mta.filters.encode import (
    Handshake,
    encode_filter,
    encode_filter_connect,
    encode_handshake,
    encode_report,
)
from mta.filters.events import LinkConnect, LinkDisconnect, TxBegin, TxCommit
from mta.filters.messages import FilterDataLine, FilterMessage, FilterResult
from mta.filters.parse import FilterOutputParser
from mta.filters.protocol import (
    Decision,
    FCrDNS,
    FilterPhase,
    InetAddress,
    ProtocolVersion,
    ReportEvent,
    Subsystem,
    Timestamp,
)
from mta.filters.registration import Registered, Registration
from mta.filters.verdict import check_decision

LIBEXEC = Path("/usr/libexec/opensmtpd")
DKIMSIGN = LIBEXEC / "filter-dkimsign"
SENDERSCORE = LIBEXEC / "filter-senderscore"
TS = Timestamp(1796663008, 663741)
S = 0xDE49CA932CEADB56
MSGID = 0x188647ED
DEADLINE = 15.0


class Filter:
    """A filter process, spoken to through the codec."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin = self.process.stdin
        self.stdout = self.process.stdout
        self.parser = FilterOutputParser()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stdout, selectors.EVENT_READ)

    def send(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def read(self, enough: Callable[[list[FilterMessage]], bool]) -> list[FilterMessage]:
        """Messages until ``enough`` (asked after each) says so; fails on end of
        output or at the deadline."""
        messages: list[FilterMessage] = []
        deadline = time.monotonic() + DEADLINE
        while True:
            message = self.parser.next_message()
            if message is not None:
                messages.append(message)
                if enough(messages):
                    return messages
                continue
            left = deadline - time.monotonic()
            assert left > 0, f"no answer in time; got {messages}"
            if self.selector.select(left):
                data = os.read(self.stdout.fileno(), 65536)
                assert data, f"the filter ended: {self.finish()!r}; got {messages}"
                self.parser.feed(data)

    def register(self, handshake: Handshake) -> Registered:
        self.send(encode_handshake(handshake))
        registration = Registration()
        self.read(lambda messages: registration.feed(messages[-1]))
        return registration.result()

    def finish(self) -> tuple[int, bytes]:
        self.stdin.close()
        code = self.process.wait(timeout=DEADLINE)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.stdin, self.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.selector.close()


@pytest.fixture
def dkim_key(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def spawn(argv: list[str]) -> Iterator[Filter]:
    if not Path(argv[0]).exists():
        pytest.skip(f"{argv[0]} is not installed")
    running = Filter(argv)
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def dkimsign(dkim_key: Path) -> Iterator[Filter]:
    yield from spawn([str(DKIMSIGN), "-d", "example.org", "-s", "sel", "-k", str(dkim_key)])


@pytest.fixture
def senderscore() -> Iterator[Filter]:
    yield from spawn([str(SENDERSCORE)])


BODY = ["From: a@ext.test", "To: root@localhost", "Subject: x", "", "body|with|pipes", "..dot", "."]


@pytest.mark.parametrize("version", list(ProtocolVersion))
def test_dkimsign_signs_through_the_codec(dkimsign: Filter, version: ProtocolVersion) -> None:
    # libopensmtpd's osmtpd_newline: config keys it does not know (admd, protocol,
    # subsystem) go to the config callback; only the version's major must be 0.
    registered = dkimsign.register(Handshake(frozenset({Subsystem.SMTP_IN}), "vm", version=version))
    assert registered.phases == {FilterPhase.DATA_LINE, FilterPhase.COMMIT}
    assert registered.reports_for(Subsystem.SMTP_IN) == {
        ReportEvent.LINK_DISCONNECT,
        ReportEvent.TX_BEGIN,
        ReportEvent.TX_COMMIT,
        ReportEvent.TX_ROLLBACK,
    }
    data_token, commit_token = 0x146E95AE5A1F2BC0, 0x146E95AFE8948EB2
    lines = encode_report(version, TS, Subsystem.SMTP_IN, S, TxBegin(MSGID))
    for line in BODY:
        lines += encode_filter(version, TS, FilterPhase.DATA_LINE, S, data_token, line)
    lines += encode_filter(version, TS, FilterPhase.COMMIT, S, commit_token)
    dkimsign.send(lines)
    answers = dkimsign.read(lambda got: any(isinstance(m, FilterResult) for m in got))
    *data, result = answers
    assert result == FilterResult(S, commit_token, Decision.PROCEED)
    check_decision(FilterPhase.COMMIT, result)
    assert all(
        isinstance(m, FilterDataLine) and (m.session, m.token) == (S, data_token) for m in data
    )
    out = [m.line.decode() for m in data if isinstance(m, FilterDataLine)]
    assert out[0].startswith("DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; s=sel;")
    assert "d=example.org" in "".join(out)
    assert out[-len(BODY) :] == BODY  # the message follows the signature, unchanged
    dkimsign.send(encode_report(version, TS, Subsystem.SMTP_IN, S, TxCommit(MSGID, 100)))
    dkimsign.send(encode_report(version, TS, Subsystem.SMTP_IN, S, LinkDisconnect()))
    assert dkimsign.finish() == (0, b"")


def test_libopensmtpd_refuses_another_major_version(dkimsign: Filter) -> None:
    dkimsign.register(Handshake(frozenset({Subsystem.SMTP_IN}), "vm"))
    line = encode_report(ProtocolVersion.V0_7, TS, Subsystem.SMTP_IN, S, TxBegin(MSGID))
    dkimsign.send(line.replace(b"|0.7|", b"|1.0|"))
    code, stderr = dkimsign.finish()
    assert code == 1
    assert stderr.startswith(b"Unsupported protocol received: report|1.0|")


@pytest.mark.parametrize("version", list(ProtocolVersion))
def test_senderscore_answers_every_phase(senderscore: Filter, version: ProtocolVersion) -> None:
    # filter-senderscore skips every line up to config|ready, then reads the
    # version field of each line (produceOutput: session before token from 0.5 on)
    registered = senderscore.register(
        Handshake(frozenset({Subsystem.SMTP_IN}), "vm", version=version)
    )
    assert {FilterPhase.CONNECT, FilterPhase.MAIL_FROM, FilterPhase.DATA_LINE} <= registered.phases
    assert registered.wants_report(Subsystem.SMTP_IN, ReportEvent.LINK_CONNECT)
    # an IPv6 client: senderscore looks up no reputation for it (no DNS here)
    src = InetAddress(ipaddress.ip_address("2001:db8::2"), 41000)
    dest = InetAddress(ipaddress.ip_address("2001:db8::1"), 25)
    lines = encode_report(
        version, TS, Subsystem.SMTP_IN, S, LinkConnect("", FCrDNS.FAIL, src, dest)
    )
    lines += encode_filter_connect(version, TS, S, 1, "", src)
    lines += encode_filter(version, TS, FilterPhase.EHLO, S, 2, "client.test")
    lines += encode_filter(version, TS, FilterPhase.MAIL_FROM, S, 3, "a@ext.test")
    lines += encode_filter(version, TS, FilterPhase.RCPT_TO, S, 4, "root@localhost")
    lines += encode_filter(version, TS, FilterPhase.DATA, S, 5)
    lines += encode_filter(version, TS, FilterPhase.DATA_LINE, S, 6, "Subject: x|y")
    lines += encode_filter(version, TS, FilterPhase.DATA_LINE, S, 6, ".")
    lines += encode_filter(version, TS, FilterPhase.COMMIT, S, 7)
    senderscore.send(lines)
    answers = senderscore.read(lambda got: len(got) == 8)
    results = {m.token: m for m in answers if isinstance(m, FilterResult)}
    assert results == {
        token: FilterResult(S, token, Decision.PROCEED) for token in (1, 2, 3, 4, 5, 7)
    }
    assert [m for m in answers if isinstance(m, FilterDataLine)] == [
        FilterDataLine(S, 6, b"Subject: x|y"),
        FilterDataLine(S, 6, b"."),
    ]
    senderscore.send(encode_report(version, TS, Subsystem.SMTP_IN, S, LinkDisconnect()))
    code, _ = senderscore.finish()
    assert code == 0
