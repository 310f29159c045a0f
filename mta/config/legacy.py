"""The legacy grammar (OpenSMTPD 5.x and 6.0), translated into modern statements.

A legacy configuration is not a second model: each statement is read with the
rules of OpenSMTPD 6.0.3's ``parse.y`` (and the few 5.x spellings) and emitted
as the same AST nodes the modern parser emits, so the builder never knows which
grammar a file used.

Rules
-----
``accept|reject [decision...] [lookup...] [delivery] [expire D] [forward-only]``
is read in 6.0.3's order: decisions (``from``, ``for``, ``sender``,
``recipient``, ``tagged``, ``[!] authenticated``) in any order, then lookups
(``alias``, ``virtual``, ``userbase``), then at most one delivery (``deliver
to ...`` or ``relay ...``), then ``expire`` / ``forward-only``.  So the old
``for local alias <t>`` and ``for domain D virtual <t>`` placements are simply a
``for`` decision followed by a lookup.  The decisions become match criteria
exactly like :mod:`mta.config.modern` builds them (``sender`` is ``mail-from``,
``recipient`` is ``rcpt-to``, ``tagged T`` is ``tag`` with a one-value inline
table, ``authenticated`` is ``auth``; ``from``/``for`` default to ``local``).

An ``accept`` rule also needs an action.  The delivery, its lookups and its
``expire`` form one :class:`~mta.config.model.Action`; rules whose action would
be equal share one.  Actions are named after their method: the first distinct
one is ``legacy-<method>`` (``legacy-mbox``, ``legacy-relay``,
``legacy-expand-only`` ...), later distinct ones ``legacy-<method>-2``,
``-3`` ... in file order.  The :class:`~mta.config.ast.ActionStmt` is emitted
right before the first rule that uses it.

Translation choices (all from 6.0.3's source):

* No delivery clause (``A_NONE``): ``lka_session.c`` accepts a local recipient
  only if an alias or ``~/.forward`` expands it, and fails permanently when
  there is none ("no .forward for user and no default action on rule"); that is
  the modern ``expand-only``.  With ``forward-only`` the same case is a
  temporary failure: the modern ``forward-only``.
* ``relay`` alone tries STARTTLS opportunistically (``mta_relay``: no
  ``F_STARTTLS`` means ``RELAY_TLS_OPTIONAL``), like the modern ``relay``.
  ``relay tls`` requires STARTTLS but never fails on the certificate (only
  ``F_TLS_VERIFY`` does): modern ``tls no-verify``.  ``relay tls verify`` is
  modern ``tls``.
* ``relay via URL`` becomes ``relay host URL`` with the URL rewritten in its
  modern spelling (legacy ``smtp://`` was plain: ``smtp+notls://``; no schema
  or ``smtp+tls://`` was opportunistic: ``smtp://``; ``tls://`` is
  ``smtp+tls://``; ``smtps+auth://label@h`` is ``smtps://label@h`` ...), which
  parses to the same relay host.  The URL alone never verifies certificates;
  ``verify`` adds modern ``tls``.  ``backup://H`` and ``tls+backup://H`` are
  ``relay backup mx H`` (with ``tls no-verify`` for the latter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from mta.config import ast, model
from mta.config.lexer import Token
from mta.config.modern import (
    MDA_LIMITS,
    SCHEDULER_LIMITS,
    SMTP_LIMITS,
    _check_delim,
    _limits,
    _ordered,
    _size,
    _where,
    mta_limit,
)
from mta.config.units import parse_delay
from mta.errors import TableError
from mta.tables.relayhost import RelayTLS, parse_relay_url

if TYPE_CHECKING:
    from mta.config.parser import Parser

__all__ = ["statement"]

MAX_TAG = 31  # SMTPD_TAG_SIZE - 1
MAX_BOUNCE_WARN = 4
MAX_ADDR_PART = 255  # SMTPD_MAXLOCALPARTSIZE / SMTPD_MAXDOMAINPARTSIZE - 1
_SECURE = (RelayTLS.STARTTLS, RelayTLS.SMTPS, RelayTLS.SECURE)

Method = model.LocalDelivery | model.Relay


def statement(p: Parser, word: str) -> None:
    """Parse one legacy statement that starts with ``word`` (already taken)."""
    {
        "accept": _accept,
        "reject": _reject,
        "expire": _expire,
        "max-message-size": _max_message_size,
        "bounce-warn": _bounce_warn,
        "limit": _limit,
        "subaddressing-delimiter": _subaddressing_delimiter,
        "ciphers": _ciphers,
        "max-mta-deferred": _max_mta_deferred,
    }[word](p)


def _taken(p: Parser) -> Token:
    last = p.c.last
    assert last is not None
    return last


# -- action names ------------------------------------------------------------------


@attrs.define
class _ActionNames:
    """The generated actions of one parse: delivery -> name, and a counter per method."""

    names: dict[tuple[Method, int | None], str] = attrs.field(factory=dict)
    counts: dict[str, int] = attrs.field(factory=dict)


def _action_names(p: Parser) -> _ActionNames:
    state = vars(p).setdefault("legacy_actions", _ActionNames())
    assert isinstance(state, _ActionNames)
    return state


def _action_for(p: Parser, method: Method, ttl: int | None, where: ast.Where) -> str:
    """The name of the action for this delivery, emitting it the first time."""
    state = _action_names(p)
    key = (method, ttl)
    name = state.names.get(key)
    if name is not None:
        return name
    base = "relay" if isinstance(method, model.Relay) else method.method
    count = state.counts.get(base, 0) + 1
    state.counts[base] = count
    name = f"legacy-{base}" if count == 1 else f"legacy-{base}-{count}"
    state.names[key] = name
    p.emit(ast.ActionStmt(model.Action(name, method, ttl, where.line), where))
    return name


# -- rules -------------------------------------------------------------------------


def _reject(p: Parser) -> None:
    where = _where(p)
    crits = _decisions(p)
    p.c.end()
    p.emit(ast.MatchStmt(_rule(crits, None, where), where))


def _rule(crits: dict[str, model.Criterion], action: str | None, where: ast.Where) -> model.Rule:
    crits.setdefault("from", model.Criterion("from", "local"))
    crits.setdefault("for", model.Criterion("for", "local"))
    return model.Rule(_ordered(crits), action, where.line, where.file)


def _accept(p: Parser) -> None:
    c = p.c
    where = _where(p)
    crits = _decisions(p)

    # lookups
    alias: model.TableRef | None = None
    virtual: model.TableRef | None = None
    userbase: model.TableRef | None = None
    mapping_tok: Token | None = None
    userbase_tok: Token | None = None
    while True:
        kw = c.accept("alias", "virtual", "userbase")
        if kw is None:
            break
        tok = _taken(p)
        if kw == "userbase":
            if userbase is not None:
                c.error("userbase specified multiple times", tok)
            userbase, userbase_tok = c.table(), tok
        else:
            if mapping_tok is not None:
                c.error(f"{kw} specified multiple times", tok)
            mapping_tok = tok
            if kw == "alias":
                alias = c.table()
            else:
                virtual = c.table()

    # delivery
    method: Method | None = None
    if c.accept("deliver"):
        c.expect("to")
        method = _deliver(p)
    elif c.accept("relay"):
        method = _relay(p)

    # accept parameters
    ttl: int | None = None
    forward_only: Token | None = None
    while True:
        kw = c.accept("expire", "forward-only")
        if kw is None:
            break
        tok = _taken(p)
        if kw == "forward-only":
            if forward_only is not None:
                c.error("forward-only specified multiple times", tok)
            forward_only = tok
        else:
            if ttl is not None:
                c.error("expire specified multiple times", tok)
            ttl = _delay(p, "expire")
    c.end()

    if isinstance(method, model.Relay):
        if userbase_tok is not None:
            c.error("userbase may not be used with a relay rule", userbase_tok)
        if mapping_tok is not None:
            c.error("aliases/virtual may not be used with a relay rule", mapping_tok)
    if forward_only is not None and method is not None:
        c.error("forward-only may not be used with a default action", forward_only)
    if method is None:
        method = model.LocalDelivery("forward-only" if forward_only else "expand-only")
    if isinstance(method, model.LocalDelivery):
        method = attrs.evolve(method, alias=alias, virtual=virtual, userbase=userbase)
    name = _action_for(p, method, ttl, where)
    p.emit(ast.MatchStmt(_rule(crits, name, where), where))


def _decisions(p: Parser) -> dict[str, model.Criterion]:
    """``from``, ``for``, ``sender``, ``recipient``, ``tagged``, ``[!] authenticated``."""
    c = p.c
    crits: dict[str, model.Criterion] = {}
    while True:
        if c.at_punct("!") and c.is_keyword(c.peek(1), "authenticated"):
            c.take()
            c.take()
            crits["auth"] = model.Criterion("auth", negated=True)
            continue
        kw = c.accept("from", "for", "sender", "recipient", "tagged", "authenticated")
        if kw is None:
            return crits
        tok = _taken(p)
        if kw == "authenticated":
            crits["auth"] = model.Criterion("auth")
        elif kw == "tagged":
            neg = c.negation()
            tag = c.string("a tag")
            if len(tag) > MAX_TAG:
                c.error(f"tag name too long: {tag}", c.last)
            crits["tag"] = model.Criterion(
                "tag", table=model.InlineTable(((tag, None),)), negated=neg
            )
        elif kw in ("sender", "recipient"):
            key = "mail-from" if kw == "sender" else "rcpt-to"
            if key in crits:
                c.error(f"{kw} specified multiple times", tok)
            neg = c.negation()
            crits[key] = model.Criterion(key, table=c.table(f"a {kw} table"), negated=neg)
        else:
            if kw in crits:
                c.error(f"{kw} specified multiple times", tok)
            neg = c.negation()
            operand = "source" if kw == "from" else "domain"
            variant = c.accept("any", "local", operand)
            if variant is None:
                c.syntax_error(f'"any", "local" or "{operand}"')
            if variant == operand:
                modern_variant = "src" if kw == "from" else "domain"
                crits[kw] = model.Criterion(
                    kw, modern_variant, c.table(f"a {operand} table"), negated=neg
                )
            else:
                crits[kw] = model.Criterion(kw, variant, negated=neg)


def _delay(p: Parser, what: str) -> int:
    text = p.c.string("a delay such as 4d")
    value = parse_delay(text)
    if value is None:
        p.c.error(f"invalid {what} delay: {text}", p.c.last)
    return value


# -- deliveries ----------------------------------------------------------------------


def _deliver(p: Parser) -> model.LocalDelivery:
    c = p.c
    kw = c.accept("mbox", "maildir", "lmtp", "mda")
    if kw is None:
        c.syntax_error('"mbox", "maildir", "lmtp" or "mda"')
    if kw == "mbox":
        return model.LocalDelivery("mbox")
    if kw == "maildir":
        path = c.take().text if c.at_string() else None
        return model.LocalDelivery("maildir", path=path)
    if kw == "lmtp":
        dest = c.string("an LMTP destination (host:port or /socket)")
        if ":" not in dest and not dest.startswith("/"):
            c.error(f"invalid lmtp destination: {dest}", c.last)
        rcpt_to = c.accept("rcpt-to") is not None
        return model.LocalDelivery("lmtp", path=dest, rcpt_to=rcpt_to, user=_deliver_as(p))
    command = c.string("an MDA command")
    return model.LocalDelivery("mda", path=command, user=_deliver_as(p))


def _deliver_as(p: Parser) -> str | None:
    if p.c.accept("as"):
        return p.c.string("a user name")
    return None


def _relay(p: Parser) -> model.Relay:
    c = p.c
    if c.accept("via"):
        return _relay_via(p)
    r = model.Relay()
    while True:
        common = _relay_common(p, r)
        if common is not None:
            r = common
        elif c.accept("backup"):
            mx = c.take().text if c.at_string() else None
            r = attrs.evolve(r, backup=True, backup_mx=mx)
        elif c.accept("tls"):
            # the flags only accumulate: once "verify" was given it stays
            verify = c.accept("verify") is not None or r.tls == "required"
            r = attrs.evolve(r, tls="required" if verify else "no-verify")
        else:
            return r


def _relay_via(p: Parser) -> model.Relay:
    c = p.c
    url_tok = c.peek()
    url = c.string("a relay URL")
    try:
        host = parse_relay_url(url, legacy=True)
    except TableError as exc:
        c.error(str(exc), url_tok)
    r = model.Relay()
    verify = False
    while True:
        common = _relay_common(p, r)
        if common is not None:
            r = common
        elif c.accept("auth"):
            r = attrs.evolve(r, auth=c.table("an auth table"))
        elif c.accept("verify"):
            if host.tls not in _SECURE:
                c.error('cannot "verify" with insecure protocol', c.last)
            verify = True
        else:
            break
    if host.auth and r.auth is None:
        c.error("auth without auth table", url_tok)
    if host.backup:
        # backup://H is "relay backup mx H"; its port has no modern spelling
        if host.port != 25:
            c.error(f"a port cannot be given with a backup relay URL: {url}", url_tok)
        tls = None
        if host.tls is RelayTLS.STARTTLS:
            tls = "required" if verify else "no-verify"
        return attrs.evolve(r, backup=True, backup_mx=host.host, tls=tls)
    table = model.InlineTable(((str(host), None),))
    return attrs.evolve(r, host=table, tls="required" if verify else None)


def _relay_common(p: Parser, r: model.Relay) -> model.Relay | None:
    """``as``, ``source``, ``hostname``, ``hostnames``, ``pki``, ``ca``; None if none."""
    c = p.c
    kw = c.accept("as", "source", "hostname", "hostnames", "pki", "ca")
    if kw is None:
        return None
    if kw == "as":
        return attrs.evolve(r, mail_from=_relay_as(p))
    if kw == "source":
        return attrs.evolve(r, src=c.table("a source table"))
    if kw == "hostname":
        return attrs.evolve(r, helo=c.string("a host name"))
    if kw == "hostnames":
        return attrs.evolve(r, helo_src=c.table("a hostnames table"))
    value = c.string(f"a {kw} name").lower()
    if len(value) > MAX_ADDR_PART:
        c.error(f"{kw} name too long: {value}", c.last)
    if kw == "pki":
        return attrs.evolve(r, pki=value)
    return attrs.evolve(r, ca=value)


def _relay_as(p: Parser) -> str:
    """The sender rewrite of ``relay ... as ADDRESS``, checked like text_to_mailaddr."""
    c = p.c
    text = c.string("a user, @domain or address")
    user, at, domain = text.rpartition("@")
    if not at:
        user, domain = text, ""
    if len(user) > MAX_ADDR_PART or len(domain) > MAX_ADDR_PART:
        c.error(f"invalid parameter to AS: {text}", c.last)
    if not user and not domain:
        c.error("invalid empty parameter to AS", c.last)
    if not domain:
        return user  # 6.0.3 completes it with the server name
    return f"{user}@{domain}"


# -- global options ----------------------------------------------------------------


def _expire(p: Parser) -> None:
    where = _where(p)
    ttl = _delay(p, "expire")
    p.c.end()
    p.emit(ast.SetStmt(("queue", "ttl"), ttl, where))


def _max_message_size(p: Parser) -> None:
    where = _where(p)
    size = _size(p)
    p.c.end()
    p.emit(ast.SetStmt(("smtp", "max_message_size"), size, where))


def _max_mta_deferred(p: Parser) -> None:
    where = _where(p)
    value = p.c.number("a number")
    p.c.end()
    p.emit(ast.SetStmt(("mta", "max_deferred"), value, where))


def _ciphers(p: Parser) -> None:
    where = _where(p)
    value = p.c.string("a cipher list")
    p.c.end()
    p.emit(ast.SetStmt(("smtp", "ciphers"), value, where))


def _subaddressing_delimiter(p: Parser) -> None:
    where = _where(p)
    value = p.c.string("one character")
    p.c.end()
    _check_delim(p, value, "subaddressing-delimiter")
    p.emit(ast.SetStmt(("smtp", "sub_addr_delim"), value, where))


def _bounce_warn(p: Parser) -> None:
    """``bounce-warn D[, D...]``; an empty list turns the warnings off, as in 6.0.3."""
    c = p.c
    where = _where(p)
    delays: list[int] = []
    if not c.at_end():
        delays.append(_delay(p, "bounce"))
        while c.accept_punct(","):
            delays.append(_delay(p, "bounce"))
    c.end()
    p.emit(ast.SetStmt(("bounce_warn",), tuple(delays[:MAX_BOUNCE_WARN]), where))


def _limit(p: Parser) -> None:
    c = p.c
    where = _where(p)
    kw = c.accept("session", "mda", "mta", "scheduler")
    if kw is None:
        c.syntax_error('"session", "mda", "mta" or "scheduler"')
    if kw == "mta":
        _limit_mta(p, where)
        return
    group, keys, label = {
        "session": ("smtp", SMTP_LIMITS, "session"),
        "mda": ("mda", MDA_LIMITS, "scheduler"),  # 6.0.3 words the mda error so
        "scheduler": ("scheduler", SCHEDULER_LIMITS, "scheduler"),
    }[kw]
    values = _limits(p, keys, label)
    c.end()
    for key, value in values.items():
        p.emit(ast.SetStmt((group, key), value, where))


def _limit_mta(p: Parser, where: ast.Where) -> None:
    mta_limit(p, where)
