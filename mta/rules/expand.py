"""Recipient resolution at RCPT time: from one address to the deliveries it
means, following OpenSMTPD's ``lka_session.c``.

The recipient is matched against the rules.  A relay action yields one MTA
delivery of the address as is.  A local action expands it: through the
``virtual`` table (by address), or to the local user, then through the
``alias`` table (by user), then the ``userbase`` (an unknown user is refused
here, never accepted and bounced later) and the user's ``~/.forward``.
Expansion produces more nodes: addresses (matched against the rules again, as
internal, so they may relay elsewhere), users, files (``/path``), commands
(``|cmd``) and errors (``error:NXX text``).  Nodes are expanded breadth-first,
at most :data:`EXPAND_DEPTH` deep; a node already seen in the same context is
dropped (so alias loops end), and identical final deliveries are kept once.
The first failure refuses the whole recipient with a
:class:`~mta.rules.rejection.RecipientRejected` carrying the reply.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

import attrs

from mta import threads
from mta.config.model import Config, LocalDelivery, Relay, Rule
from mta.envelope import Address, DeliveryNode, EnvelopeKind
from mta.errors import PermanentFailure, TableError, TemporaryFailure
from mta.log import get_logger, visible
from mta.relay.srs import srs_decode
from mta.rules.forward import parse_forward, read_forward
from mta.rules.forwardcache import ForwardCache
from mta.rules.rejection import (
    RecipientDeferred,
    RecipientRefused,
    RecipientRejected,
    error_reply,
    expansion_failure,
    invalid_recipient,
    temporary_failure,
)
from mta.rules.ruleset import MatchContext, match_rule, rule_tables
from mta.rules.tableset import TableSet, is_blocking
from mta.tables.aliases import lookup_alias, lookup_virtual, read_include
from mta.tables.aliasnodes import (
    AliasAddress,
    AliasCommand,
    AliasError,
    AliasFile,
    AliasInclude,
    AliasNode,
    AliasUser,
)
from mta.tables.base import Table
from mta.tables.lookups import lookup_userinfo
from mta.tables.values import UserInfo

__all__ = [
    "EXPAND_DEPTH",
    "Delivery",
    "ForwardReader",
    "RecipientDeferred",
    "RecipientRefused",
    "RecipientRejected",
    "Resolver",
]

log = get_logger("expand")

EXPAND_DEPTH = 10
"""Nodes this deep are an expansion problem (OpenSMTPD ``EXPAND_DEPTH``)."""

ForwardReader = Callable[[UserInfo], str | None]
"""Reads a user's ``.forward``: its text, None when there is none; raises
TemporaryFailure (or PermanentFailure) when it cannot be used.  Blocking: it
runs in a worker thread."""


@attrs.frozen
class Delivery:
    """One envelope to create for an accepted recipient.

    ``kind`` is MDA for local actions, MTA for relay actions.  ``dest`` is the
    address the delivery is for (the recipient, or the address it was expanded
    from).  For MDA deliveries, ``node`` says what expansion ended on:
    ``mda_user`` is the local user (USER), or the user whose ``.forward`` named
    the file / command in ``mda_exec`` ("" when it came from an alias or
    virtual table: run it as the daemon's unprivileged user, OpenSMTPD's
    ``_smtpd``); ``mda_subaddress`` is the part after the sub-address
    delimiter.  The action's ``user`` option is for the delivery side to apply.
    ``internal`` marks deliveries produced by expansion.
    """

    action: str
    kind: EnvelopeKind
    dest: Address
    node: DeliveryNode = DeliveryNode.USER
    mda_user: str = ""
    mda_exec: str = ""
    mda_subaddress: str = ""
    internal: bool = False


class _Kind(enum.Enum):
    ADDRESS = "address"
    USERNAME = "username"
    FILENAME = "filename"
    COMMAND = "command"
    ERROR = "error"


_Value = Address | str | AliasError


@attrs.define(eq=False)
class _Node:
    """An expansion node (OpenSMTPD ``struct expandnode``)."""

    kind: _Kind
    value: _Value
    parent: _Node | None
    rule: Rule | None
    depth: int
    sameuser: bool = False
    realuser: bool = False
    uid: int = -1
    forwarded: bool = False
    user: str = ""  # a USERNAME's user once the sub-address is split off
    subaddress: str = ""
    srs: bool = False  # an ADDRESS decoded from SRS (internal, as if forwarded)

    def ancestor(self, kind: _Kind) -> _Node | None:
        node: _Node | None = self
        while node is not None and node.kind is not kind:
            node = node.parent
        return node

    @property
    def address(self) -> Address:
        assert isinstance(self.value, Address)
        return self.value

    @property
    def text(self) -> str:
        assert isinstance(self.value, str)
        return self.value


def _from_alias(entry: AliasNode) -> tuple[_Kind, _Value]:
    if isinstance(entry, AliasUser):
        return _Kind.USERNAME, entry.user.lower()
    if isinstance(entry, AliasAddress):
        return _Kind.ADDRESS, Address(entry.user, entry.domain.lower())
    if isinstance(entry, AliasFile):
        return _Kind.FILENAME, entry.path
    if isinstance(entry, AliasCommand):
        return _Kind.COMMAND, entry.command
    if isinstance(entry, AliasError):
        return _Kind.ERROR, entry
    raise AssertionError(f"unexpected alias node {entry!r}")  # includes are expanded first


class _Expansion:
    """The expansion of one recipient (OpenSMTPD ``struct lka_session``)."""

    def __init__(self, resolver: Resolver, ctx: MatchContext, rcpt: Address) -> None:
        self.resolver = resolver
        self.ctx = ctx
        self.rcpt = rcpt
        self.queue: deque[_Node] = deque()
        self.seen: set[tuple[object, ...]] = set()
        self.nodes: list[_Node] = []  # keeps nodes alive: their ids are in ``seen``
        self.deliveries: dict[tuple[object, ...], Delivery] = {}

    # -- failures --------------------------------------------------------------

    def refuse(self, reason: str) -> RecipientRejected:
        return RecipientRefused(invalid_recipient(self.rcpt), reason)

    def tempfail(self, reason: str) -> RecipientRejected:
        return RecipientDeferred(temporary_failure(self.rcpt), reason)

    def expansion(self, reason: str, *, temporary: bool) -> RecipientRejected:
        return RecipientRejected.of(expansion_failure(self.rcpt, temporary=temporary), reason)

    # -- the node tree ------------------------------------------------------------

    def insert(self, kind: _Kind, value: _Value, parent: _Node | None, rule: Rule | None) -> bool:
        """Queue a node unless the same node exists in the same context
        (OpenSMTPD ``expand_insert`` / ``expand_cmp``); True if queued."""
        sameuser = (
            kind is _Kind.USERNAME
            and parent is not None
            and parent.kind is _Kind.USERNAME
            and (parent.user or parent.text) == value
        )
        address_parent = parent.ancestor(_Kind.ADDRESS) if parent is not None else None
        user_parent = None
        if kind in (_Kind.FILENAME, _Kind.COMMAND) and parent is not None:
            user_parent = parent.ancestor(_Kind.USERNAME)
        key = (
            kind,
            sameuser,
            value,
            None if parent is None else id(address_parent),
            None if user_parent is None else id(user_parent),
        )
        if key in self.seen:
            return False
        self.seen.add(key)
        depth = 0 if parent is None else parent.depth + 1
        node = _Node(kind, value, parent, rule, depth, sameuser=sameuser)
        self.nodes.append(node)
        self.queue.append(node)
        return True

    def insert_all(self, entries: tuple[AliasNode, ...], parent: _Node, rule: Rule) -> int:
        count = 0
        for entry in entries:
            if isinstance(entry, AliasInclude):
                continue
            kind, value = _from_alias(entry)
            count += self.insert(kind, value, parent, rule)
        return count

    def submit(self, node: _Node, rule: Rule) -> None:
        """Record a final delivery (OpenSMTPD ``lka_submit``)."""
        assert rule.action is not None
        delivery: Delivery
        if node.kind is _Kind.ADDRESS:
            delivery = Delivery(
                rule.action,
                EnvelopeKind.MTA,
                node.address,
                internal=node.parent is not None or node.srs,
            )
            key: tuple[object, ...] = (rule.action, EnvelopeKind.MTA, node.address)
        else:
            origin = node.ancestor(_Kind.ADDRESS)
            assert origin is not None
            internal = origin.parent is not None or origin.srs
            if node.kind is _Kind.USERNAME:
                delivery = Delivery(
                    rule.action,
                    EnvelopeKind.MDA,
                    origin.address,
                    DeliveryNode.USER,
                    mda_user=node.user,
                    mda_subaddress=node.subaddress,
                    internal=internal,
                )
            else:
                parent = node.parent
                owner = ""
                if parent is not None and parent.kind is _Kind.USERNAME and parent.realuser:
                    owner = parent.user
                delivery = Delivery(
                    rule.action,
                    EnvelopeKind.MDA,
                    origin.address,
                    DeliveryNode.FILENAME if node.kind is _Kind.FILENAME else DeliveryNode.COMMAND,
                    mda_user=owner,
                    mda_exec=node.text,
                    internal=internal,
                )
            key = (
                rule.action,
                EnvelopeKind.MDA,
                delivery.node,
                delivery.mda_user,
                delivery.mda_exec,
                delivery.mda_subaddress,
            )
        self.deliveries.setdefault(key, delivery)

    # -- expansion -----------------------------------------------------------------

    async def run(self) -> list[Delivery]:
        rcpt = self.rcpt
        if not rcpt.domain:
            rcpt = Address(rcpt.local, self.resolver.smtpname.lower())
        self.insert(_Kind.ADDRESS, rcpt, None, None)
        while self.queue:
            await self.expand(self.queue.popleft())
        if not self.deliveries:
            raise self.expansion("expanded to an empty delivery list", temporary=False)
        return list(self.deliveries.values())

    async def expand(self, node: _Node) -> None:
        if node.depth >= self.resolver.max_depth:
            raise self.expansion("expansion too deep", temporary=False)
        if node.kind is _Kind.ADDRESS:
            await self.expand_address(node)
            return
        rule = node.rule
        assert rule is not None and rule.action is not None
        method = self.resolver.config.actions[rule.action].method
        assert isinstance(method, LocalDelivery)
        if node.kind is _Kind.USERNAME:
            await self.expand_username(node, rule, method)
        elif node.kind is _Kind.ERROR:
            if method.method == "forward-only":
                raise self.tempfail("error entry on a forward-only action")
            assert isinstance(node.value, AliasError)
            error = node.value
            raise RecipientRejected.of(error_reply(error.code, error.message, self.rcpt))
        else:
            parent = node.parent
            if parent is not None and parent.realuser and parent.uid == 0:
                raise self.tempfail(f"{node.kind.value} not allowed in root's .forward")
            if method.method == "forward-only":
                raise self.tempfail(f"{node.kind.value} on a forward-only action")
            self.submit(node, rule)

    async def expand_address(self, node: _Node) -> None:
        resolver = self.resolver
        ctx = self.ctx if node.parent is None else attrs.evolve(self.ctx, internal=True)
        if self._srs_decoded(node):
            ctx = attrs.evolve(self.ctx, internal=True)
        address = node.address
        try:
            rule = await resolver.match(ctx, address)
        except TemporaryFailure as exc:
            raise self.tempfail(str(exc)) from None
        if rule is None:
            raise self.refuse(f"no rule matched {address}")
        if rule.action is None:
            raise self.refuse(f"rejected by rule at line {rule.line}")
        node.rule = rule
        method = resolver.config.actions[rule.action].method
        if isinstance(method, Relay):
            self.submit(node, rule)
        elif method.virtual is not None:
            table = resolver.tables.get(method.virtual)
            try:
                entries = await resolver.aliases(table, address.local, address.domain)
            except TableError as exc:
                raise self.expansion(str(exc), temporary=True) from None
            if entries is None:
                raise self.expansion(f"no virtual entry for {address}", temporary=False)
            self.insert_all(entries, node, rule)
        else:
            self.insert(_Kind.USERNAME, address.local.lower(), node, rule)

    def _srs_decoded(self, node: _Node) -> bool:
        """A bounce (null sender) to an ``SRS0=``/``SRS1=`` address goes to the
        address it stands for, once its hash and age check out (OpenSMTPD's
        ``lka_expand``); one that does not is matched as it is, with a warning."""
        srs = self.resolver.config.srs
        address = node.address
        if (
            srs.key is None
            or not self.ctx.sender.is_null
            or address.local[:5].upper() not in ("SRS0=", "SRS1=")
        ):
            return False
        decoded = srs_decode(
            str(address), srs.key, srs.key_backup, srs.ttl_days, self.resolver.clock()
        )
        if decoded is None:
            log.warning("SRS failed to decode: %s", visible(str(address)))
            return False
        node.value = Address.parse(decoded)
        node.srs = True
        return True

    async def expand_username(self, node: _Node, rule: Rule, method: LocalDelivery) -> None:
        resolver = self.resolver
        if not node.sameuser and (method.alias is not None or method.virtual is not None):
            try:
                if method.virtual is not None:
                    table = resolver.tables.get(method.virtual)
                    entries = await resolver.aliases(table, node.text, "")
                else:
                    assert method.alias is not None
                    table = resolver.tables.get(method.alias)
                    entries = await resolver.aliases(table, node.text, None)
            except TableError as exc:
                raise self.expansion(str(exc), temporary=True) from None
            if entries is not None:
                self.insert_all(entries, node, rule)
                return
        delimiter = resolver.delimiter
        user, found, tag = node.text.partition(delimiter) if delimiter else (node.text, "", "")
        node.user, node.subaddress = user, (tag if found else "")
        try:
            info = await resolver.userinfo(method, user)
        except TableError as exc:
            raise self.tempfail(f"userbase lookup failed: {exc}") from None
        if info is None:
            raise self.refuse(f"no such user: {user}")
        node.realuser, node.uid = True, info.uid
        parent = node.parent
        if node.sameuser and parent is not None and parent.forwarded:
            self.submit(node, rule)
            return
        if method.user is not None and method.user != user:
            self.submit(node, rule)  # another delivery user: other users' .forward is skipped
            return
        node.forwarded = True
        try:
            text = await resolver.forwards.read(info, resolver.read_forward)
            entries = None if text is None else parse_forward(text)
        except TemporaryFailure as exc:
            raise self.expansion(str(exc), temporary=True) from None
        except PermanentFailure as exc:
            raise self.expansion(str(exc), temporary=False) from None
        if entries is not None and self.insert_all(entries, node, rule):
            return
        if method.method in ("forward-only", "expand-only"):
            raise self.expansion(
                f"no .forward for {user} on a {method.method} action",
                temporary=method.method == "forward-only",
            )
        self.submit(node, rule)


class Resolver:
    """Resolves recipients for one configuration (see the module docstring).

    ``tables`` is the configuration's :class:`TableSet`; ``smtpname`` completes
    a recipient without a domain; ``forward_reader`` reads ``.forward`` files
    (default :func:`mta.rules.forward.read_forward`) in a worker thread, and its
    results are reused for a second (:mod:`mta.rules.forwardcache`).
    """

    def __init__(
        self,
        config: Config,
        tables: TableSet,
        smtpname: str,
        *,
        forward_reader: ForwardReader = read_forward,
        max_depth: int = EXPAND_DEPTH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.tables = tables
        self.smtpname = smtpname
        self.forward_reader = forward_reader
        self.forwards = ForwardCache()
        self.max_depth = max_depth
        self.delimiter = config.smtp.sub_addr_delim
        self._rules_block = any(is_blocking(t) for t in rule_tables(config, tables))

    async def read_forward(self, info: UserInfo) -> str | None:
        """The ``.forward`` of a user, read in a worker thread (uncached)."""
        return await threads.run_sync(self.forward_reader, info)

    async def resolve(self, ctx: MatchContext, rcpt: Address) -> list[Delivery]:
        """The deliveries for ``rcpt`` (never empty), or RecipientRejected."""
        return await _Expansion(self, ctx, rcpt).run()

    async def match(self, ctx: MatchContext, rcpt: Address) -> Rule | None:
        """:func:`match_rule`, in a worker thread when a rule table may block."""
        if self._rules_block:
            return await threads.run_sync(match_rule, self.config, self.tables, ctx, rcpt)
        return match_rule(self.config, self.tables, ctx, rcpt)

    async def aliases(
        self, table: Table, user: str, domain: str | None
    ) -> tuple[AliasNode, ...] | None:
        """Alias (``domain`` None) or virtual entries of a user, include files
        read; None when there is no entry.  TableError on failure."""
        delimiter = self.delimiter
        if domain is None:
            entries = await self.tables.call(
                table, lambda: lookup_alias(table, user, delimiter, includes=False)
            )
        else:
            entries = await self.tables.call(
                table, lambda: lookup_virtual(table, user, domain, delimiter, includes=False)
            )
        if entries is None or not any(isinstance(e, AliasInclude) for e in entries):
            return entries
        result: dict[AliasNode, None] = {}
        for entry in entries:
            if isinstance(entry, AliasInclude):
                included = await threads.run_sync(read_include, entry.path)
                for item in included:
                    result.setdefault(item, None)
            else:
                result.setdefault(entry, None)
        return tuple(result)

    async def userinfo(self, method: LocalDelivery, user: str) -> UserInfo | None:
        """The user in the action's userbase (``<getpwnam>`` by default)."""
        if method.userbase is not None:
            table = self.tables.get(method.userbase)
        else:
            table = self.tables.builtin("<getpwnam>")
        return await self.tables.call(table, lambda: lookup_userinfo(table, user))
