"""The lines smtpd writes to a filter: the handshake, every report event in both
versions, every filter request, and framing that no value can break."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.filters.encode import (
    Handshake,
    encode_data_lines,
    encode_filter,
    encode_filter_connect,
    encode_handshake,
    encode_report,
)
from mta.filters.events import (
    FilterReportEvent,
    FilterResponse,
    LinkAuth,
    LinkConnect,
    LinkDisconnect,
    LinkGreeting,
    LinkIdentify,
    LinkTLS,
    ProtocolClient,
    ProtocolServer,
    ReportPayload,
    Timeout,
    TxBegin,
    TxCommit,
    TxData,
    TxEnvelope,
    TxMail,
    TxRcpt,
    TxReset,
    TxRollback,
)
from mta.filters.protocol import (
    AuthResult,
    Decision,
    FCrDNS,
    FilterPhase,
    InetAddress,
    ProtocolVersion,
    ReportEvent,
    Subsystem,
    Timestamp,
    TxResult,
    UnixAddress,
)

V6, V7 = ProtocolVersion.V0_6, ProtocolVersion.V0_7
TS = Timestamp(1576146008, 6099)
S = 0x7641DF9771B4ED00
TOKEN = 0x1EF1C203CC576E5D
V4ADDR = InetAddress(ipaddress.ip_address("199.185.178.25"), 33174)
HERE = InetAddress(ipaddress.ip_address("45.77.67.80"), 25)


def test_handshake_0_7_is_what_opensmtpd_7_8_sends() -> None:
    # lka_filter.c (7.8.0p1) lka_proc_config
    handshake = Handshake(frozenset(Subsystem), "example.org")
    assert encode_handshake(handshake) == (
        b"config|smtpd-version|7.8.0\n"
        b"config|protocol|0.7\n"
        b"config|smtp-session-timeout|300\n"
        b"config|subsystem|smtp-in\n"
        b"config|subsystem|smtp-out\n"
        b"config|admd|example.org\n"
        b"config|ready\n"
    )


def test_handshake_0_6_has_no_protocol_line_and_takes_overrides() -> None:
    handshake = Handshake(
        frozenset({Subsystem.SMTP_OUT}),
        "bad\nadmd",
        session_timeout=60,
        version=V6,
        smtpd_version="mta 0.1",
    )
    assert encode_handshake(handshake) == (
        b"config|smtpd-version|mta 0.1\n"
        b"config|smtp-session-timeout|60\n"
        b"config|subsystem|smtp-out\n"
        b"config|admd|bad admd\n"
        b"config|ready\n"
    )


def test_handshake_checks() -> None:
    with pytest.raises(ValueError):
        Handshake(frozenset(), "x")
    with pytest.raises(ValueError):
        Handshake(frozenset(Subsystem), "x", session_timeout=-1)
    with pytest.raises(ValueError):
        Handshake(frozenset(Subsystem), "x", session_timeout=1 << 31)


PREFIX = "report|{v}|1576146008.006099|smtp-in|{event}|7641df9771b4ed00"

# (payload, its parameters in 0.6, in 0.7 when they differ)
EVENTS: list[tuple[ReportPayload, str, str | None]] = [
    (
        LinkConnect("mail.openbsd.org", FCrDNS.PASS, V4ADDR, HERE),
        "|mail.openbsd.org|pass|199.185.178.25:33174|45.77.67.80:25",
        None,
    ),
    (
        LinkConnect(
            "",
            FCrDNS.ERROR,
            InetAddress(ipaddress.ip_address("2001:db8::2"), 1025),
            InetAddress(ipaddress.ip_address("2001:db8::1"), 25),
        ),
        "||error|[2001:db8::2]:1025|[2001:db8::1]:25",
        None,
    ),
    (
        LinkConnect(
            "localhost", FCrDNS.FAIL, UnixAddress("/s/mta.sock"), UnixAddress("/s/mta.sock")
        ),
        "|localhost|fail|unix:/s/mta.sock|unix:/s/mta.sock",
        None,
    ),
    (LinkGreeting("mx.example.org"), "|mx.example.org", None),
    (LinkGreeting(""), "|", None),
    (LinkIdentify("HELO", "client|name"), "|HELO|client|name", None),
    (
        LinkTLS("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256),
        "|TLSv1.3:TLS_AES_256_GCM_SHA384:256",
        None,
    ),
    (LinkAuth("joe", AuthResult.PASS), "|joe|pass", "|pass|joe"),
    (LinkAuth("j|oe", AuthResult.FAIL), "|j oe|fail", "|fail|j|oe"),
    (LinkAuth("joe", AuthResult.ERROR), "|joe|error", "|error|joe"),
    (LinkDisconnect(), "", None),
    (TxReset(0x188647ED), "|188647ed", None),
    (TxReset(None), "", None),
    (TxBegin(0xED), "|000000ed", None),
    (TxMail(0x188647ED, TxResult.PERMFAIL, "a@b|c"), "|188647ed|permfail|a@b|c", None),
    (TxRcpt(0x188647ED, TxResult.TEMPFAIL, "x@y"), "|188647ed|tempfail|x@y", None),
    (TxEnvelope(0x188647ED, 0x188647EDA0AEDF14), "|188647ed|188647eda0aedf14", None),
    (TxData(0x188647ED, TxResult.PERMFAIL), "|188647ed|permfail", None),
    (TxCommit(0x188647ED, 0), "|188647ed|0", None),
    (TxRollback(0x188647ED), "|188647ed", None),
    (ProtocolClient("MAIL FROM:<a@b>"), "|MAIL FROM:<a@b>", None),
    (ProtocolServer("250-8BITMIME"), "|250-8BITMIME", None),
    (FilterReportEvent(True, "check_rdns", "no rdns"), "|builtin|check_rdns|no rdns", None),
    (FilterReportEvent(False, "spam|filter", "score|9"), "|proc|spam filter|score|9", None),
    (FilterResponse(FilterPhase.CONNECT, Decision.PROCEED), "|connected|proceed", None),
    (FilterResponse(FilterPhase.STARTTLS, Decision.JUNK), "|tls|junk", None),
    (
        FilterResponse(FilterPhase.RCPT_TO, Decision.REJECT, "550 no|way"),
        "|rcpt-to|reject|550 no|way",
        None,
    ),
    (
        FilterResponse(FilterPhase.MAIL_FROM, Decision.REWRITE, "<x@y>"),
        "|mail-from|rewrite|<x@y>",
        None,
    ),
    (FilterResponse(FilterPhase.HELO, Decision.REPORT, "seen"), "|helo|report|seen", None),
    (Timeout(), "", None),
]


@pytest.mark.parametrize(("payload", "params6", "params7"), EVENTS)
def test_every_report_event_in_both_versions(
    payload: ReportPayload, params6: str, params7: str | None
) -> None:
    for version, params in ((V6, params6), (V7, params7 or params6)):
        expected = PREFIX.format(v=version.value, event=payload.EVENT.value) + params + "\n"
        assert encode_report(version, TS, Subsystem.SMTP_IN, S, payload) == expected.encode()


def test_the_table_covers_every_event() -> None:
    assert {payload.EVENT for payload, _, _ in EVENTS} == set(ReportEvent)


def test_smtp_out_reports() -> None:
    line = encode_report(V7, TS, Subsystem.SMTP_OUT, S, LinkIdentify("LHLO", "mx"))
    assert line == b"report|0.7|1576146008.006099|smtp-out|link-identify|7641df9771b4ed00|LHLO|mx\n"
    for payload in (
        FilterResponse(FilterPhase.HELO, Decision.PROCEED),
        FilterReportEvent(False, "f", "m"),
    ):
        with pytest.raises(ValueError, match="smtp-out"):
            encode_report(V7, TS, Subsystem.SMTP_OUT, S, payload)


def test_auth_secrets_are_masked() -> None:
    assert ProtocolClient.of_command("AUTH PLAIN AGpvZQBzZWNyZXQ=").command == "AUTH PLAIN ********"
    assert ProtocolClient.of_command("auth plain AGpvZQBzZWNyZXQ=").command == "AUTH PLAIN ********"
    assert ProtocolClient.of_command("AUTH LOGIN am9l").command == "AUTH LOGIN ********"
    assert ProtocolClient.of_command("AUTH LOGIN").command == "AUTH LOGIN"
    assert ProtocolClient.of_command("AUTH  PLAIN x").command == "AUTH  ********"
    assert ProtocolClient.of_command("EHLO x").command == "EHLO x"
    assert ProtocolClient.masked().command == "********"


def test_values_out_of_range() -> None:
    with pytest.raises(ValueError):
        encode_report(V7, TS, Subsystem.SMTP_IN, 1 << 64, Timeout())
    with pytest.raises(ValueError):
        encode_report(V7, TS, Subsystem.SMTP_IN, S, TxBegin(1 << 32))
    with pytest.raises(ValueError):
        TxCommit(1, -1)


FILTER = "filter|0.7|1576146008.006099|smtp-in|{phase}|7641df9771b4ed00|1ef1c203cc576e5d|"


@pytest.mark.parametrize(
    ("phase", "param"),
    [
        (FilterPhase.HELO, "client.example"),
        (FilterPhase.EHLO, "client.example"),
        (FilterPhase.STARTTLS, ""),
        (FilterPhase.AUTH, "PLAIN"),
        (FilterPhase.MAIL_FROM, "a@b.example"),
        (FilterPhase.RCPT_TO, "c@d.example"),
        (FilterPhase.DATA, ""),
        (FilterPhase.DATA_LINE, "line|with|pipes"),
        (FilterPhase.RSET, ""),
        (FilterPhase.QUIT, ""),
        (FilterPhase.NOOP, ""),
        (FilterPhase.HELP, ""),
        (FilterPhase.WIZ, ""),
        (FilterPhase.COMMIT, ""),
    ],
)
def test_every_filter_request(phase: FilterPhase, param: str) -> None:
    expected = FILTER.format(phase=phase.value) + param + "\n"
    assert encode_filter(V7, TS, phase, S, TOKEN, param) == expected.encode()


def test_connect_request() -> None:
    # the smtpd-filters(7) example line
    line = encode_filter_connect(V7, TS, S, TOKEN, "mail.openbsd.org", V4ADDR)
    assert line == (
        b"filter|0.7|1576146008.006099|smtp-in|connect|7641df9771b4ed00|1ef1c203cc576e5d"
        b"|mail.openbsd.org|199.185.178.25\n"
    )
    v6 = InetAddress(ipaddress.ip_address("2001:db8::2"), 1)
    assert encode_filter_connect(V7, TS, S, TOKEN, "a|b", v6).endswith(b"|a b|[2001:db8::2]\n")
    assert encode_filter_connect(V7, TS, S, TOKEN, "", UnixAddress("/x")).endswith(b"||local\n")
    with pytest.raises(ValueError, match="encode_filter_connect"):
        encode_filter(V7, TS, FilterPhase.CONNECT, S, TOKEN, "x")


def test_data_line_bytes_need_not_be_utf8() -> None:
    line = encode_filter(V7, TS, FilterPhase.DATA_LINE, S, TOKEN, b"caf\xe9 \xff")
    assert line == FILTER.format(phase="data-line").encode() + b"caf\xe9 \xff\n"


@given(st.lists(st.binary(max_size=30), max_size=8))
def test_data_lines_are_the_data_line_requests_of_each_line(lines: list[bytes]) -> None:
    each = b"".join(encode_filter(V7, TS, FilterPhase.DATA_LINE, S, TOKEN, x) for x in lines)
    assert encode_data_lines(V7, TS, S, TOKEN, lines) == each
    assert encode_data_lines(V7, TS, S, TOKEN, iter(lines)) == each


def test_data_line_never_breaks_the_framing() -> None:
    line = encode_filter(V7, TS, FilterPhase.DATA_LINE, S, TOKEN, b"a\r\nfilter-result|x\rb\0c")
    assert line == FILTER.format(phase="data-line").encode() + b"a  filter-result|x b c\n"


TEXT = st.text(st.characters(codec="utf-8"), max_size=20)


INNER = str.maketrans({"\r": " ", "\n": " ", "\0": " ", "|": " "})
LAST = str.maketrans({"\r": " ", "\n": " ", "\0": " "})


@given(TEXT, TEXT, TEXT, st.sampled_from(ProtocolVersion))
def test_no_value_adds_a_line_or_a_field(a: str, b: str, c: str, version: ProtocolVersion) -> None:
    inner_a, inner_b = a.translate(INNER), b.translate(INNER)
    last_a, last_b, last_c = a.translate(LAST), b.translate(LAST), c.translate(LAST)
    auth = [inner_a, "pass"] if version is V6 else ["pass", last_a]
    cases: list[tuple[ReportPayload, list[str]]] = [
        (
            LinkConnect(a, FCrDNS.PASS, UnixAddress(b), UnixAddress(c)),
            [inner_a, "pass", "unix:" + inner_b, "unix:" + last_c],
        ),
        (LinkIdentify(a, b), [inner_a, last_b]),
        (LinkAuth(a, AuthResult.PASS), auth),
        (TxMail(1, TxResult.OK, a), ["00000001", "ok", last_a]),
        (FilterReportEvent(False, a, b), ["proc", inner_a, last_b]),
        (FilterResponse(FilterPhase.AUTH, Decision.REJECT, a), ["auth", "reject", last_a]),
        (ProtocolServer(a), [last_a]),
        (LinkTLS(a, b, 1), [f"{last_a}:{last_b}:1"]),
    ]
    for payload, params in cases:
        head = PREFIX.format(v=version.value, event=payload.EVENT.value)
        line = encode_report(version, TS, Subsystem.SMTP_IN, S, payload)
        assert line == "|".join([head, *params]).encode() + b"\n"
        assert line.count(b"\n") == 1 and b"\r" not in line and b"\0" not in line
        # a filter splitting the fields finds each value where it belongs
        assert line.decode().split("|", 5 + len(params))[6:] == [*params[:-1], params[-1] + "\n"]
    for phase in (FilterPhase.HELO, FilterPhase.DATA_LINE):
        line = encode_filter(version, TS, phase, S, TOKEN, a)
        assert line.endswith(b"|" + last_a.encode() + b"\n") and line.count(b"\n") == 1
    line = encode_filter_connect(version, TS, S, TOKEN, a, V4ADDR)
    assert line.endswith(f"|{inner_a}|199.185.178.25\n".encode()) and line.count(b"\n") == 1


def test_bytes_that_were_not_utf8_go_out_as_they_came() -> None:
    # mta's SMTP server decodes lines with surrogateescape
    line = encode_report(
        V7,
        TS,
        Subsystem.SMTP_IN,
        S,
        LinkIdentify("EHLO", b"caf\xe9".decode("utf-8", "surrogateescape")),
    )
    assert line.endswith(b"|EHLO|caf\xe9\n")
    line = encode_filter(V7, TS, FilterPhase.HELO, S, TOKEN, "a\ud800b")
    assert line.endswith(b"|a?b\n")
    line = encode_filter_connect(V7, TS, S, TOKEN, "r\udcffdns", V4ADDR)
    assert line.endswith(b"|r\xffdns|199.185.178.25\n")


@given(st.text(), st.sampled_from(ProtocolVersion))
def test_any_text_at_all_is_one_line(value: str, version: ProtocolVersion) -> None:
    for payload in (ProtocolClient(value), LinkAuth(value, AuthResult.FAIL), LinkGreeting(value)):
        line = encode_report(version, TS, Subsystem.SMTP_IN, S, payload)
        assert line.count(b"\n") == 1 and line.endswith(b"\n")
    line = encode_filter(version, TS, FilterPhase.DATA_LINE, S, TOKEN, value)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
