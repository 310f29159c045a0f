"""Tests for mta.net.proxy: the PROXY protocol v2 parser."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.errors import MTAError
from mta.net.proxy import (
    DEFAULT_MAX_LENGTH,
    SIGNATURE,
    ProxyCommand,
    ProxyError,
    ProxyFamily,
    ProxyHeader,
    ProxyResult,
    ProxyV2Parser,
)

# A header written by haproxy (send-proxy-v2) in front of an HTTP request,
# captured with netcat: 172.19.0.1:42578 -> 172.19.0.3:80.
HAPROXY_IPV4 = bytes.fromhex("0d0a0d0a000d0a515549540a2111000cac130001ac130003a6520050")


def header(
    ver_cmd: int, family: int, block: bytes, tlvs: bytes = b"", length: int | None = None
) -> bytes:
    body = block + tlvs
    size = len(body) if length is None else length
    return SIGNATURE + bytes([ver_cmd, family]) + struct.pack("!H", size) + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def ipv4_block(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def ipv6_block(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def parse(data: bytes, max_length: int = DEFAULT_MAX_LENGTH) -> ProxyResult:
    result = ProxyV2Parser(max_length).feed(data)
    assert result is not None
    return result


def test_haproxy_ipv4_vector() -> None:
    result = parse(HAPROXY_IPV4 + b"EHLO client\r\n")
    assert result.header == ProxyHeader(
        ProxyCommand.PROXY, ProxyFamily.TCP4, "172.19.0.1", 42578, "172.19.0.3", 80
    )
    assert result.rest == b"EHLO client\r\n"


def test_ipv6() -> None:
    data = header(0x21, 0x21, ipv6_block("2001:db8::7", "2001:db8::25", 50000, 25))
    result = parse(data)
    assert result.header == ProxyHeader(
        ProxyCommand.PROXY, ProxyFamily.TCP6, "2001:db8::7", 50000, "2001:db8::25", 25
    )
    assert result.rest == b""


def test_unix() -> None:
    block = b"/run/src.sock".ljust(108, b"\0") + b"/run/dst.sock".ljust(108, b"\0")
    result = parse(header(0x21, 0x31, block))
    assert result.header == ProxyHeader(
        ProxyCommand.PROXY, ProxyFamily.UNIX, "/run/src.sock", None, "/run/dst.sock", None
    )


def test_local_unspec_uses_the_real_connection() -> None:
    result = parse(header(0x20, 0x00, b"") + b"QUIT\r\n")
    assert result.header == ProxyHeader(ProxyCommand.LOCAL, ProxyFamily.UNSPEC)
    assert result.header.source is None and result.header.source_port is None
    assert result.rest == b"QUIT\r\n"


def test_local_with_addresses_ignores_them() -> None:
    result = parse(header(0x20, 0x11, ipv4_block("10.0.0.1", "10.0.0.2", 1, 2)))
    assert result.header == ProxyHeader(ProxyCommand.LOCAL, ProxyFamily.TCP4)


def test_tlvs_are_returned_and_skipped() -> None:
    tlvs = (
        tlv(0x01, b"smtp")  # ALPN
        + tlv(0x02, b"mx.example.org")  # authority
        + tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))  # SSL with a sub-TLV
        + tlv(0x04, b"")  # NOOP, empty
        + tlv(0x04, b"\0" * 40)  # NOOP padding
    )
    data = header(0x21, 0x11, ipv4_block("192.0.2.1", "192.0.2.2", 1234, 25), tlvs)
    result = parse(data + b"EHLO x\r\n")
    assert result.header.source == "192.0.2.1"
    assert result.header.tlvs == (
        (0x01, b"smtp"),
        (0x02, b"mx.example.org"),
        (0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3")),
        (0x04, b""),
        (0x04, b"\0" * 40),
    )
    assert result.rest == b"EHLO x\r\n"


def with_crc(data: bytes, crc_offset: int) -> bytes:
    from mta.net.proxy import _crc32c

    value = _crc32c(data)
    return data[:crc_offset] + value.to_bytes(4, "big") + data[crc_offset + 4 :]


def test_crc32c_known_vector() -> None:
    from mta.net.proxy import _crc32c

    assert _crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert _crc32c(b"") == 0


def test_crc32c_tlv_checked() -> None:
    block = ipv4_block("192.0.2.1", "192.0.2.2", 1234, 25)
    data = header(0x21, 0x11, block, tlv(0x03, b"\0\0\0\0"))
    good = with_crc(data, 16 + 12 + 3)
    assert parse(good).header.tlvs[0][0] == 0x03
    bad = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(ProxyError, match="CRC32C"):
        parse(bad)
    with pytest.raises(ProxyError, match="CRC32C"):
        parse(header(0x21, 0x11, block, tlv(0x03, b"\0\0\0")))


def test_byte_by_byte() -> None:
    data = HAPROXY_IPV4 + b"EHLO"
    parser = ProxyV2Parser()
    for byte in data[: len(HAPROXY_IPV4) - 1]:
        assert parser.feed(bytes([byte])) is None
    result = parser.feed(data[len(HAPROXY_IPV4) - 1 :])
    assert result is not None
    assert result.header.source_port == 42578
    assert result.rest == b"EHLO"


@given(st.lists(st.integers(min_value=0, max_value=120)))
def test_any_split_gives_the_same_result(cuts: list[int]) -> None:
    tlvs = tlv(0x02, b"authority") + tlv(0x04, b"pad")
    data = header(0x21, 0x21, ipv6_block("::1", "::2", 7, 25), tlvs) + b"DATA"
    expected = parse(data)
    parser = ProxyV2Parser()
    points = sorted({c for c in cuts if 0 < c < len(data)})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    result = None
    later = b""
    for index, piece in enumerate(pieces):
        result = parser.feed(piece)
        if result is not None:
            later = b"".join(pieces[index + 1 :])
            break
    assert result is not None
    assert result.header == expected.header
    assert result.rest + later == expected.rest


def test_truncated_header_waits() -> None:
    data = header(0x21, 0x11, ipv4_block("192.0.2.1", "192.0.2.2", 1, 2))
    parser = ProxyV2Parser()
    assert parser.feed(data[:5]) is None
    assert parser.feed(data[5:20]) is None
    assert parser.feed(b"") is None
    assert parser.feed(data[20:-1]) is None
    result = parser.feed(data[-1:])
    assert result is not None and result.rest == b""


def test_feed_after_completion_is_a_programming_error() -> None:
    parser = ProxyV2Parser()
    assert parser.feed(HAPROXY_IPV4) is not None
    with pytest.raises(RuntimeError):
        parser.feed(b"x")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"EHLO client\r\n", "invalid signature"),
        (b"\r\n\r\n\x00\r\nQUIX", "invalid signature"),
        (b"\x00", "invalid signature"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 25\r\n", "version 1"),
        (SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12, "invalid version"),
        (SIGNATURE + b"\x31\x11\x00\x0c" + b"\0" * 12, "invalid version"),
        (SIGNATURE + b"\x22\x11\x00\x0c" + b"\0" * 12, "unknown command"),
        (SIGNATURE + b"\x2f\x11\x00\x0c" + b"\0" * 12, "unknown command"),
        (SIGNATURE + b"\x21\x12\x00\x0c" + b"\0" * 12, "unsupported address family"),  # UDP4
        (SIGNATURE + b"\x21\x22\x00\x24" + b"\0" * 36, "unsupported address family"),  # UDP6
        (SIGNATURE + b"\x21\x41\x00\x0c" + b"\0" * 12, "unsupported address family"),
        (SIGNATURE + b"\x21\x10\x00\x0c" + b"\0" * 12, "unsupported address family"),
        (SIGNATURE + b"\x21\x11\x00\x0b" + b"\0" * 11, "address info too short"),
        (SIGNATURE + b"\x21\x21\x00\x0c" + b"\0" * 12, "address info too short"),
        (SIGNATURE + b"\x21\x31\x00\x24" + b"\0" * 36, "address info too short"),
        (SIGNATURE + b"\x21\x11\xff\xff", "header too long"),
        (SIGNATURE + b"\x21\x00\x00\x00", "UNSPEC family not supported"),
    ],
)
def test_refused(data: bytes, message: str) -> None:
    with pytest.raises(ProxyError, match=message):
        ProxyV2Parser().feed(data)


def test_garbage_is_refused_on_the_first_byte() -> None:
    with pytest.raises(ProxyError):
        ProxyV2Parser().feed(b"G")


def test_proxy_error_is_an_mta_error() -> None:
    assert issubclass(ProxyError, MTAError)


def test_length_limit() -> None:
    block = ipv4_block("192.0.2.1", "192.0.2.2", 1, 2)
    fits = header(0x21, 0x11, block, tlv(0x04, b"\0" * (DEFAULT_MAX_LENGTH - 16 - 12 - 3)))
    assert len(fits) == DEFAULT_MAX_LENGTH
    assert parse(fits).header.source == "192.0.2.1"
    too_long = header(0x21, 0x11, block, tlv(0x04, b"\0" * (DEFAULT_MAX_LENGTH - 16 - 12 - 2)))
    with pytest.raises(ProxyError, match="too long"):
        parse(too_long)
    assert parse(too_long, max_length=4096).header.tlvs[0][0] == 0x04
    with pytest.raises(ValueError):
        ProxyV2Parser(max_length=100)


@pytest.mark.parametrize(
    "tlvs",
    [
        b"\x04",  # one byte
        b"\x04\x00",  # two bytes
        tlv(0x04, b"abc")[:-1],  # value shorter than its length
        tlv(0x04, b"") + b"\x01\x00\x05ab",  # second TLV overruns
    ],
)
def test_malformed_tlvs(tlvs: bytes) -> None:
    data = header(0x21, 0x11, ipv4_block("192.0.2.1", "192.0.2.2", 1, 2), tlvs)
    with pytest.raises(ProxyError, match="TLV"):
        parse(data)


def test_unix_path_without_nul_uses_all_108_bytes() -> None:
    block = b"a" * 108 + b"b" * 108
    result = parse(header(0x21, 0x31, block))
    assert result.header.source == "a" * 108
    assert result.header.destination == "b" * 108


@given(st.binary(max_size=64))
def test_random_bytes_never_crash(data: bytes) -> None:
    parser = ProxyV2Parser()
    try:
        result = parser.feed(data)
    except ProxyError:
        return
    if result is not None:
        assert data.startswith(SIGNATURE)
    else:
        assert SIGNATURE.startswith(data[:12])
