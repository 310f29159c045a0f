"""The report events smtpd sends to filters, one frozen class each, carrying what
the event says; :meth:`params` gives the fields after the session id, as
``lka_filter.c`` ``lka_report_smtp_*`` write them (checked against the 6.8 trace
in ``shared/reference``).  :func:`mta.filters.encode.encode_report` makes the line.

Ids are ints: a message id is written ``%08x``, an envelope id ``%016x``.  Every
text goes through :func:`~mta.filters.protocol.field`.  ``protocol-server`` is one
reply line (a multi-line reply is one event per line, as smtpd sends it);
``protocol-client`` is the client's line, with AUTH secrets masked
(:meth:`ProtocolClient.of_command`, :meth:`ProtocolClient.masked`).
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from mta.filters.protocol import (
    Address,
    AuthResult,
    Decision,
    FCrDNS,
    FilterPhase,
    ProtocolVersion,
    ReportEvent,
    TxResult,
    field,
    format_endpoint,
    format_id,
    format_msgid,
)

__all__ = [
    "MASK",
    "FilterReportEvent",
    "FilterResponse",
    "LinkAuth",
    "LinkConnect",
    "LinkDisconnect",
    "LinkGreeting",
    "LinkIdentify",
    "LinkTLS",
    "ProtocolClient",
    "ProtocolServer",
    "ReportPayload",
    "Timeout",
    "TxBegin",
    "TxCommit",
    "TxData",
    "TxEnvelope",
    "TxMail",
    "TxRcpt",
    "TxReset",
    "TxRollback",
]

MASK = "********"
"""What replaces an AUTH secret in ``protocol-client`` (``smtp_session.c``)."""


def _fields(*values: str) -> tuple[str, ...]:
    """Values made safe: ``|`` is kept only in the last one."""
    last = len(values) - 1
    return tuple(field(value, last=index == last) for index, value in enumerate(values))


@attrs.frozen
class LinkConnect:
    """``rdns|fcrdns|src|dest``: a client connected (smtp-in) or the relay did
    (smtp-out).  ``rdns`` is empty when there is no name."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.LINK_CONNECT
    rdns: str
    fcrdns: FCrDNS
    src: Address
    dest: Address

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return _fields(
            self.rdns, self.fcrdns.value, format_endpoint(self.src), format_endpoint(self.dest)
        )


@attrs.frozen
class LinkGreeting:
    """``hostname``: the name in the banner."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.LINK_GREETING
    hostname: str

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return _fields(self.hostname)


@attrs.frozen
class LinkIdentify:
    """``method|identity``: ``HELO`` or ``EHLO`` (``LHLO`` too for smtp-out) and
    the name given."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.LINK_IDENTIFY
    method: str
    identity: str

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return _fields(self.method, self.identity)


@attrs.frozen
class LinkTLS:
    """``version:cipher:bits`` (``ssl_to_text``), e.g. ``TLSv1.3:TLS_AES_256_GCM_SHA384:256``."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.LINK_TLS
    protocol: str
    cipher: str
    bits: int

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return _fields(f"{self.protocol}:{self.cipher}:{self.bits}")


@attrs.frozen
class LinkAuth:
    """An AUTH attempt: ``username|result`` in 0.6, ``result|username`` in 0.7."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.LINK_AUTH
    username: str
    result: AuthResult

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        if version is ProtocolVersion.V0_6:
            return _fields(self.username, self.result.value)
        return _fields(self.result.value, self.username)


@attrs.frozen
class LinkDisconnect:
    """The connection closed; no parameters."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.LINK_DISCONNECT

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return ()


@attrs.frozen
class TxReset:
    """``[msgid]``: the transaction was reset.  smtpd always has a message id here;
    smtpd-filters(7) makes it optional, and ``None`` leaves it out."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.TX_RESET
    msgid: int | None

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return () if self.msgid is None else (format_msgid(self.msgid),)


