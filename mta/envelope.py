"""Mail addresses and envelopes: what the SMTP server, the rules, the spool and
the deliveries pass to each other.

An envelope is one recipient of one message, as in OpenSMTPD: a message with
three final recipients has three envelopes sharing its ``msgid``.  Values are
frozen; the spool stores them and hands them back unchanged.
"""

from __future__ import annotations

import enum

import attrs

from mta.status import StatusCode

__all__ = [
    "NULL_ADDRESS",
    "Address",
    "Body",
    "DeliveryNode",
    "DsnNotify",
    "DsnRet",
    "Envelope",
    "EnvelopeFlag",
    "EnvelopeKind",
]


@attrs.frozen
class Address:
    """``local@domain``; both parts empty is the null reverse-path ``<>``.

    The local part keeps the case the client used (delivery may care); the
    domain is stored lowercased.  Neither part contains ``@`` in the domain,
    CR, LF or NUL: parsers reject those before an Address is made.
    """

    local: str
    domain: str

    @property
    def is_null(self) -> bool:
        return not self.local and not self.domain

    def __str__(self) -> str:
        if self.is_null:
            return ""
        return f"{self.local}@{self.domain}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Split ``local@domain`` at the last ``@`` (no validation); ``""`` is ``<>``."""
        if not text:
            return NULL_ADDRESS
        local, at, domain = text.rpartition("@")
        if not at:
            return cls(text, "")
        return cls(local, domain.lower())


NULL_ADDRESS = Address("", "")


class EnvelopeKind(enum.Enum):
    """Which subsystem delivers an envelope (OpenSMTPD's ``type``)."""

    MDA = "mda"  # local delivery
    MTA = "mta"  # relay over SMTP/LMTP
    BOUNCE = "bounce"  # a delivery status notification to generate


class EnvelopeFlag(enum.Flag):
    """Envelope flags (OpenSMTPD ``EF_*``)."""

    NONE = 0
    AUTHENTICATED = enum.auto()  # the client was authenticated
    BOUNCE = enum.auto()  # this message is itself a bounce
    INTERNAL = enum.auto()  # produced by alias / .forward expansion


class DsnNotify(enum.Flag):
    """RFC 3461 ``NOTIFY=`` values, with OpenSMTPD's bit values."""

    NONE = 0
    SUCCESS = 1
    FAILURE = 2
    DELAY = 4
    NEVER = 8


class DsnRet(enum.Enum):
    """RFC 3461 ``RET=``."""

    NONE = ""
    FULL = "FULL"
    HDRS = "HDRS"


class Body(enum.Enum):
    """RFC 6152 ``BODY=``: what the client declared (unset means 7BIT)."""

    UNSET = ""
    SEVENBIT = "7BIT"
    EIGHTBITMIME = "8BITMIME"


class DeliveryNode(enum.Enum):
    """For a local (MDA) envelope: what the expansion ended on."""

    USER = "user"  # deliver with the action's method to ``mda_user``
    FILENAME = "filename"  # append to the file in ``mda_exec`` (alias ``/path``)
    COMMAND = "command"  # pipe into the command in ``mda_exec`` (alias ``|cmd``)


@attrs.frozen
class Envelope:
    """One recipient of one message, with everything needed to deliver it.

    ``id`` is the 64-bit envelope id (``msgid << 32 | random``) and is 0 until
    the spool assigns it.  ``rcpt`` is the address the client gave at RCPT;
    ``dest`` the final address after alias / virtual / ``.forward`` expansion.
    Times are Unix seconds.
    """

    msgid: int
    kind: EnvelopeKind
    dispatcher: str  # the name of the action that delivers it
    smtpname: str  # the name we announced to the client
    helo: str
    hostname: str  # the client's reverse DNS name, or "<unknown>"
    sockaddr: str  # the client's IP address as text, or "local"
    sender: Address
    rcpt: Address
    dest: Address
    ctime: int
    id: int = 0
    tag: str = ""
    username: str = ""  # the authenticated user, if any
    flags: EnvelopeFlag = EnvelopeFlag.NONE
    node: DeliveryNode = DeliveryNode.USER
    mda_user: str = ""  # the local user a local delivery runs as / delivers to
    mda_exec: str = ""  # the file or command of a FILENAME / COMMAND node
    mda_subaddress: str = ""  # the part after the sub-address delimiter
    dsn_notify: DsnNotify = DsnNotify.NONE
    dsn_ret: DsnRet = DsnRet.NONE
    dsn_envid: str = ""  # decoded (xtext removed)
    dsn_orcpt: str = ""  # "type;address", decoded
    body: Body = Body.UNSET
    smtputf8: bool = False
    ttl: int = 0  # 0: the action's ttl or the queue ttl applies
    retry: int = 0
    last_try: int = 0
    last_bounce: int = 0
    errorline: str = ""
    esc: StatusCode | None = None  # enhanced status code of the last failure (4.4.1)
    bounce_type: str = ""  # for BOUNCE envelopes: failed, delayed, delivered, relayed
    bounce_delay: int = 0  # for delayed bounces: the delay being reported

    @property
    def evpid_text(self) -> str:
        return f"{self.id:016x}"

    @property
    def msgid_text(self) -> str:
        return f"{self.msgid:08x}"
