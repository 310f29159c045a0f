"""Write a configuration model back as canonical modern smtpd.conf text.

``mta -n -v`` prints this, which is how a legacy configuration is migrated.
The output declares everything before it is used (tables, pki, ca, procs,
filters, wrappers, listeners, actions, rules), quotes every value, expands
macros and includes, and parses back into an equal model.
"""

from __future__ import annotations

import attrs

from mta.config import model
from mta.config.lexer import in_word, starts_word
from mta.config.units import format_delay

__all__ = ["quote", "render"]


def quote(value: str) -> str:
    """A string literal the lexer reads back as ``value``.

    Inside quotes a backslash escapes only the quote, a space or a tab (and drops a
    newline); any other backslash is literal.  So a backslash that precedes one of
    those characters stays literal if the character itself is escaped.  A value that
    ends in a backslash, or has one before a newline, cannot be quoted at all; it is
    written as a bare word (where ``\\`` is a backslash) when it can be one.
    """
    if value.endswith("\\") or "\\\n" in value:
        return _bare_word(value)
    q = "'" if '"' in value and "'" not in value else '"'
    out: list[str] = []
    for i, ch in enumerate(value):
        if ch == q or (ch in " \t" and i > 0 and value[i - 1] == "\\"):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return q + "".join(out) + q


def _bare_word(value: str) -> str:
    if (
        not value
        or not starts_word(value[0])
        or not all(ch == "\\" or in_word(ch) for ch in value)
        or value.lstrip("-").isdigit()
    ):
        raise ValueError(f"{value!r} cannot be written as a smtpd.conf string")
    return value.replace("\\", "\\\\")


def _table(ref: model.TableRef) -> str:
    if isinstance(ref, model.NamedTable):
        return f"<{quote(ref.name)}>"
    entries = ref.entries
    if len(entries) == 1 and entries[0][1] is None:
        return quote(entries[0][0])
    return "{ " + ", ".join(_entry(k, v) for k, v in entries) + " }"


def _entry(key: str, value: str | None) -> str:
    return quote(key) if value is None else f"{quote(key)} = {quote(value)}"


def _filter_ref(ref: model.FilterRef) -> str:
    if ref.chain:
        return "filter { " + ", ".join(quote(n) for n in ref.names) + " }"
    return f"filter {quote(ref.names[0])}"


def _table_decl(t: model.TableDecl) -> str:
    if t.backend == "static":
        body = ", ".join(_entry(k, v) for k, v in t.entries)
        return f"table {quote(t.name)} {{ {body} }}"
    if t.backend == "file":
        spec = t.config or ""
    elif t.config is None:
        spec = t.backend
    else:
        spec = f"{t.backend}:{t.config}"
    return f"table {quote(t.name)} {quote(spec)}"


def _proc_opts(p: model.Proc) -> str:
    out = ""
    for kw in ("user", "group", "chroot"):
        value = getattr(p, kw)
        if value is not None:
            out += f" {kw} {quote(value)}"
    return out


def _filter(name: str, f: model.Filter, procs: dict[str, model.Proc]) -> str:
    head = f"filter {quote(name)}"
    if isinstance(f, model.FilterChain):
        return f"{head} chain " + "{ " + ", ".join(quote(n) for n in f.filters) + " }"
    if isinstance(f, model.FilterProc):
        if f.exec_:
            proc = procs[f.proc]
            return f"{head} proc-exec {quote(proc.command)}{_proc_opts(proc)}"
        return f"{head} proc {quote(f.proc)}"
    cond = ("!" if f.negated else "") + f.condition.value
    if f.regex:
        cond += " regex"
    if f.table is not None:
        cond += " " + _table(f.table)
    decision = f.decision + (f" {quote(f.argument)}" if f.argument is not None else "")
    return f"{head} phase {f.phase} match {cond} {decision}"


