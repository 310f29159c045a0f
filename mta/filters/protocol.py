"""The vocabulary of the smtpd-filters(7) protocol: versions, subsystems, report
events, filter phases, decisions, timestamps, ids, addresses and the rules that
keep every line one line.  Sans-IO: nothing here reads a clock or a socket.

The codec is split in modules, each importing this one:

- :mod:`mta.filters.protocol` (here): the enums and value types, :data:`MAX_LINE`,
  :func:`format_id` / :func:`parse_id`, :func:`field` (framing safety).
- :mod:`mta.filters.messages`: what a filter writes (``register|...``,
  ``filter-result|...``, ``filter-dataline|...``, ``report|...``), as frozen classes.
- :mod:`mta.filters.parse`: :class:`~mta.filters.parse.FilterOutputParser`, bytes in
  (any chunking), messages out, bounded by :data:`MAX_LINE`.
- :mod:`mta.filters.registration`: the handshake state, ``register|...`` up to
  ``register|ready``.
- :mod:`mta.filters.events`: the report events smtpd sends, one class each.
- :mod:`mta.filters.encode`: the handshake, ``report|...`` and ``filter|...`` lines.
- :mod:`mta.filters.verdict`: a ``reject`` / ``disconnect`` text made an SMTP reply.

Protocol version: mta speaks **0.7** by default (OpenSMTPD 7.4 and later; the
``config|protocol|0.7`` line exists since 7.6).  0.6 (OpenSMTPD 6.7 to 7.3, the
6.8 trace in ``shared/reference``) is available for byte-compatibility.  Their
lines differ in two things only: ``link-auth`` is ``username|result`` in 0.6 and
``result|username`` in 0.7 (OpenSMTPD commit 0a125ccc, "swap link-auth filter
arguments": fields that may contain ``|`` go last), and 0.6 handshakes have no
``config|protocol`` line.  Why 0.7, from the sources of the libraries filters are
built on:

- libopensmtpd 0.7 (Debian's ``libopensmtpd0``, under ``filter-dkimsign`` 0.5),
  ``opensmtpd.c`` ``osmtpd_newline``: every ``config|KEY|VALUE`` line is handed to
  the filter's callback and only ``smtp-session-timeout`` is checked (an integer),
  so unknown keys are harmless; in ``report|`` / ``filter|`` lines the version's
  major must be ``0`` ("Unsupported protocol received") and the minor only selects
  old layouts (``< 5``: ``filter-result|token|session``; ``< 6``: ``tx-mail`` as
  ``msgid|address|result``).  It cannot register ``link-auth`` at all.
- poolpOrg's Go ``OpenSMTPD-framework`` (``filter/filter.go`` ``Dispatch``)
  refuses any version but ``0.7``: "Unsupported protocol version".
- poolpOrg's ``filter-rspamd`` (``linkAuth``) compares the version string and
  reads ``link-auth`` either way; ``filter-senderscore`` ignores it.  Both skip
  every line up to ``config|ready``.

So 0.7 is the one version every one of them accepts, and it puts the
client-chosen user name last, where a ``|`` is allowed.

Framing: smtpd-filters(7) says ``|`` "may only appear in the last field".  A
value that comes from a client or the DNS is put on a line by :func:`field`: CR,
LF and NUL become spaces (as :meth:`mta.reply.Reply.encode` does), and so does
``|`` in any field but the last.  OpenSMTPD's values cannot hold CR or LF once
parsed, and mta's SMTP layer splits DATA on CRLF and normalises bare CR and LF,
so this is a guard that never changes a well-formed value; it means no client
can add a line or a field to what a filter reads.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re

import attrs

__all__ = [
    "DEFAULT_VERSION",
    "MAX_LINE",
    "SMTP_OUT_EVENTS",
    "Address",
    "AuthResult",
    "Decision",
    "FCrDNS",
    "FilterPhase",
    "InetAddress",
    "ProtocolVersion",
    "ReportEvent",
    "Subsystem",
    "Timestamp",
    "TxResult",
    "UnixAddress",
    "field",
    "format_endpoint",
    "format_id",
    "format_msgid",
    "format_source",
    "parse_id",
    "wire",
]

MAX_LINE = 66 * 1024
"""Longest line a filter may write, its LF (and an optional CR) excluded: room for
the longest SMTP content line mta accepts (65533 bytes, ``mta.smtp.data``) echoed
in a ``filter-dataline|<16>|<16>|`` line, with headroom.  Longer is a protocol
error; the parser never buffers more.  (The Go filters read with ``bufio.Scanner``,
whose default limit is 64 KiB: a line that long kills them, as with OpenSMTPD.)"""


class ProtocolVersion(enum.Enum):
    """The protocol version written in every ``report|`` and ``filter|`` line."""

    V0_6 = "0.6"
    V0_7 = "0.7"


DEFAULT_VERSION = ProtocolVersion.V0_7


class Subsystem(enum.Enum):
    """Where events come from: the SMTP server (``smtp-in``) or the relay client
    (``smtp-out``, reports only: OpenSMTPD filters nothing outbound)."""

    SMTP_IN = "smtp-in"
    SMTP_OUT = "smtp-out"


class ReportEvent(enum.Enum):
    """The report events (``lka_filter.c`` ``smtp_events[]``), all registrable for
    both subsystems."""

    LINK_CONNECT = "link-connect"
    LINK_DISCONNECT = "link-disconnect"
    LINK_GREETING = "link-greeting"
    LINK_IDENTIFY = "link-identify"
    LINK_TLS = "link-tls"
    LINK_AUTH = "link-auth"
    TX_RESET = "tx-reset"
    TX_BEGIN = "tx-begin"
    TX_MAIL = "tx-mail"
    TX_RCPT = "tx-rcpt"
    TX_ENVELOPE = "tx-envelope"
    TX_DATA = "tx-data"
    TX_COMMIT = "tx-commit"
    TX_ROLLBACK = "tx-rollback"
    PROTOCOL_CLIENT = "protocol-client"
    PROTOCOL_SERVER = "protocol-server"
    FILTER_REPORT = "filter-report"
    FILTER_RESPONSE = "filter-response"
    TIMEOUT = "timeout"


SMTP_OUT_EVENTS = frozenset(ReportEvent) - {ReportEvent.FILTER_REPORT, ReportEvent.FILTER_RESPONSE}
"""The events OpenSMTPD's relay client emits (``mta_session.c`` ``mta_report_*``:
its ``filter-response`` is compiled out, and nothing is filtered outbound)."""


_RESPONSE_NAMES = {"connect": "connected", "starttls": "tls"}


class FilterPhase(enum.Enum):
    """The phases a filter may register (``lka_filter.c`` ``filter_execs[]``); only
    ``smtp-in`` has them."""

    # members are singletons compared by identity: hash them so too (Enum's own
    # __hash__ is Python code, and phases key the chains' tables at every command)
    __hash__ = object.__hash__

    CONNECT = "connect"
    HELO = "helo"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL_FROM = "mail-from"
    RCPT_TO = "rcpt-to"
    DATA = "data"
    DATA_LINE = "data-line"
    RSET = "rset"
    QUIT = "quit"
    NOOP = "noop"
    HELP = "help"
    WIZ = "wiz"
    COMMIT = "commit"

    @property
    def response_name(self) -> str:
        """The phase as ``filter-response`` reports name it (``connected``, ``tls``,
        otherwise the phase: ``lka_report_smtp_filter_response``)."""
        return _RESPONSE_NAMES.get(self.value, self.value)


class Decision(enum.Enum):
    """What a ``filter-result`` decides.  ``report`` exists from OpenSMTPD 7.6 on
    (6.8 calls it an invalid directive); mta accepts it in both versions."""

    PROCEED = "proceed"
    JUNK = "junk"
    REJECT = "reject"
    DISCONNECT = "disconnect"
    REWRITE = "rewrite"
    REPORT = "report"

    @property
    def takes_parameter(self) -> bool:
        """``proceed`` and ``junk`` take none; the others need one."""
        return self not in (Decision.PROCEED, Decision.JUNK)


class FCrDNS(enum.Enum):
    """Forward-confirmed reverse DNS of the client, in ``link-connect``."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


