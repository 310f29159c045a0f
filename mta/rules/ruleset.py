"""``match`` rule evaluation: which rule, if any, applies to one recipient.

As OpenSMTPD's ``ruleset_match``: rules are tried in file order and the first
whose every criterion holds wins; no rule means the recipient is refused.  In
each rule the criteria are checked in OpenSMTPD's order (tag, from, for, helo,
auth, tls, mail-from, rcpt-to), stopping at the first that fails, so a table
that would fail a lookup is only asked when the earlier criteria hold.  A
failed lookup is a :class:`~mta.errors.TemporaryFailure`.

Where the source of a session is concerned, ``from local`` and ``from any`` are
the tables ``<localhost>`` and ``<anyhost>`` asked with the client address as
text, ``"local"`` for the local socket, exactly as OpenSMTPD does.  Addresses
produced by alias / ``.forward`` expansion are matched with the source
``"local"`` (``MatchContext.internal``); they never match ``from socket`` or a
``from rdns`` without a table.  Unlike OpenSMTPD 6.8/7.x, ``tls`` works.
"""

from __future__ import annotations

import attrs

from mta.config.model import Config, Criterion, Rule
from mta.envelope import Address
from mta.errors import TableError, TemporaryFailure
from mta.rules.tableset import TableSet
from mta.tables import Service, Table

__all__ = ["MatchContext", "match_rule", "rule_tables"]

_ORDER = ("tag", "from", "for", "helo", "auth", "tls", "mail-from", "rcpt-to")

_FROM_TABLES = {"local": "<localhost>", "any": "<anyhost>"}
_FOR_TABLES = {"local": "<localnames>", "any": "<anydestination>"}


@attrs.frozen
class MatchContext:
    """What the rules may look at about the session and transaction.

    ``src`` is the client IP address as text, or ``"local"`` for the local
    socket (``socket`` True).  ``local`` says the session is local (socket or
    loopback client); rules do not use it: ``from local`` asks ``<localhost>``
    with ``src``, as OpenSMTPD does.  ``rdns`` is None when the client has no
    name (neither the hosts file nor reverse DNS gives one).  ``internal`` is
    set for addresses produced by expansion.
    """

    socket: bool
    src: str
    sender: Address
    local: bool = False
    rdns: str | None = None
    helo: str = ""
    tag: str | None = None
    auth_user: str | None = None
    tls: bool = False
    internal: bool = False


def _mailaddr_text(address: Address) -> str:
    # OpenSMTPD mailaddr_to_text: always "user@domain", "@" for the null sender
    return f"{address.local}@{address.domain}"


def _check_from(crit: Criterion, tables: TableSet, ctx: MatchContext) -> bool:
    variant = crit.variant or "src"
    if ctx.internal:
        if variant == "socket" or (variant == "rdns" and crit.table is None):
            return crit.negated  # fails even when negated: never for expanded addresses
        key = "local"
    elif variant == "socket":
        return ctx.socket
    elif variant == "rdns":
        if crit.table is None:
            return ctx.rdns is not None
        if ctx.rdns is None:
            return crit.negated  # fails even when negated: no name, no table match
        key = ctx.rdns
    else:
        key = "local" if ctx.socket else ctx.src
    if crit.regex:
        service = Service.REGEX
    elif variant == "rdns":
        service = Service.DOMAIN
    else:
        service = Service.NETADDR
    if crit.table is not None:
        table = tables.get(crit.table)
    else:
        table = tables.builtin(_FROM_TABLES[variant])
    return table.match(service, key)


def _check_for(crit: Criterion, tables: TableSet, rcpt: Address) -> bool:
    if crit.table is not None:
        table = tables.get(crit.table)
    else:
        table = tables.builtin(_FOR_TABLES[crit.variant or "any"])
    return table.match(Service.REGEX if crit.regex else Service.DOMAIN, rcpt.domain)


def _table_match(crit: Criterion, tables: TableSet, service: Service, key: str) -> bool:
    assert crit.table is not None
    return tables.get(crit.table).match(Service.REGEX if crit.regex else service, key)


def _check_auth(crit: Criterion, tables: TableSet, ctx: MatchContext) -> bool:
    user = ctx.auth_user
    if user is None:
        return False
    if crit.table is None:
        return True
    service = Service.MAILADDR if "@" in user else Service.STRING
    return _table_match(crit, tables, service, user)


def _check(crit: Criterion, tables: TableSet, ctx: MatchContext, rcpt: Address) -> bool:
    """One criterion, before negation."""
    kind = crit.kind
    if kind == "from":
        return _check_from(crit, tables, ctx)
    if kind == "for":
        return _check_for(crit, tables, rcpt)
    if kind == "tag":
        return _table_match(crit, tables, Service.STRING, ctx.tag or "")
    if kind == "helo":
        return _table_match(crit, tables, Service.DOMAIN, ctx.helo)
    if kind == "auth":
        return _check_auth(crit, tables, ctx)
    if kind == "tls":
        return ctx.tls
    if kind == "mail-from":
        return _table_match(crit, tables, Service.MAILADDR, _mailaddr_text(ctx.sender))
    if kind == "rcpt-to":
        return _table_match(crit, tables, Service.MAILADDR, _mailaddr_text(rcpt))
    raise TableError(f"unknown match criterion {kind!r}")


def _rule_matches(rule: Rule, tables: TableSet, ctx: MatchContext, rcpt: Address) -> bool:
    for kind in _ORDER:
        crit = rule.get(kind)
        if crit is None:
            continue
        if _check(crit, tables, ctx, rcpt) == crit.negated:
            return False
    return True


def match_rule(config: Config, tables: TableSet, ctx: MatchContext, rcpt: Address) -> Rule | None:
    """The first rule that matches ``rcpt`` in ``ctx``, or None (the recipient is
    refused).  The returned rule may be a ``reject`` rule (``action`` None).

    Raises TemporaryFailure when a table lookup fails.  Lookups are synchronous:
    call this in a worker thread when :func:`rule_tables` has blocking tables.
    """
    try:
        for rule in config.rules:
            if _rule_matches(rule, tables, ctx, rcpt):
                return rule
    except TableError as exc:
        raise TemporaryFailure(f"rule lookup failed: {exc}") from exc
    return None


def rule_tables(config: Config, tables: TableSet) -> list[Table]:
    """Every table the rules of ``config`` may ask (built-in ones included)."""
    found: dict[int, Table] = {}
    for rule in config.rules:
        for crit in rule.criteria:
            if crit.table is not None:
                table = tables.get(crit.table)
            elif crit.kind == "from" and crit.variant in _FROM_TABLES:
                table = tables.builtin(_FROM_TABLES[crit.variant])
            elif crit.kind == "for" and crit.variant in _FOR_TABLES:
                table = tables.builtin(_FOR_TABLES[crit.variant])
            else:
                continue
            found[id(table)] = table
    return list(found.values())