def _listener(lis: model.Listener) -> str:
    out = [f"listen on {quote(lis.interface)}"]
    if lis.family:
        out.append(lis.family)
    if lis.port is not None:
        out.append(f"port {lis.port}")
    if lis.tls is not model.TlsMode.NONE:
        out.append(lis.tls.value + (" verify" if lis.verify else ""))
    out += [f"pki {quote(p)}" for p in lis.pki]
    for kw in ("ca", "ciphers", "protocols"):
        value = getattr(lis, kw)
        if value is not None:
            out.append(f"{kw} {quote(value)}")
    if lis.auth is not model.AuthMode.NONE:
        out.append(lis.auth.value + (f" {_table(lis.auth_table)}" if lis.auth_table else ""))
    if lis.tag is not None:
        out.append(f"tag {quote(lis.tag)}")
    if lis.hostname is not None:
        out.append(f"hostname {quote(lis.hostname)}")
    if lis.hostnames is not None:
        out.append(f"hostnames {_table(lis.hostnames)}")
    if lis.senders is not None:
        out.append(f"senders {_table(lis.senders)}" + (" masquerade" if lis.masquerade else ""))
    for flag, kw in (
        (lis.mask_src, "mask-src"),
        (lis.received_auth, "received-auth"),
        (lis.no_dsn, "no-dsn"),
        (lis.proxy_v2, "proxy-v2"),
    ):
        if flag:
            out.append(kw)
    if lis.filter is not None:
        out.append(_filter_ref(lis.filter))
    return " ".join(out)


def _socket(sock: model.SocketListener) -> str | None:
    out = ["listen on socket"]
    if sock.filter is not None:
        out.append(_filter_ref(sock.filter))
    if sock.mask_src:
        out.append("mask-src")
    if sock.no_dsn:
        out.append("no-dsn")
    if sock.tag is not None:
        out.append(f"tag {quote(sock.tag)}")
    if len(out) == 1 and not sock.explicit:
        return None
    return " ".join(out)


def _action(a: model.Action) -> str:
    out = [f"action {quote(a.name)}"]
    m = a.method
    if isinstance(m, model.LocalDelivery):
        out.append(m.method)
        if m.path is not None:
            out.append(quote(m.path))
        if m.junk:
            out.append("junk")
        if m.rcpt_to:
            out.append("rcpt-to")
        for kw in ("alias", "virtual", "userbase"):
            ref = getattr(m, kw)
            if ref is not None:
                out.append(f"{kw} {_table(ref)}")
        if m.user is not None:
            out.append(f"user {quote(m.user)}")
        if m.wrapper is not None:
            out.append(f"wrapper {quote(m.wrapper)}")
    else:
        out.append("relay")
        if m.backup:
            out.append("backup" + (f" mx {quote(m.backup_mx)}" if m.backup_mx else ""))
        for kw in ("host", "domain", "helo_src", "src"):
            ref = getattr(m, kw)
            if ref is not None:
                out.append(f"{kw.replace('_', '-')} {_table(ref)}")
        for kw in ("helo", "pki", "ca", "ciphers", "protocols", "mail_from"):
            value = getattr(m, kw)
            if value is not None:
                out.append(f"{kw.replace('_', '-')} {quote(value)}")
        if m.tls is not None:
            out.append("tls" + (" no-verify" if m.tls == "no-verify" else ""))
        if m.auth is not None:
            out.append(f"auth {_table(m.auth)}")
        if m.filter is not None:
            out.append(_filter_ref(m.filter))
        if m.srs:
            out.append("srs")
    if a.ttl is not None:
        out.append(f"ttl {format_delay(a.ttl)}")
    return " ".join(out)


def _criterion(c: model.Criterion) -> str:
    neg = "! " if c.negated else ""
    regex = " regex" if c.regex else ""
    table = f" {_table(c.table)}" if c.table is not None else ""
    if c.kind in ("from", "for"):
        return f"{neg}{c.kind} {c.variant}{regex}{table}"
    return f"{neg}{c.kind}{regex}{table}"


def _rule(r: model.Rule) -> str:
    crits = " ".join(_criterion(c) for c in r.criteria)
    tail = "reject" if r.action is None else f"action {quote(r.action)}"
    return f"match {crits} {tail}"