class AuthResult(enum.Enum):
    """The outcome of an AUTH attempt, in ``link-auth``."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


class TxResult(enum.Enum):
    """The outcome of MAIL, RCPT or DATA, in ``tx-mail`` / ``tx-rcpt`` / ``tx-data``."""

    OK = "ok"
    PERMFAIL = "permfail"
    TEMPFAIL = "tempfail"


def _check_sec(instance: Timestamp, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"negative timestamp: {value}")


def _check_usec(instance: Timestamp, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value < 1_000_000:
        raise ValueError(f"microseconds out of range: {value}")


@attrs.frozen
class Timestamp:
    """A ``struct timeval``: seconds and microseconds since the epoch, written
    ``%lld.%06ld``.  The caller reads the clock (``Timestamp.of_ns(time.time_ns())``)."""

    sec: int = attrs.field(validator=_check_sec)
    usec: int = attrs.field(validator=_check_usec)

    @classmethod
    def of_ns(cls, ns: int) -> Timestamp:
        """From nanoseconds since the epoch, truncated to the microsecond."""
        sec, rest = divmod(ns, 1_000_000_000)
        return cls(sec, rest // 1000)

    def __str__(self) -> str:
        return f"{self.sec}.{self.usec:06d}"


_ID = re.compile(r"[0-9a-fA-F]{16}")


def format_id(value: int) -> str:
    """A session id, token or envelope id: 16 lowercase hex digits (``%016x``)."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"id out of range: {value}")
    return f"{value:016x}"


