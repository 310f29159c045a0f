"""The frozen configuration model: what a checked smtpd.conf means.

Both grammars end up here (the legacy one through a translation), so the rest
of mta never sees syntax.  Names are resolved and options validated by
:mod:`mta.config.build`; every object is an immutable ``attrs`` value and two
configurations that mean the same thing compare equal.  Source positions are
kept for messages but do not take part in equality.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar, cast

import attrs

__all__ = [
    "DEFAULT_BOUNCE_WARN",
    "Action",
    "AuthMode",
    "Ca",
    "Config",
    "Criterion",
    "Filter",
    "FilterBuiltin",
    "FilterChain",
    "FilterCondition",
    "FilterProc",
    "FilterRef",
    "InlineTable",
    "Listener",
    "LocalDelivery",
    "MdaLimits",
    "MtaLimits",
    "NamedTable",
    "Pki",
    "Proc",
    "QueueOptions",
    "Relay",
    "Rule",
    "SchedulerLimits",
    "SmtpOptions",
    "SocketListener",
    "SrsOptions",
    "TableDecl",
    "TableRef",
    "TlsMode",
    "replace",
]

DEFAULT_BOUNCE_WARN = (4 * 3600,)

T = TypeVar("T")


def replace(obj: T, **changes: Any) -> T:
    """``attrs.evolve`` with field names chosen at run time."""
    return cast(T, attrs.evolve(cast(Any, obj), **changes))


def _pos() -> int:
    return attrs.field(default=0, eq=False, repr=False)


# -- tables ------------------------------------------------------------------


@attrs.frozen
class TableDecl:
    """A ``table`` directive: a named table and where its data comes from."""

    name: str
    backend: str  # "static", "file", "db", "getpwnam", "proc" or a helper name
    config: str | None = None  # absolute path or backend configuration
    entries: tuple[tuple[str, str | None], ...] = ()  # inline data
    file: str = attrs.field(default="", eq=False, repr=False)
    line: int = _pos()
    # set by the builder when a regex criterion or filter uses the table: the
    # daemon then refuses contents (at open and at reload) whose patterns do not compile
    regex: bool = attrs.field(default=False, eq=False, repr=False)


@attrs.frozen
class NamedTable:
    """A reference to a declared or built-in table: ``<name>``."""

    name: str


@attrs.frozen
class InlineTable:
    """An anonymous table written in place: ``"value"`` or ``{ a, b }`` or ``{ k = v }``."""

    entries: tuple[tuple[str, str | None], ...]


TableRef = NamedTable | InlineTable


# -- pki, ca, procs, filters ---------------------------------------------------


@attrs.frozen
class Pki:
    """A ``pki`` entry: a certificate and key used by listeners and relays."""

    name: str
    cert: str | None = None
    key: str | None = None
    dhe: str = "none"  # none, auto, legacy
    line: int = _pos()
    file: str = attrs.field(default="", eq=False, repr=False)


@attrs.frozen
class Ca:
    """A ``ca`` entry: a CA certificate file used to verify peers."""

    name: str
    cert: str | None = None
    line: int = _pos()
    file: str = attrs.field(default="", eq=False, repr=False)


@attrs.frozen
class Proc:
    """A ``proc`` (or the process behind ``filter ... proc-exec``)."""

    name: str
    command: str
    user: str | None = None
    group: str | None = None
    chroot: str | None = None


class FilterCondition(enum.Enum):
    """What a builtin filter tests."""

    FCRDNS = "fcrdns"
    RDNS = "rdns"
    SRC = "src"
    HELO = "helo"
    AUTH = "auth"
    MAIL_FROM = "mail-from"
    RCPT_TO = "rcpt-to"


@attrs.frozen
class FilterBuiltin:
    """``filter NAME phase P match [!]COND DECISION [arg]``."""

    phase: str
    condition: FilterCondition
    negated: bool
    table: TableRef | None
    regex: bool
    decision: str  # reject, disconnect, rewrite, report, junk, bypass
    argument: str | None = None


@attrs.frozen
class FilterProc:
    """``filter NAME proc P`` or ``filter NAME proc-exec "cmd"`` (proc named like the filter)."""

    proc: str
    exec_: bool = False


@attrs.frozen
class FilterChain:
    """``filter NAME chain { a, b }``."""

    filters: tuple[str, ...]


Filter = FilterBuiltin | FilterProc | FilterChain


@attrs.frozen
class FilterRef:
    """How a listener or relay names its filter: one name, or an anonymous chain."""

    names: tuple[str, ...]
    chain: bool  # True for "filter { a, b }"


# -- listeners -----------------------------------------------------------------


class TlsMode(enum.Enum):
    """How a listener offers TLS."""

    NONE = "none"
    STARTTLS = "tls"
    REQUIRE = "tls-require"
    SMTPS = "smtps"


class AuthMode(enum.Enum):
    """Whether a listener offers or demands SMTP AUTH."""

    NONE = "none"
    REQUIRED = "auth"
    OPTIONAL = "auth-optional"


@attrs.frozen
class Listener:
    """One ``listen on INTERFACE ...`` directive."""

    interface: str
    family: str | None = None  # "inet4", "inet6"
    port: int | None = None  # None: 25, or 465 with smtps
    tls: TlsMode = TlsMode.NONE
    verify: bool = False
    pki: tuple[str, ...] = ()
    ca: str | None = None
    ciphers: str | None = None
    protocols: str | None = None
    auth: AuthMode = AuthMode.NONE
    auth_table: TableRef | None = None
    tag: str | None = None
    hostname: str | None = None
    hostnames: TableRef | None = None
    senders: TableRef | None = None
    masquerade: bool = False
    mask_src: bool = False
    received_auth: bool = False
    no_dsn: bool = False
    proxy_v2: bool = False
    filter: FilterRef | None = None
    file: str = attrs.field(default="", eq=False, repr=False)
    line: int = _pos()

    @property
    def effective_port(self) -> int:
        """The port to bind: the configured one or the default for the TLS mode."""
        if self.port is not None:
            return self.port
        return 465 if self.tls is TlsMode.SMTPS else 25


@attrs.frozen
class SocketListener:
    """The local enqueue socket (``listen on socket``), which always exists."""

    filter: FilterRef | None = None
    mask_src: bool = False
    no_dsn: bool = False
    tag: str | None = None
    explicit: bool = attrs.field(default=False, eq=False)


# -- actions -------------------------------------------------------------------


@attrs.frozen
class LocalDelivery:
    """A local delivery method and its options."""

    method: str  # mbox, maildir, lmtp, mda, forward-only, expand-only
    path: str | None = None  # maildir path, lmtp destination or mda command
    junk: bool = False  # maildir junk
    rcpt_to: bool = False  # lmtp rcpt-to
    alias: TableRef | None = None
    virtual: TableRef | None = None
    userbase: TableRef | None = None  # None means <getpwnam>
    user: str | None = None
    wrapper: str | None = None


@attrs.frozen
class Relay:
    """The ``relay`` method and its options."""

    backup: bool = False
    backup_mx: str | None = None
    host: TableRef | None = None
    domain: TableRef | None = None
    helo: str | None = None
    helo_src: TableRef | None = None
    src: TableRef | None = None
    pki: str | None = None
    ca: str | None = None
    ciphers: str | None = None
    protocols: str | None = None
    tls: str | None = None  # None, "required" (verify), "no-verify"
    auth: TableRef | None = None
    mail_from: str | None = None  # an address, "user" or "@domain" (legacy "as")
    filter: FilterRef | None = None
    srs: bool = False


@attrs.frozen
class Action:
    """An ``action NAME ...``: how envelopes that match a rule get delivered."""

    name: str
    method: LocalDelivery | Relay
    ttl: int | None = None  # seconds
    line: int = _pos()

    @property
    def is_local(self) -> bool:
        return isinstance(self.method, LocalDelivery)


# -- rules ---------------------------------------------------------------------


@attrs.frozen
class Criterion:
    """One ``match`` criterion; ``kind`` names it, ``table`` is its operand if any."""

    kind: str  # e.g. "from", "for", "tag", "helo", "auth", "mail-from", "rcpt-to", "tls"
    variant: str | None = None  # from: local/any/socket/src/rdns; for: local/any/domain
    table: TableRef | None = None
    regex: bool = False
    negated: bool = False


@attrs.frozen
class Rule:
    """A ``match ... action NAME`` or ``match ... reject`` rule."""

    criteria: tuple[Criterion, ...]
    action: str | None  # None means reject
    line: int = _pos()
    file: str = attrs.field(default="", eq=False, repr=False)

    def get(self, kind: str) -> Criterion | None:
        """The criterion of a kind, if the rule has one."""
        for crit in self.criteria:
            if crit.kind == kind:
                return crit
        return None


# -- global options --------------------------------------------------------------


@attrs.frozen
class QueueOptions:
    compression: bool = False
    encryption: bool = False
    key: str | None = None  # the 32-byte key, or "stdin"
    ttl: int = 4 * 86400


@attrs.frozen
class SmtpOptions:
    max_rcpt: int = 1000
    max_mails: int = 100
    ciphers: str | None = None
    max_message_size: int = 35 * 1024 * 1024
    sub_addr_delim: str = "+"


@attrs.frozen
class SchedulerLimits:
    max_inflight: int = 5000
    max_evp_batch_size: int = 256
    max_msg_batch_size: int = 1024
    max_schedule: int = 10


@attrs.frozen
class MdaLimits:
    max_session: int = 50
    max_session_per_user: int = 7
    task_lowat: int = 30
    task_hiwat: int = 50
    task_release: int = 10


MTA_LIMIT_DEFAULTS: dict[str, int] = {
    "max-conn-per-host": 10,
    "max-conn-per-route": 5,
    "max-conn-per-source": 100,
    "max-conn-per-connector": 20,
    "max-conn-per-relay": 100,
    "max-conn-per-domain": 100,
    "conn-delay-host": 0,
    "conn-delay-route": 0,  # OpenSMTPD: 5; see mta.relay.limits
    "conn-delay-source": 0,
    "conn-delay-connector": 0,
    "conn-delay-relay": 0,  # OpenSMTPD: 2
    "conn-delay-domain": 0,
    "reconn-delay-route": 3,
    "session-mail-max": 100,
    "session-transaction-delay": 0,
    "session-keepalive": 10,
    "max-failures-per-session": 25,
    "task-hiwat": 50,
    "task-lowat": 30,
    "task-release": 10,
}


@attrs.frozen
class MtaLimits:
    """``mta limit [for domain D] ...``: only the values set are kept."""

    values: tuple[tuple[str, int], ...] = ()
    family: str | None = None  # inet4 / inet6

    def get(self, key: str) -> int:
        for k, v in self.values:
            if k == key:
                return v
        return MTA_LIMIT_DEFAULTS[key]


@attrs.frozen
class SrsOptions:
    key: str | None = None
    key_backup: str | None = None
    ttl_days: int = 4


@attrs.frozen
class WebInbox:
    """``web inbox on ADDRESS [port PORT] [keep COUNT]`` (mta's own line,
    :mod:`mta.config.web`): the daemon's web inbox of local deliveries."""

    address: str  # an IP address ("localhost" is written 127.0.0.1)
    port: int = 8025
    keep: int = 1000  # the most messages shown, the oldest dropped first