def _globals(cfg: model.Config) -> list[str]:
    out: list[str] = []
    if cfg.admd is not None:
        out.append(f"admd {quote(cfg.admd)}")
    if cfg.bounce_warn != model.DEFAULT_BOUNCE_WARN:
        delays = ", ".join(format_delay(d) for d in cfg.bounce_warn) or "none"
        out.append(f"bounce warn-interval {delays}")
    q, dq = cfg.queue, model.QueueOptions()
    if q.compression:
        out.append("queue compression")
    if q.encryption:
        out.append("queue encryption" + (f" {quote(q.key)}" if q.key else ""))
    if q.ttl != dq.ttl:
        out.append(f"queue ttl {format_delay(q.ttl)}")
    s, ds = cfg.smtp, model.SmtpOptions()
    for field, kw in (("max_rcpt", "max-rcpt"), ("max_mails", "max-mails")):
        if getattr(s, field) != getattr(ds, field):
            out.append(f"smtp limit {kw} {getattr(s, field)}")
    if s.ciphers is not None:
        out.append(f"smtp ciphers {quote(s.ciphers)}")
    if s.max_message_size != ds.max_message_size:
        out.append(f"smtp max-message-size {s.max_message_size}")
    if s.sub_addr_delim != ds.sub_addr_delim:
        out.append(f"smtp sub-addr-delim {quote(s.sub_addr_delim)}")
    for section, label, default in (
        (cfg.scheduler, "scheduler limit", model.SchedulerLimits()),
        (cfg.mda, "mda limit", model.MdaLimits()),
    ):
        for field in attrs.fields(type(section)):
            value = getattr(section, field.name)
            if value != getattr(default, field.name):
                out.append(f"{label} {field.name.replace('_', '-')} {value}")
    if cfg.mta_max_deferred != 100:
        out.append(f"mta max-deferred {cfg.mta_max_deferred}")
    for domain, lim in cfg.mta_limits.items():
        head = "mta limit" + (f" for domain {quote(domain)}" if domain else "")
        parts = [f"{quote(k)} {v}" for k, v in lim.values]
        if lim.family:
            parts.append(lim.family)
        out.append(" ".join([head, *parts]))
    srs = cfg.srs
    if srs.key is not None:
        out.append(f"srs key {quote(srs.key)}")
    if srs.key_backup is not None:
        out.append(f"srs key backup {quote(srs.key_backup)}")
    if srs.ttl_days != 4:
        out.append(f"srs ttl {srs.ttl_days}d")
    if cfg.web is not None:
        web, plain = cfg.web, model.WebInbox(cfg.web.address)
        line = f"web inbox on {quote(web.address)}"
        if web.port != plain.port:
            line += f" port {web.port}"
        if web.keep != plain.keep:
            line += f" keep {web.keep}"
        out.append(line)
    return out


def render(cfg: model.Config) -> str:
    """The whole configuration as modern smtpd.conf text."""
    lines: list[str] = []

    def section(items: list[str]) -> None:
        if items:
            lines.extend(items)
            lines.append("")

    section(_globals(cfg))
    section([_table_decl(t) for t in cfg.tables.values()])
    pki: list[str] = []
    for p in cfg.pkis.values():
        params = [f"{kw} {quote(getattr(p, kw))}" for kw in ("cert", "key") if getattr(p, kw)]
        if p.dhe != "none":
            params.append(f"dhe {p.dhe}")
        pki.append(f"pki {quote(p.name)} " + " ".join(params) if params else f"pki {quote(p.name)}")
    pki += [f"ca {quote(c.name)} cert {quote(c.cert or '')}" for c in cfg.cas.values()]
    section(pki)
    exec_procs = {
        f.proc for f in cfg.filters.values() if isinstance(f, model.FilterProc) and f.exec_
    }
    section(
        [
            f"proc {quote(p.name)} {quote(p.command)}{_proc_opts(p)}"
            for p in cfg.procs.values()
            if p.name not in exec_procs
        ]
    )
    section([_filter(n, f, cfg.procs) for n, f in cfg.filters.items()])
    section([f"mda wrapper {quote(n)} {quote(c)}" for n, c in cfg.mda_wrappers.items()])
    sock = _socket(cfg.socket)
    section(([sock] if sock else []) + [_listener(lis) for lis in cfg.listeners])
    section([_action(a) for a in cfg.actions.values()])
    section([_rule(r) for r in cfg.rules])
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