def format_msgid(value: int) -> str:
    """A message id: 8 lowercase hex digits (``%08x``)."""
    if not 0 <= value < 1 << 32:
        raise ValueError(f"message id out of range: {value}")
    return f"{value:08x}"


@functools.lru_cache(maxsize=4096)  # a message's data-lines repeat their two ids
def parse_id(text: str) -> int | None:
    """A session id or token as a filter echoes it: exactly 16 hex digits, else None."""
    if _ID.fullmatch(text) is None:
        return None
    return int(text, 16)


_UNSAFE = re.compile(r"[\r\n\0]")
_UNSAFE_INNER = re.compile(r"[\r\n\0|]")


def field(value: str, *, last: bool) -> str:
    """``value`` made safe as one field of a line: CR, LF and NUL become spaces, and
    ``|`` too unless it is the ``last`` field (where smtpd-filters(7) allows it)."""
    return (_UNSAFE if last else _UNSAFE_INNER).sub(" ", value)


def wire(text: str) -> bytes:
    """``text`` as the bytes it came from: UTF-8, and the bytes that were not UTF-8
    back as they were (mta's SMTP server decodes lines with ``surrogateescape``);
    any other lone surrogate becomes ``?``."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _check_port(instance: InetAddress, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"port out of range: {value}")


@attrs.frozen
class InetAddress:
    """An IPv4 or IPv6 socket address."""

    ip: IPAddress
    port: int = attrs.field(validator=_check_port)


@attrs.frozen
class UnixAddress:
    """A local (UNIX-domain) socket; OpenSMTPD reports its own socket's path."""

    path: str


Address = InetAddress | UnixAddress


def _ip_text(ip: IPAddress) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        # inet_ntop writes a mapped address as ::ffff:a.b.c.d; Python before 3.13
        # writes ::ffff:a0b:c0d
        text = f"::ffff:{mapped}" if mapped is not None else str(ip)
        return f"[{text}]"
    return str(ip)


def format_endpoint(address: Address) -> str:
    """``link-connect``'s ``src`` / ``dest``: ``a.b.c.d:port``, ``[v6]:port`` or
    ``unix:/path`` (``lka_report_smtp_link_connect``)."""
    if isinstance(address, UnixAddress):
        return f"unix:{address.path}"
    return f"{_ip_text(address.ip)}:{address.port}"


def format_source(address: Address) -> str:
    """The ``connect`` filter request's source: ``a.b.c.d``, ``[v6]`` or ``local``
    (``to.c`` ``sa_to_text``)."""
    if isinstance(address, UnixAddress):
        return "local"
    return _ip_text(address.ip)
