"""Fold parsed statements into a checked :class:`~mta.config.model.Config`.

The builder walks the statements in file order, as OpenSMTPD's single-pass
parser does, so a table, action, filter, proc, pki or ca must be declared
before it is used.  It resolves names, checks that every table is of the kind
its use needs (a list where a list is needed, a mapping where a mapping is
needed, a backend that serves the lookup), loads table files, certificates and
keys, checks that listeners can be bound, and collects every problem as a
:class:`~mta.errors.ConfigError` located at ``file:line``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mta.config import ast, model
from mta.config.interfaces import BoundAddress, resolve_listen
from mta.config.pkicheck import check_pki_files
from mta.errors import ConfigError, TableError
from mta.tables import Service, Table, TableType, builtin_tables, check_use, open_table

__all__ = ["BUILTIN_TABLES", "Builder", "build"]

L, H, D = TableType.LIST, TableType.HASH, TableType.DYNAMIC
BUILTIN_TABLES = ("<localhost>", "<anyhost>", "<localnames>", "<anydestination>", "<getpwnam>")

# match criterion kind -> (types, services, what the 6.8 message calls it)
_CRITERION_USE: dict[str, tuple[TableType, Service, str]] = {
    "tag": (D | L, Service.STRING, "tag"),
    "helo": (D | L, Service.DOMAIN, "helo"),
    "auth": (D | L | H, Service.STRING | Service.CREDENTIALS, "auth"),
    "mail-from": (D | L | H, Service.MAILADDR, "mail-from"),
    "rcpt-to": (D | L | H, Service.MAILADDR, "rcpt-to"),
}
_FROM_USE = {"src": Service.NETADDR, "rdns": Service.DOMAIN}

Resolver = Callable[[str, str | None], list[BoundAddress]]


class Builder:
    """Accumulates declarations; see the module docstring."""

    def __init__(
        self,
        hostname: str,
        resolver: Resolver,
        local_addresses: list[str],
        failed: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.hostname = hostname
        # declarations that failed to parse (already reported): uses are not errors again
        self.failed = failed
        # tables declared whose file failed to load (already reported): likewise
        self.unloaded: set[str] = set()
        self.resolver = resolver
        self.errors: list[ConfigError] = []
        self.tables: dict[str, model.TableDecl] = {}
        self.opened: dict[str, Table] = dict(builtin_tables(hostname, local_addresses))
        self.pkis: dict[str, model.Pki] = {}
        self.cas: dict[str, model.Ca] = {}
        self.procs: dict[str, model.Proc] = {}
        self.filters: dict[str, model.Filter] = {}
        self.listeners: list[model.Listener] = []
        self.socket: model.SocketListener | None = None
        self.actions: dict[str, model.Action] = {}
        self.rules: list[model.Rule] = []
        self.settings: dict[tuple[str, ...], Any] = {}
        self.settings_where: dict[tuple[str, ...], ast.Where] = {}
        self.wrappers: dict[str, str] = {}
        self.mta_limits: dict[str, model.MtaLimits] = {}
        self.warnings: list[str] = []

    # -- helpers -------------------------------------------------------------

    def fail(self, message: str, where: ast.Where) -> None:
        self.errors.append(ConfigError(message, where.file, where.line))

    def missing(self, kind: str, name: str, message: str, where: ast.Where) -> None:
        """Report an undeclared name, unless its declaration failed (already reported)."""
        if (kind, name) in self.failed or (kind == "table" and name in self.unloaded):
            return
        self.fail(message, where)

    def open_ref(self, ref: model.TableRef, where: ast.Where) -> Table | None:
        """The table behind a reference, loaded; None (error recorded) if missing."""
        if isinstance(ref, model.NamedTable):
            table = self.opened.get(ref.name)
            if table is None:
                self.missing("table", ref.name, f"no such table: {ref.name}", where)
            return table
        try:
            return open_table("<dynamic>", "static", None, ref.entries)
        except TableError as exc:
            self.fail(str(exc), where)
            return None

    def use_table(
        self,
        ref: model.TableRef | None,
        types: TableType,
        services: Service,
        message: str,
        where: ast.Where,
    ) -> None:
        """Check that a table may serve a use; ``message`` has ``{name}`` for the table."""
        if ref is None:
            return
        table = self.open_ref(ref, where)
        if table is None:
            return
        name = ref.name if isinstance(ref, model.NamedTable) else "<dynamic>"
        if not check_use(table, types, services):
            self.fail(message.format(name=name), where)
            return
        for service in services:
            if table.services & service:
                self.check_entries(ref, table, service, where)
                break

    def check_entries(
        self, ref: model.TableRef, table: Table, service: Service, where: ast.Where
    ) -> None:
        """Check a table's entries for ``service``.  A pattern that does not
        compile is an error (every lookup would fail); other bad entries are
        warnings, since OpenSMTPD only notices them when a lookup hits them."""
        regex = service == Service.REGEX
        named = ref.name if isinstance(ref, model.NamedTable) else None
        if regex and named in self.tables:
            # the daemon checks the patterns again when it opens and reloads the table
            assert named is not None
            self.tables[named] = model.replace(self.tables[named], regex=True)
        try:
            table.validate(service)
        except TableError as exc:
            label = f"table {named}: " if named is not None else ""
            reason = label + str(exc).removeprefix(f"table {table.name}: ")
            if regex:
                self.fail(reason, where)
            else:
                self.warnings.append(f"{where.file}:{where.line}: warning: {reason}")

    def filter_ref(self, ref: model.FilterRef | None, where: ast.Where) -> None:
        if ref is None:
            return
        for name in ref.names:
            found = self.filters.get(name)
            if found is None:
                self.missing("filter", name, f"no filter exist with that name: {name}", where)
            elif ref.chain and isinstance(found, model.FilterChain):
                self.fail(f"no filter chain allowed within a filter chain: {name}", where)
        if ref.chain:
            self.check_chain(ref.names, where)

    def relay_filters(self, ref: model.FilterRef, where: ast.Where) -> None:
        """A relay action's filters get the smtp-out report events of its
        sessions, and nothing else: relay sessions have no filter phases
        (OpenSMTPD's mta_session.c only reports), so a builtin filter there
        would never run.  OpenSMTPD accepts and ignores it; mta refuses it."""
        names = list(ref.names)
        found = self.filters.get(names[0]) if len(names) == 1 and not ref.chain else None
        if isinstance(found, model.FilterChain):
            names = list(found.filters)
        for name in names:
            if isinstance(self.filters.get(name), model.FilterBuiltin):
                self.fail(
                    f"builtin filter {name} on a relay action would never run: relay "
                    "sessions have no filter phases, only smtp-out reports to proc filters",
                    where,
                )

    def check_chain(self, names: tuple[str, ...], where: ast.Where) -> None:
        seen: set[str] = set()
        procs: set[str] = set()
        for name in names:
            if name in seen:
                self.fail(f"no filter allowed twice within a filter chain: {name}", where)
            seen.add(name)
            found = self.filters.get(name)
            if isinstance(found, model.FilterProc):
                if found.proc in procs:
                    self.fail(f"no proc allowed twice within a filter chain: {found.proc}", where)
                procs.add(found.proc)

    # -- statements ------------------------------------------------------------

    def add(self, stmt: ast.Statement) -> None:
        handler = getattr(self, "_" + type(stmt).__name__)
        handler(stmt)

    def _TableStmt(self, stmt: ast.TableStmt) -> None:
        decl = stmt.decl
        if decl.name in self.tables or decl.name in self.opened or decl.name in self.unloaded:
            self.fail(f'table "{decl.name}" already defined', stmt.where)
            return
        try:
            table = open_table(decl.name, decl.backend, decl.config, decl.entries)
        except TableError as exc:
            if decl.config:
                # the reason names the file already when it is about the whole file
                reason = str(exc).removeprefix(f"{decl.config}: ")
                msg = f"invalid configuration file {decl.config} for table {decl.name}: {reason}"
            elif str(exc).startswith(f"table {decl.name}:"):
                msg = str(exc)
            else:
                msg = f"table {decl.name}: {exc}"
            self.fail(msg, stmt.where)
            # declared all the same: its uses must not add "no such table" errors
            self.unloaded.add(decl.name)
            return
        self.tables[decl.name] = decl
        self.opened[decl.name] = table

    def _PkiStmt(self, stmt: ast.PkiStmt) -> None:
        pki = self.pkis.get(stmt.name) or model.Pki(
            stmt.name, line=stmt.where.line, file=stmt.where.file
        )
        if stmt.param != "declare":
            pki = model.replace(pki, **{stmt.param: stmt.value})
        self.pkis[stmt.name] = pki

    def _CaStmt(self, stmt: ast.CaStmt) -> None:
        self.cas[stmt.name] = model.Ca(
            stmt.name, stmt.cert, line=stmt.where.line, file=stmt.where.file
        )

    def _ProcStmt(self, stmt: ast.ProcStmt) -> None:
        if stmt.proc.name in self.procs:
            self.fail(f"processor already exists with that name: {stmt.proc.name}", stmt.where)
            return
        self.procs[stmt.proc.name] = stmt.proc

    def _FilterStmt(self, stmt: ast.FilterStmt) -> None:
        where = stmt.where
        if stmt.name in self.filters:
            self.fail(f"filter already exists with that name: {stmt.name}", where)
            return
        f = stmt.filter
        if isinstance(f, model.FilterProc) and not f.exec_ and f.proc not in self.procs:
            self.missing("proc", f.proc, f"no processor exist with that name: {f.proc}", where)
            return
        if isinstance(f, model.FilterChain):
            for name in f.filters:
                found = self.filters.get(name)
                if found is None:
                    self.missing("filter", name, f"no filter exist with that name: {name}", where)
                    return
                if isinstance(found, model.FilterChain):
                    self.fail(f"no filter chain allowed within a filter chain: {name}", where)
                    return
            self.check_chain(f.filters, where)
        if isinstance(f, model.FilterBuiltin) and f.table is not None:
            table = self.open_ref(f.table, where)
            if table is not None and f.regex:
                self.check_entries(f.table, table, Service.REGEX, where)
        if stmt.proc is not None:
            self.procs[stmt.proc.name] = stmt.proc
        self.filters[stmt.name] = f

    def _ListenStmt(self, stmt: ast.ListenStmt) -> None:
        lis, where = stmt.listener, stmt.where
        tls = lis.tls is not model.TlsMode.NONE
        if lis.auth is not model.AuthMode.NONE and not tls:
            self.fail("invalid listen option: auth requires tls/smtps", where)
        if lis.pki and not tls:
            self.fail("invalid listen option: pki requires tls/smtps", where)
        for name in lis.pki:
            if name not in self.pkis:
                message = f"pki name not found: {name} (declare it before the listener)"
                self.missing("pki", name, message, where)
        if lis.ca is not None and lis.ca not in self.cas:
            message = f"ca name not found: {lis.ca} (declare it before the listener)"
            self.missing("ca", lis.ca, message, where)
        self.filter_ref(lis.filter, where)
        if lis.auth_table is not None:
            self.open_ref(lis.auth_table, where)
        self.use_table(
            lis.hostnames,
            D | H,
            Service.ADDRNAME,
            'invalid use of table "{name}" as HOSTNAMES parameter',
            where,
        )
        self.use_table(
            lis.senders,
            D | H,
            Service.MAILADDRMAP,
            'invalid use of table "{name}" as SENDERS parameter',
            where,
        )
        if not self.resolver(lis.interface, lis.family):
            self.fail(f"invalid virtual ip or interface: {lis.interface}", where)
        self.listeners.append(lis)

    def _SocketStmt(self, stmt: ast.SocketStmt) -> None:
        if self.socket is not None:
            self.fail("socket listener already configured", stmt.where)
            return
        self.filter_ref(stmt.socket.filter, stmt.where)
        self.socket = stmt.socket

    def _ActionStmt(self, stmt: ast.ActionStmt) -> None:
        action, where = stmt.action, stmt.where
        if action.name in self.actions:
            self.fail(f"dispatcher already declared with that name: {action.name}", where)
            return
        m = action.method
        if isinstance(m, model.LocalDelivery):
            for kind, ref in (("alias", m.alias), ("virtual", m.virtual)):
                self.use_table(
                    ref,
                    D | H,
                    Service.ALIAS,
                    f'table "{{name}}" may not be used for {kind} lookups',
                    where,
                )
            self.use_table(
                m.userbase,
                D | H,
                Service.USERINFO,
                'table "{name}" may not be used for userbase lookups',
                where,
            )
            if m.wrapper is not None and m.wrapper not in self.wrappers:
                self.fail(f"no mda wrapper with that name: {m.wrapper}", where)
                return
            if (
                m.method == "lmtp"
                and m.path is not None
                and not (":" in m.path or m.path.startswith("/"))
            ):
                self.fail(f"invalid lmtp destination: {m.path} (use host:port or /socket)", where)
        else:
            self._relay(m, where)
        self.actions[action.name] = action

    def _relay(self, r: model.Relay, where: ast.Where) -> None:
        msg = 'table "{name}" may not be used for %s lookups'
        self.use_table(r.helo_src, D | H, Service.ADDRNAME, msg % "helo-source", where)
        self.use_table(r.src, D | L | H, Service.SOURCE, msg % "source", where)
        self.use_table(r.host, D | L, Service.RELAYHOST, msg % "host", where)
        self.use_table(r.domain, D | H, Service.RELAYHOST, msg % "host", where)
        self.use_table(r.auth, D | H, Service.CREDENTIALS, msg % "auth", where)
        if r.host is not None and isinstance(r.host, model.InlineTable):
            from mta.tables import parse_relay_url

            for key, _ in r.host.entries:
                try:
                    parse_relay_url(key)
                except TableError as exc:
                    self.fail(f"invalid relay host {key}: {exc}", where)
        for kind, name, known in (("pki", r.pki, self.pkis), ("ca", r.ca, self.cas)):
            if name is not None and name not in known:
                self.warnings.append(
                    f"{where.file}:{where.line}: warning: {kind} {name} is not declared"
                )
        self.filter_ref(r.filter, where)
        if r.filter is not None:
            self.relay_filters(r.filter, where)

    def _MatchStmt(self, stmt: ast.MatchStmt) -> None:
        rule, where = stmt.rule, stmt.where
        if rule.action is not None and rule.action not in self.actions:
            if ("action", rule.action) in self.failed:
                self.rules.append(rule)  # its action is already reported
            else:
                self.fail(f"no such dispatcher: {rule.action}", where)
            return
        for crit in rule.criteria:
            if crit.table is None:
                continue
            if crit.kind in ("from", "for"):
                if crit.regex:
                    types, services = D | L, Service.REGEX
                elif crit.kind == "for":
                    types, services = D | L, Service.DOMAIN
                else:
                    types, services = D | L, _FROM_USE[crit.variant or "src"]
                label = "'for'" if crit.kind == "for" else "from"
                message = f'table "{{name}}" may not be used for {label} lookups'
            else:
                types, services, label = _CRITERION_USE[crit.kind]
                if crit.regex:
                    types, services = D | L, Service.REGEX
                message = f'table "{{name}}" may not be used for {label} lookups'
            self.use_table(crit.table, types, services, message, where)
        self.rules.append(rule)

    def _SetStmt(self, stmt: ast.SetStmt) -> None:
        key = stmt.key
        if key[:2] == ("mda", "wrapper"):
            if key[2] in self.wrappers:
                self.fail(f"mda wrapper already declared with that name: {key[2]}", stmt.where)
                return
            self.wrappers[key[2]] = str(stmt.value)
        elif key[:2] == ("mta", "limit"):
            assert isinstance(stmt.value, model.MtaLimits)
            old = self.mta_limits.get(key[2], model.MtaLimits())
            merged = dict(old.values)
            merged.update(stmt.value.values)
            self.mta_limits[key[2]] = model.MtaLimits(
                tuple(merged.items()), stmt.value.family or old.family
            )
        elif key == ("web",) and key in self.settings:
            first = self.settings_where[key]
            self.fail(f"web inbox already specified at {first.file}:{first.line}", stmt.where)
        else:
            if key == ("web",):
                self._check_web(stmt.where)
            self.settings[key] = stmt.value
            self.settings_where[key] = stmt.where

    def _check_web(self, where: ast.Where) -> None:
        """The web inbox needs the ``web`` extra (``mta -n`` says so, as ``--web`` does)."""
        from mta.config.web import web_missing

        missing = web_missing()
        if missing is not None:
            self.fail(f"web inbox: {missing}", where)

    # -- result --------------------------------------------------------------------

    def finish(self) -> model.Config:
        if not self.rules:
            self.errors.append(ConfigError("no rules, nothing to do (add a match rule)"))
        check_pki_files(self.pkis, self.cas, self.errors)
        s = self.settings
        key = s.get(("queue", "encryption"), None)
        encryption = ("queue", "encryption") in s
        if key is not None and key != "stdin" and len(key.encode()) != 32:
            self.fail(
                "invalid key for queue encryption: it must be exactly 32 bytes "
                f"(got {len(key.encode())}; e.g. the output of `openssl rand -hex 16`)",
                self.settings_where[("queue", "encryption")],
            )
        queue = model.QueueOptions(
            compression=bool(s.get(("queue", "compression"), False)),
            encryption=encryption,
            key=key,
            ttl=s.get(("queue", "ttl"), model.QueueOptions().ttl),
        )
        return model.Config(
            tables=dict(self.tables),
            pkis=dict(self.pkis),
            cas=dict(self.cas),
            procs=dict(self.procs),
            filters=dict(self.filters),
            listeners=tuple(self.listeners),
            socket=self.socket or model.SocketListener(),
            actions=dict(self.actions),
            rules=tuple(self.rules),
            queue=queue,
            smtp=_section(model.SmtpOptions, "smtp", s),
            scheduler=_section(model.SchedulerLimits, "scheduler", s),
            mda=_section(model.MdaLimits, "mda", s),
            mda_wrappers=dict(self.wrappers),
            mta_max_deferred=s.get(("mta", "max_deferred"), 100),
            mta_limits=dict(self.mta_limits),
            srs=_section(model.SrsOptions, "srs", s),
            bounce_warn=s.get(("bounce_warn",), model.DEFAULT_BOUNCE_WARN),
            admd=s.get(("admd",)),
            web=s.get(("web",)),
            hostname=self.hostname,
        )


def _section(cls: Any, name: str, settings: dict[tuple[str, ...], Any]) -> Any:
    values = {k[1]: v for k, v in settings.items() if len(k) == 2 and k[0] == name}
    return cls(**values)


def build(
    statements: tuple[ast.Statement, ...],
    *,
    hostname: str,
    resolver: Resolver = resolve_listen,
    local_addresses: list[str] | None = None,
    failed: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[model.Config, list[ConfigError], list[str]]:
    """Build the model; returns it with the errors and warnings found."""
    from mta.tables import local_addresses as _local

    builder = Builder(
        hostname, resolver, local_addresses if local_addresses is not None else _local(), failed
    )
    for stmt in statements:
        builder.add(stmt)
    config = builder.finish()
    return config, builder.errors, builder.warnings
