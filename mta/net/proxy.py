"""A sans-IO parser for the PROXY protocol version 2 header (``listen on ...
proxy-v2``), as described in haproxy's proxy-protocol.txt section 2.2.

Feed it the first bytes of a connection until it returns a result: the header
(command, family, addresses, TLVs) and the bytes that followed it, which
belong to the SMTP session.  Anything wrong raises :class:`ProxyError` and the
caller drops the connection, as OpenSMTPD does (proxy.c).

OpenSMTPD's rules, kept here: version 2 only; commands LOCAL and PROXY; the
families UNSPEC, TCP over IPv4 / IPv6 and UNIX stream (datagram transports are
refused); the length must cover the address block of the family; PROXY with
UNSPEC is refused.  For LOCAL (health checks) the real connection endpoints
are used: the result carries no addresses.  TLVs are checked to be well
framed (and a CRC32C TLV, when present, to match) but otherwise ignored.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import struct

import attrs

from mta.errors import MTAError

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "SIGNATURE",
    "ProxyCommand",
    "ProxyError",
    "ProxyFamily",
    "ProxyHeader",
    "ProxyResult",
    "ProxyV2Parser",
]

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_FIXED = 16  # signature, version/command, family, length
DEFAULT_MAX_LENGTH = 536
"""Largest whole header (16 fixed bytes + addresses + TLVs) accepted by default:
the minimal TCP segment, which every sender's header fits in one go."""

_PP2_TYPE_CRC32C = 0x03


class ProxyError(MTAError):
    """The PROXY header is missing, malformed or unsupported: drop the connection."""


class ProxyCommand(enum.Enum):
    LOCAL = 0x0
    PROXY = 0x1


class ProxyFamily(enum.Enum):
    UNSPEC = 0x00
    TCP4 = 0x11
    TCP6 = 0x21
    UNIX = 0x31


_ADDRESS_LENGTH = {
    ProxyFamily.UNSPEC: 0,
    ProxyFamily.TCP4: 12,
    ProxyFamily.TCP6: 36,
    ProxyFamily.UNIX: 216,
}


@attrs.frozen
class ProxyHeader:
    """A parsed PROXY v2 header.

    For PROXY over TCP4 / TCP6, ``source`` and ``destination`` are IP address
    texts and the ports are set; over UNIX they are socket paths and the ports
    are None.  For LOCAL everything is None: use the real connection.
    ``tlvs`` are (type, value) pairs in the order received.
    """

    command: ProxyCommand
    family: ProxyFamily
    source: str | None = None
    source_port: int | None = None
    destination: str | None = None
    destination_port: int | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()


@attrs.frozen
class ProxyResult:
    """The header and the bytes received after it (the start of the SMTP session)."""

    header: ProxyHeader
    rest: bytes


class ProxyV2Parser:
    """Accumulates the header; :meth:`feed` returns None until it is complete.

    At most ``max_length`` bytes are buffered (default
    :data:`DEFAULT_MAX_LENGTH`; it cannot be below the 232 bytes of a header
    carrying UNIX addresses).
    """

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < _FIXED + _ADDRESS_LENGTH[ProxyFamily.UNIX]:
            raise ValueError(f"max_length too small: {max_length}")
        self._max_length = max_length
        self._buffer = b""
        self._total = 0  # whole header length, once the fixed part is known
        self._done = False

    def feed(self, data: bytes) -> ProxyResult | None:
        """Add received bytes; return the result once the header is complete.

        Raises ProxyError as soon as the bytes cannot start a valid header, and
        RuntimeError if called again after the result was returned."""
        if self._done:
            raise RuntimeError("the PROXY header is already complete")
        buffer = self._buffer + data
        if self._total == 0:
            if buffer[:12] != SIGNATURE[: len(buffer[:12])]:
                if buffer.startswith(b"PROXY "):
                    raise ProxyError("protocol error: PROXY version 1 is not supported")
                raise ProxyError("protocol error: invalid signature")
            if len(buffer) < _FIXED:
                self._buffer = buffer
                return None
            self._total = self._check_fixed(buffer)
        if len(buffer) < self._total:
            self._buffer = buffer
            return None
        self._done = True
        self._buffer = b""
        header = _parse(buffer[: self._total])
        return ProxyResult(header, buffer[self._total :])

    def _check_fixed(self, buffer: bytes) -> int:
        version_command = buffer[12]
        if version_command >> 4 != 2:
            raise ProxyError("protocol error: invalid version")
        try:
            ProxyCommand(version_command & 0xF)
        except ValueError:
            raise ProxyError("protocol error: unknown command") from None
        try:
            family = ProxyFamily(buffer[13])
        except ValueError:
            raise ProxyError("protocol error: unsupported address family") from None
        length = int.from_bytes(buffer[14:16], "big")
        if length < _ADDRESS_LENGTH[family]:
            raise ProxyError("protocol error: address info too short")
        total = _FIXED + length
        if total > self._max_length:
            raise ProxyError(f"protocol error: header too long ({total} bytes)")
        return total


def _parse(header: bytes) -> ProxyHeader:
    command = ProxyCommand(header[12] & 0xF)
    family = ProxyFamily(header[13])
    size = _ADDRESS_LENGTH[family]
    tlvs = _parse_tlvs(header, _FIXED + size)
    if command is ProxyCommand.LOCAL:
        return ProxyHeader(command, family, tlvs=tlvs)
    block = header[_FIXED : _FIXED + size]
    if family is ProxyFamily.UNSPEC:
        raise ProxyError("address translation: UNSPEC family not supported for PROXYing")
    if family is ProxyFamily.TCP4:
        src, dst, sport, dport = struct.unpack("!4s4sHH", block)
        return ProxyHeader(
            command,
            family,
            str(ipaddress.IPv4Address(src)),
            sport,
            str(ipaddress.IPv4Address(dst)),
            dport,
            tlvs,
        )
    if family is ProxyFamily.TCP6:
        src, dst, sport, dport = struct.unpack("!16s16sHH", block)
        return ProxyHeader(
            command,
            family,
            str(ipaddress.IPv6Address(src)),
            sport,
            str(ipaddress.IPv6Address(dst)),
            dport,
            tlvs,
        )
    return ProxyHeader(
        command,
        family,
        _unix_path(block[:108]),
        None,
        _unix_path(block[108:]),
        None,
        tlvs,
    )


def _unix_path(raw: bytes) -> str:
    return os.fsdecode(raw.split(b"\0", 1)[0])


def _parse_tlvs(header: bytes, pos: int) -> tuple[tuple[int, bytes], ...]:
    tlvs: list[tuple[int, bytes]] = []
    end = len(header)
    while pos < end:
        if end - pos < 3:
            raise ProxyError("protocol error: truncated TLV")
        kind = header[pos]
        length = int.from_bytes(header[pos + 1 : pos + 3], "big")
        start = pos + 3
        if start + length > end:
            raise ProxyError("protocol error: TLV longer than the header")
        if kind == _PP2_TYPE_CRC32C:
            if length != 4:
                raise ProxyError("protocol error: bad CRC32C TLV")
            zeroed = header[:start] + b"\0\0\0\0" + header[start + 4 :]
            if _crc32c(zeroed) != int.from_bytes(header[start : start + 4], "big"):
                raise ProxyError("protocol error: CRC32C mismatch")
        tlvs.append((kind, header[start : start + length]))
        pos = start + length
    return tuple(tlvs)


def _make_crc32c_table() -> tuple[int, ...]:
    table: list[int] = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _make_crc32c_table()


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as PP2_TYPE_CRC32C carries it."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