@attrs.frozen
class TxBegin:
    """``msgid``: a transaction began (the first accepted MAIL)."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.TX_BEGIN
    msgid: int

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return (format_msgid(self.msgid),)


@attrs.frozen
class TxMail:
    """``msgid|result|address``: the sender, without ``<>`` or parameters."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.TX_MAIL
    msgid: int
    result: TxResult
    address: str

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return _fields(format_msgid(self.msgid), self.result.value, self.address)


@attrs.frozen
class TxRcpt:
    """``msgid|result|address``: a recipient, without ``<>`` or parameters."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.TX_RCPT
    msgid: int
    result: TxResult
    address: str

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return _fields(format_msgid(self.msgid), self.result.value, self.address)


@attrs.frozen
class TxEnvelope:
    """``msgid|evpid``: an envelope was created for an accepted recipient."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.TX_ENVELOPE
    msgid: int
    evpid: int

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return (format_msgid(self.msgid), format_id(self.evpid))


@attrs.frozen
class TxData:
    """``msgid|result``: the answer to DATA."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.TX_DATA
    msgid: int
    result: TxResult

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return (format_msgid(self.msgid), self.result.value)


@attrs.frozen
class TxCommit:
    """``msgid|size``: the message was accepted; ``size`` in bytes as received."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.TX_COMMIT
    msgid: int
    size: int = attrs.field(validator=attrs.validators.ge(0))

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return (format_msgid(self.msgid), str(self.size))


@attrs.frozen
class TxRollback:
    """``msgid``: the transaction was abandoned."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.TX_ROLLBACK
    msgid: int

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return (format_msgid(self.msgid),)


@attrs.frozen
class ProtocolClient:
    """``command``: a line the client sent (build it with :meth:`of_command`)."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.PROTOCOL_CLIENT
    command: str

    @classmethod
    def of_command(cls, line: str) -> ProtocolClient:
        """A command line, an AUTH initial response masked: ``AUTH PLAIN ********``
        as smtpd writes it.  smtpd masks only PLAIN's; mta masks every mechanism's
        (``AUTH LOGIN`` may carry the user name)."""
        words = line.split(" ", 2)
        if len(words) == 3 and words[0].upper() == "AUTH":
            return cls(f"AUTH {words[1].upper()} {MASK}")
        return cls(line)

    @classmethod
    def masked(cls) -> ProtocolClient:
        """A line of an AUTH exchange (a response to a 334 challenge)."""
        return cls(MASK)

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return _fields(self.command)


@attrs.frozen
class ProtocolServer:
    """``response``: one line of a reply the server sent, without CRLF."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.PROTOCOL_SERVER
    response: str

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return _fields(self.response)


@attrs.frozen
class FilterReportEvent:
    """``builtin|proc|name|message``: a filter reported something (``builtin`` for
    smtpd's own filters, else ``proc``); ``name`` is the filter's."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.FILTER_REPORT
    builtin: bool
    name: str
    message: str

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return _fields("builtin" if self.builtin else "proc", self.name, self.message)


@attrs.frozen
class FilterResponse:
    """``phase|response[|param]``: how a filter answered at ``phase``, written with
    :attr:`~mta.filters.protocol.FilterPhase.response_name`.  ``param`` is the
    reply, the rewritten value or the report text; smtpd leaves it out for
    ``proceed`` and ``junk``."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.FILTER_RESPONSE
    phase: FilterPhase
    response: Decision
    param: str | None = None

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        if self.param is None:
            return (self.phase.response_name, self.response.value)
        return _fields(self.phase.response_name, self.response.value, self.param)


@attrs.frozen
class Timeout:
    """The session timed out; no parameters."""

    EVENT: ClassVar[ReportEvent] = ReportEvent.TIMEOUT

    def params(self, version: ProtocolVersion) -> tuple[str, ...]:
        return ()


ReportPayload = (
    LinkConnect
    | LinkGreeting
    | LinkIdentify
    | LinkTLS
    | LinkAuth
    | LinkDisconnect
    | TxReset
    | TxBegin
    | TxMail
    | TxRcpt
    | TxEnvelope
    | TxData
    | TxCommit
    | TxRollback
    | ProtocolClient
    | ProtocolServer
    | FilterReportEvent
    | FilterResponse
    | Timeout
)