@attrs.frozen
class Config:
    """A whole checked configuration."""

    tables: dict[str, TableDecl] = attrs.field(factory=dict)
    pkis: dict[str, Pki] = attrs.field(factory=dict)
    cas: dict[str, Ca] = attrs.field(factory=dict)
    procs: dict[str, Proc] = attrs.field(factory=dict)
    filters: dict[str, Filter] = attrs.field(factory=dict)
    listeners: tuple[Listener, ...] = ()
    socket: SocketListener = attrs.field(factory=SocketListener)
    actions: dict[str, Action] = attrs.field(factory=dict)
    rules: tuple[Rule, ...] = ()
    queue: QueueOptions = attrs.field(factory=QueueOptions)
    smtp: SmtpOptions = attrs.field(factory=SmtpOptions)
    scheduler: SchedulerLimits = attrs.field(factory=SchedulerLimits)
    mda: MdaLimits = attrs.field(factory=MdaLimits)
    mda_wrappers: dict[str, str] = attrs.field(factory=dict)
    mta_max_deferred: int = 100
    mta_limits: dict[str, MtaLimits] = attrs.field(factory=dict)  # "" is the default
    srs: SrsOptions = attrs.field(factory=SrsOptions)
    bounce_warn: tuple[int, ...] = DEFAULT_BOUNCE_WARN
    admd: str | None = None
    ciphers: str | None = None  # legacy global "ciphers"
    web: WebInbox | None = None  # the web inbox line, None without one
    hostname: str = attrs.field(default="localhost", eq=False)
