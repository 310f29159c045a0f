"""The modern grammar (OpenSMTPD 6.4 and later): action, match, filter and globals.

Each function reads one statement whose first word the driver has already
taken and emits AST nodes.  Option-level rules that OpenSMTPD checks while
parsing (an option given twice, ``user`` with ``mbox``, ``backup`` with
``host`` ...) are checked here; rules that need other declarations are the
builder's.

One spelling is mta's own: ``bounce warn-interval none`` turns delay warnings
off.  OpenSMTPD's modern grammar cannot say that, but its legacy ``bounce-warn``
with no delay did, and a migrated configuration must keep the meaning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from mta.config import ast, model
from mta.config.lexer import Tok
from mta.config.units import parse_delay, parse_size

if TYPE_CHECKING:
    from mta.config.parser import Parser

__all__ = ["FILTER_PHASES", "mta_limit", "statement"]

# phase -> the conditions a builtin filter may test in it
_GLOBAL_CONDS = ("fcrdns", "rdns", "src")
FILTER_PHASES: dict[str, tuple[str, ...]] = {
    "connect": _GLOBAL_CONDS,
    "helo": (*_GLOBAL_CONDS, "helo"),
    "ehlo": (*_GLOBAL_CONDS, "helo"),
    "auth": (*_GLOBAL_CONDS, "helo", "auth"),
    "mail-from": (*_GLOBAL_CONDS, "helo", "auth", "mail-from"),
    "rcpt-to": (*_GLOBAL_CONDS, "helo", "auth", "mail-from", "rcpt-to"),
    "data": (*_GLOBAL_CONDS, "helo", "auth", "mail-from"),
    "commit": (*_GLOBAL_CONDS, "helo", "auth", "mail-from"),
}
MDA_LIMITS = {
    "max-session": "max_session",
    "max-session-per-user": "max_session_per_user",
    "task-lowat": "task_lowat",
    "task-hiwat": "task_hiwat",
    "task-release": "task_release",
}
SCHEDULER_LIMITS = {
    "max-inflight": "max_inflight",
    "max-evp-batch-size": "max_evp_batch_size",
    "max-msg-batch-size": "max_msg_batch_size",
    "max-schedule": "max_schedule",
}
SMTP_LIMITS = {"max-rcpt": "max_rcpt", "max-mails": "max_mails"}


def statement(p: Parser, word: str) -> None:
    """Parse one modern statement that starts with ``word`` (already taken)."""
    {
        "action": _action,
        "match": _match,
        "filter": _filter,
        "proc": _proc,
        "smtp": _smtp,
        "mta": _mta,
        "mda": _mda,
        "scheduler": _scheduler,
        "srs": _srs,
        "bounce": _bounce,
        "admd": _admd,
    }[word](p)


def _where(p: Parser) -> ast.Where:
    last = p.c.last
    assert last is not None
    return ast.Where(last.file, last.line)


def _delay(p: Parser, what: str) -> int:
    text = p.c.string("a delay such as 4d")
    value = parse_delay(text)
    if value is None:
        p.c.error(f'{what} delay "{text}" is invalid', p.c.last)
    return value


def _limits(p: Parser, keys: dict[str, str], label: str) -> dict[str, int]:
    """``KEY NUMBER ...`` pairs until the end of the statement."""
    c = p.c
    values: dict[str, int] = {}
    while not c.at_end():
        key = c.string("a limit name")
        if key not in keys:
            c.error(f"invalid {label} limit keyword: {key}", c.last)
        values[keys[key]] = c.number(f"a number for {key}")
    return values


# -- action ----------------------------------------------------------------------


def _action(p: Parser) -> None:
    c = p.c
    where = _where(p)
    name = c.string("an action name")
    p.declare("action", name)
    method: model.LocalDelivery | model.Relay
    if c.accept("relay"):
        method = _relay_options(p)
    else:
        method = _local_method(p)
    ttl: int | None = None
    while c.accept("ttl"):
        if ttl is not None:
            c.error("ttl already specified for this dispatcher", c.last)
        ttl = _delay(p, "ttl")
    c.end()
    p.emit(ast.ActionStmt(model.Action(name, method, ttl, where.line), where))


def _local_method(p: Parser) -> model.LocalDelivery:
    c = p.c
    kw = c.accept("mbox", "maildir", "lmtp", "mda", "forward-only", "expand-only")
    if kw is None:
        c.syntax_error("a delivery method (mbox, maildir, lmtp, mda, relay, ...)")
    d = model.LocalDelivery(kw)
    if kw == "maildir":
        if c.at_string():
            d = attrs.evolve(d, path=c.take().text)
        if c.accept("junk"):
            d = attrs.evolve(d, junk=True)
    elif kw == "lmtp":
        d = attrs.evolve(d, path=c.string("an LMTP destination (host:port or /socket)"))
        if c.accept("rcpt-to"):
            d = attrs.evolve(d, rcpt_to=True)
    elif kw == "mda":
        d = attrs.evolve(d, path=c.string("an MDA command"))
    while True:
        opt = c.accept("user", "alias", "virtual", "userbase", "wrapper")
        if opt is None:
            return d
        if opt == "user":
            if kw == "mbox":
                c.error("user may not be specified for this dispatcher", c.last)
            if kw in ("forward-only", "expand-only"):
                c.error(f"user may not be specified for {kw}", c.last)
            if d.user is not None:
                c.error("user already specified for this dispatcher", c.last)
            d = attrs.evolve(d, user=c.string("a user name"))
        elif opt in ("alias", "virtual"):
            if d.alias is not None:
                c.error("alias mapping already specified for this dispatcher", c.last)
            if d.virtual is not None:
                c.error("virtual mapping already specified for this dispatcher", c.last)
            d = model.replace(d, **{opt: c.table()})
        elif opt == "userbase":
            if d.userbase is not None:
                c.error("userbase mapping already specified for this dispatcher", c.last)
            d = attrs.evolve(d, userbase=c.table())
        else:
            if d.wrapper is not None:
                c.error("wrapper already specified for this dispatcher", c.last)
            d = attrs.evolve(d, wrapper=c.string("a wrapper name"))


def _relay_options(p: Parser) -> model.Relay:
    c = p.c
    r = model.Relay()
    seen: set[str] = set()

    def once(key: str, message: str) -> None:
        if key in seen:
            c.error(message, c.last)
        seen.add(key)

    while True:
        tok = c.peek()
        if tok.kind is not Tok.WORD:
            return r
        word = tok.text
        if word in ("helo", "pki", "ca", "ciphers", "protocols", "mail-from"):
            c.take()
            once(word, f"{word} already specified for this dispatcher")
            value = c.string(f"a value for {word}")
            field = word.replace("-", "_")
            if word in ("pki", "ca"):
                value = value.lower()
            r = model.replace(r, **{field: value})
        elif word in ("helo-src", "src"):
            c.take()
            label = "helo-source" if word == "helo-src" else "source"
            once(word, f"{label} mapping already specified for this dispatcher")
            r = model.replace(r, **{word.replace("-", "_"): c.table()})
        elif word == "backup":
            c.take()
            once("backup", "backup already specified for this dispatcher")
            if r.host is not None:
                c.error("backup and host are mutually exclusive", c.last)
            if r.domain is not None:
                c.error("backup and domain are mutually exclusive", c.last)
            r = attrs.evolve(r, backup=True)
            if c.accept("mx"):
                r = attrs.evolve(r, backup_mx=c.string("an MX name"))
        elif word in ("host", "domain"):
            c.take()
            if r.host is not None or r.domain is not None:
                c.error("host mapping already specified for this dispatcher", c.last)
            if r.backup:
                c.error(f"backup and {word} are mutually exclusive", c.last)
            r = model.replace(r, **{word: c.table()})
        elif word == "tls":
            c.take()
            once("tls", "tls already specified for this dispatcher")
            mode = "no-verify" if c.accept("no-verify") else "required"
            r = attrs.evolve(r, tls=mode)
        elif word == "auth":
            c.take()
            if r.host is None:
                c.error("auth may not be specified without host on a dispatcher", c.last)
            once("auth", "auth mapping already specified for this dispatcher")
            r = attrs.evolve(r, auth=c.table())
        elif word == "filter":
            c.take()
            once("filter", "filter already specified for this dispatcher")
            if c.at_punct("{"):
                ref = model.FilterRef(c.name_list(), chain=True)
            else:
                ref = model.FilterRef((c.string("a filter name"),), chain=False)
            r = attrs.evolve(r, filter=ref)
        elif word == "srs":
            c.take()
            if p.srs_key_seen is False:
                c.error("an srs key is required for srs to be specified in an action", c.last)
            once("srs", "srs already specified for this dispatcher")
            r = attrs.evolve(r, srs=True)
        else:
            return r


# -- match -----------------------------------------------------------------------


def _match(p: Parser) -> None:
    c = p.c
    where = _where(p)
    crits: dict[str, model.Criterion] = {}

    def put(kind: str, crit: model.Criterion, *, check: bool = True) -> None:
        if check and kind in crits:
            c.error(f"{kind} already specified for this rule", c.last)
        crits[kind] = crit

    while True:
        neg = c.negation()
        tok = c.peek()
        word = tok.text if tok.kind is Tok.WORD else ""
        if word in ("tag", "helo", "mail-from", "rcpt-to"):
            c.take()
            regex = c.accept("regex") is not None
            put(word, model.Criterion(word, table=c.table(), regex=regex, negated=neg))
        elif word == "tls":
            c.take()
            put("tls", model.Criterion("tls", negated=neg))
        elif word == "auth":
            c.take()
            regex = c.accept("regex") is not None
            table = c.table() if regex or c.at_table() else None
            put("auth", model.Criterion("auth", table=table, regex=regex, negated=neg))
        elif word == "from":
            c.take()
            _match_from(p, neg, crits)
        elif word == "for":
            c.take()
            _match_for(p, neg, crits)
        elif neg:
            c.syntax_error("a match criterion after '!'")
        else:
            break
    action: str | None = None
    if c.accept("reject"):
        pass
    elif c.accept("action"):
        action = c.string("an action name")
    else:
        c.syntax_error('a match criterion, "action NAME" or "reject"')
    c.end()
    if "from" not in crits:
        crits["from"] = model.Criterion("from", "local")
    if "for" not in crits:
        crits["for"] = model.Criterion("for", "local")
    rule = model.Rule(_ordered(crits), action, where.line, where.file)
    p.emit(ast.MatchStmt(rule, where))


_ORDER = ("from", "for", "tag", "helo", "auth", "mail-from", "rcpt-to", "tls")


def _ordered(crits: dict[str, model.Criterion]) -> tuple[model.Criterion, ...]:
    return tuple(crits[k] for k in _ORDER if k in crits)


def _match_from(p: Parser, neg: bool, crits: dict[str, model.Criterion]) -> None:
    c = p.c
    if "from" in crits:
        c.error("from already specified for this rule", c.last)
    kw = c.accept("socket", "local", "any", "src", "rdns", "auth", "mail-from")
    if kw is None:
        c.syntax_error("socket, local, any, src, rdns, auth or mail-from")
    if kw in ("socket", "local", "any"):
        crits["from"] = model.Criterion("from", kw, negated=neg)
    elif kw == "src":
        regex = c.accept("regex") is not None
        crits["from"] = model.Criterion("from", "src", c.table(), regex, neg)
    elif kw == "rdns":
        regex = c.accept("regex") is not None
        table = c.table() if regex or c.at_table() else None
        crits["from"] = model.Criterion("from", "rdns", table, regex, neg)
    else:
        # "from auth ..." and "from mail-from ..." mean "from any" plus that criterion
        regex = c.accept("regex") is not None
        if kw == "auth":
            table = c.table() if regex or c.at_table() else None
        else:
            table = c.table()
        crits["from"] = model.Criterion("from", "any")
        crits[kw] = model.Criterion(kw, table=table, regex=regex, negated=neg)


def _match_for(p: Parser, neg: bool, crits: dict[str, model.Criterion]) -> None:
    c = p.c
    if "for" in crits:
        c.error("for already specified for this rule", c.last)
    kw = c.accept("local", "any", "domain", "rcpt-to")
    if kw is None:
        c.syntax_error("local, any, domain or rcpt-to")
    if kw in ("local", "any"):
        crits["for"] = model.Criterion("for", kw, negated=neg)
    elif kw == "domain":
        regex = c.accept("regex") is not None
        crits["for"] = model.Criterion("for", "domain", c.table(), regex, neg)
    else:
        regex = c.accept("regex") is not None
        crits["for"] = model.Criterion("for", "any")
        crits["rcpt-to"] = model.Criterion("rcpt-to", table=c.table(), regex=regex, negated=neg)


# -- filter and proc ----------------------------------------------------------------


def _proc_params(p: Parser, proc: model.Proc) -> model.Proc:
    c = p.c
    while True:
        kw = c.accept("user", "group", "chroot")
        if kw is None:
            return proc
        if getattr(proc, kw) is not None:
            c.error(f"{kw} already specified for this processor", c.last)
        proc = model.replace(proc, **{kw: c.string(f"a value for {kw}")})


def _proc(p: Parser) -> None:
    c = p.c
    where = _where(p)
    name = c.string("a proc name")
    p.declare("proc", name)
    command = c.string("a command")
    proc = _proc_params(p, model.Proc(name, command))
    c.end()
    p.emit(ast.ProcStmt(proc, where))


def _filter(p: Parser) -> None:
    c = p.c
    where = _where(p)
    name = c.string("a filter name")
    p.declare("filter", name)
    kw = c.accept("proc", "proc-exec", "phase", "chain")
    if kw is None:
        c.syntax_error('"proc", "proc-exec", "phase" or "chain"')
    if kw == "proc":
        proc_name = c.string("a proc name")
        c.end()
        p.emit(ast.FilterStmt(name, model.FilterProc(proc_name), where))
    elif kw == "proc-exec":
        command = c.string("a command")
        proc = _proc_params(p, model.Proc(name, command))
        c.end()
        p.emit(ast.FilterStmt(name, model.FilterProc(name, exec_=True), where, proc))
    elif kw == "chain":
        names = c.name_list()
        c.end()
        p.emit(ast.FilterStmt(name, model.FilterChain(names), where))
    else:
        p.emit(ast.FilterStmt(name, _builtin_filter(p), where))


def _builtin_filter(p: Parser) -> model.FilterBuiltin:
    c = p.c
    phase = c.accept(*FILTER_PHASES)
    if phase is None:
        c.syntax_error("a filter phase (" + ", ".join(FILTER_PHASES) + ")")
    c.expect("match")
    neg = c.negation()
    allowed = FILTER_PHASES[phase]
    cond_word = c.accept(*allowed)
    if cond_word is None:
        c.syntax_error(f"a condition allowed in phase {phase} ({', '.join(allowed)})")
    cond = model.FilterCondition(cond_word)
    regex = False
    table: model.TableRef | None = None
    if cond is not model.FilterCondition.FCRDNS:
        regex = c.accept("regex") is not None
        needs_table = cond not in (model.FilterCondition.RDNS, model.FilterCondition.AUTH)
        if regex or needs_table or c.at_table():
            table = c.table()
    decisions: tuple[str, ...] = ("reject", "disconnect", "rewrite", "report")
    if phase != "commit":
        decisions = (*decisions, "junk", "bypass")
    decision = c.accept(*decisions)
    if decision is None:
        c.syntax_error("a decision (" + ", ".join(decisions) + ")")
    argument = None
    if decision in ("reject", "disconnect", "rewrite", "report"):
        argument = c.string(f"the {decision} text")
    c.end()
    return model.FilterBuiltin(phase, cond, neg, table, regex, decision, argument)


# -- global options ------------------------------------------------------------------


def _smtp(p: Parser) -> None:
    c = p.c
    where = _where(p)
    if c.accept("limit"):
        values = _limits(p, SMTP_LIMITS, "session")
        c.end()
        for key, value in values.items():
            p.emit(ast.SetStmt(("smtp", key), value, where))
    elif c.accept("ciphers"):
        ciphers = c.string("a cipher list")
        c.end()
        p.emit(ast.SetStmt(("smtp", "ciphers"), ciphers, where))
    elif c.accept("max-message-size"):
        size = _size(p)
        c.end()
        p.emit(ast.SetStmt(("smtp", "max_message_size"), size, where))
    elif c.accept("sub-addr-delim"):
        delim = c.string("one character")
        c.end()
        _check_delim(p, delim, "sub-addr-delim")
        p.emit(ast.SetStmt(("smtp", "sub_addr_delim"), delim, where))
    else:
        c.syntax_error('"limit", "ciphers", "max-message-size" or "sub-addr-delim"')


def _check_delim(p: Parser, value: str, label: str) -> None:
    if len(value) != 1:
        p.c.error(f"{label} must be one character", p.c.last)
    if value.isspace() or not value.isprintable() or not value.isascii() or value == "@":
        p.c.error(f"{label} uses invalid character", p.c.last)


def _size(p: Parser) -> int:
    c = p.c
    tok = c.peek()
    if tok.kind is Tok.NUMBER:
        value = int(c.take().text)
        if value < 0:
            c.error(f"invalid size: {value}", c.last)
        return value
    text = c.string("a size such as 35M")
    size = parse_size(text)
    if size is None:
        c.error(f"invalid size: {text}", c.last)
    return size


def _mta(p: Parser) -> None:
    c = p.c
    where = _where(p)
    if c.accept("max-deferred"):
        value = c.number("a number")
        c.end()
        p.emit(ast.SetStmt(("mta", "max_deferred"), value, where))
        return
    c.expect("limit")
    mta_limit(p, where)


def mta_limit(p: Parser, where: ast.Where) -> None:
    """``[for domain D] (inet4|inet6|KEY N)...`` after ``mta limit`` (legacy ``limit mta``)."""
    c = p.c
    domain = ""
    if c.accept("for"):
        c.expect("domain")
        domain = c.string("a domain")
    values: list[tuple[str, int]] = []
    family: str | None = None
    while not c.at_end():
        fam = c.accept("inet4", "inet6")
        if fam is not None:
            family = fam
            continue
        key = c.string("an mta limit name")
        if key not in model.MTA_LIMIT_DEFAULTS:
            c.error(f"invalid mta limit keyword: {key}", c.last)
        values.append((key, c.number(f"a number for {key}")))
    c.end()
    p.emit(ast.SetStmt(("mta", "limit", domain), model.MtaLimits(tuple(values), family), where))


def _mda(p: Parser) -> None:
    c = p.c
    where = _where(p)
    if c.accept("wrapper"):
        name = c.string("a wrapper name")
        command = c.string("a wrapper command")
        c.end()
        p.emit(ast.SetStmt(("mda", "wrapper", name), command, where))
        return
    c.expect("limit")
    values = _limits(p, MDA_LIMITS, "scheduler")
    c.end()
    for key, value in values.items():
        p.emit(ast.SetStmt(("mda", key), value, where))


def _scheduler(p: Parser) -> None:
    c = p.c
    where = _where(p)
    c.expect("limit")
    values = _limits(p, SCHEDULER_LIMITS, "scheduler")
    c.end()
    for key, value in values.items():
        p.emit(ast.SetStmt(("scheduler", key), value, where))


def _srs(p: Parser) -> None:
    c = p.c
    where = _where(p)
    if c.accept("key"):
        if c.accept("backup"):
            value = c.string("a secret")
            c.end()
            p.emit(ast.SetStmt(("srs", "key_backup"), value, where))
        else:
            value = c.string("a secret")
            c.end()
            p.srs_key_seen = True
            p.emit(ast.SetStmt(("srs", "key"), value, where))
    elif c.accept("ttl"):
        text = c.string("a delay such as 4d")
        c.end()
        seconds = parse_delay(text)
        if seconds is None:
            c.error(f'ttl delay "{text}" is invalid', c.last)
        if seconds // 86400 == 0:
            c.error(f'ttl delay "{text}" is too short (SRS needs at least 1d)', c.last)
        p.emit(ast.SetStmt(("srs", "ttl_days"), seconds // 86400, where))
    else:
        c.syntax_error('"key" or "ttl"')


def _bounce(p: Parser) -> None:
    c = p.c
    where = _where(p)
    c.expect("warn-interval")
    if c.peek().is_word("none") and c.peek(1).kind in (Tok.NEWLINE, Tok.EOF):
        # mta's spelling of a legacy "bounce-warn" without delays: no warnings at all
        c.take()
        c.end()
        p.emit(ast.SetStmt(("bounce_warn",), (), where))
        return
    delays = [_delay(p, "bounce")]
    while c.accept_punct(","):
        delays.append(_delay(p, "bounce"))
    c.end()
    p.emit(ast.SetStmt(("bounce_warn",), tuple(delays[:4]), where))


def _admd(p: Parser) -> None:
    c = p.c
    where = _where(p)
    value = c.string("an authserv-id")
    c.end()
    if not value.isprintable() or not value.isascii():
        c.error("not a valid admd", c.last)
    p.emit(ast.SetStmt(("admd",), value, where))
