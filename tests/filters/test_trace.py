"""The encoder, speaking 0.6, writes byte for byte what OpenSMTPD 6.8.0p2 wrote to
a filter in one real session (the trace beside this file, a copy of
shared/reference/opensmtpd-6.8-filter-trace.txt), given the same inputs and
timestamps."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from mta.filters.encode import (
    Handshake,
    encode_filter,
    encode_filter_connect,
    encode_handshake,
    encode_report,
)
from mta.filters.events import (
    FilterResponse,
    LinkConnect,
    LinkDisconnect,
    LinkGreeting,
    LinkIdentify,
    ProtocolClient,
    ProtocolServer,
    ReportPayload,
    TxBegin,
    TxCommit,
    TxData,
    TxEnvelope,
    TxMail,
    TxRcpt,
    TxReset,
)
from mta.filters.protocol import (
    Decision,
    FCrDNS,
    FilterPhase,
    InetAddress,
    ProtocolVersion,
    Subsystem,
    Timestamp,
    TxResult,
)

TRACE = Path(__file__).with_name("opensmtpd-6.8-filter-trace.txt")
V = ProtocolVersion.V0_6
SESSION = 0xDE49CA932CEADB56
MSGID = 0x188647ED
SRC = InetAddress(ipaddress.ip_address("127.0.0.1"), 39760)
DEST = InetAddress(ipaddress.ip_address("127.0.0.1"), 2798)
DATA_TOKEN = 0x146E95AE5A1F2BC0


def at(usec: int) -> Timestamp:
    return Timestamp(1796663008, usec)


def report(usec: int, payload: ReportPayload) -> bytes:
    return encode_report(V, at(usec), Subsystem.SMTP_IN, SESSION, payload)


def request(usec: int, phase: FilterPhase, token: int, param: str | bytes = "") -> bytes:
    return encode_filter(V, at(usec), phase, SESSION, token, param)


def proceed(usec: int, phase: FilterPhase) -> bytes:
    return report(usec, FilterResponse(phase, Decision.PROCEED))


def server(usec: int, line: str) -> bytes:
    return report(usec, ProtocolServer(line))


def client(usec: int, line: str) -> bytes:
    return report(usec, ProtocolClient.of_command(line))


SESSION_LINES = [
    report(663741, LinkConnect("localhost", FCrDNS.PASS, SRC, DEST)),
    encode_filter_connect(V, at(663825), SESSION, 0x146E95A85D08B965, "localhost", SRC),
    proceed(664148, FilterPhase.CONNECT),
    server(664162, "220 vm ESMTP OpenSMTPD"),
    report(664171, LinkGreeting("vm")),
    client(664521, "ehlo client.test"),
    request(664584, FilterPhase.EHLO, 0x146E95AACA32FDCF, "client.test"),
    proceed(664739, FilterPhase.EHLO),
    report(664743, LinkIdentify("EHLO", "client.test")),
    server(664747, "250-vm Hello client.test [127.0.0.1], pleased to meet you"),
    server(664753, "250-8BITMIME"),
    server(664759, "250-ENHANCEDSTATUSCODES"),
    server(664763, "250-SIZE 36700160"),
    server(664768, "250-DSN"),
    server(664773, "250 HELP"),
    client(665380, "mail FROM:<a@ext.test> size=31"),
    request(665454, FilterPhase.MAIL_FROM, 0x146E95AB6A80C73A, "a@ext.test"),
    proceed(665602, FilterPhase.MAIL_FROM),
    server(665890, "250 2.0.0 Ok"),
    report(665895, TxBegin(MSGID)),
    report(665898, TxMail(MSGID, TxResult.OK, "a@ext.test")),
    client(666063, "rcpt TO:<root@localhost>"),
    request(666142, FilterPhase.RCPT_TO, 0x146E95AC6FCDB01E, "root@localhost"),
    proceed(666281, FilterPhase.RCPT_TO),
    report(667087, TxEnvelope(MSGID, 0x188647EDA0AEDF14)),
    server(667094, "250 2.1.5 Destination address valid: Recipient ok"),
    report(667097, TxRcpt(MSGID, TxResult.OK, "root@localhost")),
    client(667341, "data"),
    request(667388, FilterPhase.DATA, 0x146E95AD5DBF1060),
    proceed(667582, FilterPhase.DATA),
    request(
        667988,
        FilterPhase.DATA_LINE,
        DATA_TOKEN,
        "Received: from client.test (localhost [127.0.0.1])",
    ),
    request(
        667998, FilterPhase.DATA_LINE, DATA_TOKEN, "\tby vm (OpenSMTPD) with ESMTP id 188647ed"
    ),
    request(668001, FilterPhase.DATA_LINE, DATA_TOKEN, "\tfor <root@localhost>;"),
    request(668004, FilterPhase.DATA_LINE, DATA_TOKEN, "\tMon, 7 Dec 2026 17:03:28 +0000 (UTC)"),
    server(667901, '354 Enter mail, end with "." on a line by itself'),
    report(667903, TxData(MSGID, TxResult.OK)),
    request(668292, FilterPhase.DATA_LINE, DATA_TOKEN, "Subject: x"),
    request(668295, FilterPhase.DATA_LINE, DATA_TOKEN, ""),
    request(668298, FilterPhase.DATA_LINE, DATA_TOKEN, b"body|with|pipes"),
    request(668301, FilterPhase.DATA_LINE, DATA_TOKEN, "."),
    client(668493, "."),
    request(668580, FilterPhase.COMMIT, 0x146E95AFE8948EB2),
    proceed(668667, FilterPhase.COMMIT),
    server(673237, "250 2.0.0 188647ed Message accepted for delivery"),
    report(673244, TxCommit(MSGID, 413)),
    report(673247, TxReset(MSGID)),
    client(673449, "quit"),
    proceed(673547, FilterPhase.QUIT),
    server(673551, "221 2.0.0 Bye"),
    report(673586, LinkDisconnect()),
]


def trace_lines() -> list[bytes]:
    lines = TRACE.read_bytes().splitlines(keepends=True)
    return [line for line in lines if line.strip() and not line.startswith(b"#")]


def test_handshake_is_byte_identical() -> None:
    handshake = Handshake(frozenset({Subsystem.SMTP_IN}), "vm", version=V)
    assert encode_handshake(handshake) == b"".join(trace_lines()[:5])


def test_every_report_and_filter_line_is_byte_identical() -> None:
    expected = trace_lines()[5:]
    assert len(SESSION_LINES) == len(expected) == 50
    for ours, theirs in zip(SESSION_LINES, expected, strict=True):
        assert ours == theirs
