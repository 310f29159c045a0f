# ruff: noqa: E501  (tables of exact error messages read best one per line)
"""The modern grammar at the statement level: ``parse_text`` and the AST it emits.

Model-level results (defaults, resolution, table kinds) are in ``test_build.py``; here
each directive's syntax, its options and the parse-time errors, each of which must name
``file:line`` and say what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import ast, model
from mta.config.parser import Document, parse_text
from mta.errors import ConfigError


def _no_include(path: str) -> str:
    raise FileNotFoundError(2, "No such file or directory", path)


def doc(text: str, **kwargs: object) -> Document:
    return parse_text(text, "t.conf", _no_include, **kwargs)  # type: ignore[arg-type]


def parse(text: str) -> tuple[ast.Statement, ...]:
    d = doc(text)
    assert d.errors == (), [str(e) for e in d.errors]
    return d.statements


def one(text: str) -> ast.Statement:
    stmts = parse(text)
    assert len(stmts) == 1, stmts
    return stmts[0]


def errors(text: str) -> list[str]:
    return [str(e) for e in doc(text).errors]


def error(text: str) -> str:
    """The one error ``text`` produces, as ``file:line: message``."""
    errs = errors(text)
    assert len(errs) == 1, errs
    return errs[0]


def action(text: str) -> model.Action:
    stmt = one(text)
    assert isinstance(stmt, ast.ActionStmt)
    return stmt.action


def rule(text: str) -> model.Rule:
    stmt = one(text)
    assert isinstance(stmt, ast.MatchStmt)
    return stmt.rule


def listener(text: str) -> model.Listener:
    stmt = one(text)
    assert isinstance(stmt, ast.ListenStmt)
    return stmt.listener


# -- macros and includes ---------------------------------------------------------------------


def test_macro_defined_and_expanded() -> None:
    stmts = parse('dom = "example.com"\nmatch for domain $dom reject\n')
    assert isinstance(stmts[0], ast.MatchStmt)
    crit = stmts[0].rule.get("for")
    assert crit == model.Criterion("for", "domain", model.InlineTable((("example.com", None),)))


def test_macro_forms_a_whole_statement() -> None:
    r = rule('m = "match from any for any"\n$m reject\n')
    assert r.get("from") == model.Criterion("from", "any")


def test_macro_with_number_value_must_be_quoted() -> None:
    assert "write the number in quotes" in error("p = 25\n")


def test_macro_named_after_a_keyword() -> None:
    msg = error('match = "x"\n')
    assert (
        msg
        == 't.conf:1: "match" is a reserved word and cannot be a macro name; choose another name'
    )
    assert "reserved word" in error('listen = "x"\n')
    assert "reserved word" in error('from = "x"\n')


def test_quoted_keyword_macro_name_is_allowed() -> None:
    # OpenSMTPD's grammar takes a STRING there; quoting makes it one
    d = doc('"match" = "x"\nmatch for any reject\n')
    assert d.errors == ()
    assert d.unused_macros == ("match",)


def test_unused_macros_are_reported() -> None:
    d = doc('a = "1"\nb = "2"\nmatch for domain $a reject\n')
    assert d.unused_macros == ("b",)


def test_command_line_macro_overrides_and_persists() -> None:
    r = rule('d = "file.example"\nmatch for domain $d reject\n')
    assert r.get("for") == model.Criterion(
        "for", "domain", model.InlineTable((("file.example", None),))
    )
    d = doc('d = "file.example"\nmatch for domain $d reject\n', macros={"d": "cli.example"})
    assert d.errors == ()
    stmt = d.statements[0]
    assert isinstance(stmt, ast.MatchStmt)
    crit = stmt.rule.get("for")
    assert crit is not None
    assert crit.table == model.InlineTable((("cli.example", None),))


def test_undefined_macro() -> None:
    assert error("match for domain $nope reject\n") == "t.conf:1: macro 'nope' not defined"


def test_include(tmp_path: Path) -> None:
    inc = tmp_path / "inc.conf"
    inc.write_text('action "a" mbox\nm = "x"\n\nbad words here\n')
    d = parse_text(
        f'include "{inc}"\nmatch for domain $m action "a"\n',
        "main.conf",
        lambda p: Path(p).read_text(),
    )
    assert [str(e) for e in d.errors] == [
        f'{inc}:4: syntax error: expected a directive, found "bad"'
    ]
    kinds = [type(s).__name__ for s in d.statements]
    assert kinds == ["ActionStmt", "MatchStmt"]
    assert d.statements[0].where == ast.Where(str(inc), 1)
    assert d.statements[1].where == ast.Where("main.conf", 2)


def test_missing_include() -> None:
    msg = error('include "/nonexistent/x.conf"\n')
    assert msg == "t.conf:1: failed to include file /nonexistent/x.conf: No such file or directory"


def test_include_needs_a_file_name() -> None:
    assert error("include\n") == "t.conf:1: syntax error: expected a file name, found end of line"


# -- tables, pki, ca --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "backend", "config", "entries"),
    [
        ('table t "/etc/x"', "file", "/etc/x", ()),
        ("table t file:/etc/x", "file", "/etc/x", ()),
        ("table t static:/etc/x", "file", "/etc/x", ()),
        ("table t db:/etc/x.db", "db", "/etc/x.db", ()),
        ("table t getpwnam", "getpwnam", None, ()),
        ("table t { a, b }", "static", None, (("a", None), ("b", None))),
        ('table t { a = "1", b => "2" }', "static", None, (("a", "1"), ("b", "2"))),
        ("table t {\n a,\n b\n}", "static", None, (("a", None), ("b", None))),
        ('table t { "match", "x y" }', "static", None, (("match", None), ("x y", None))),
    ],
)
def test_table(text: str, backend: str, config: str | None, entries: object) -> None:
    stmt = one(text + "\n")
    assert isinstance(stmt, ast.TableStmt)
    assert (stmt.decl.name, stmt.decl.backend, stmt.decl.config) == ("t", backend, config)
    assert stmt.decl.entries == entries


def test_table_errors() -> None:
    assert "the path after the backend must be absolute" in error("table t file:relative\n")
    assert "mixes plain values and key = value pairs" in error("table t { a, b = c }\n")
    assert error("table t { }\n").startswith("t.conf:1: syntax error: expected a table value")
    assert "expected a table name" in error("table\n")


def test_pki_statements() -> None:
    stmts = parse(
        'pki MX.Example.com cert "/c"\npki mx.example.com key "/k"\npki mx.example.com dhe AUTO\n'
    )
    assert [(s.name, s.param, s.value) for s in stmts if isinstance(s, ast.PkiStmt)] == [
        ("mx.example.com", "cert", "/c"),
        ("mx.example.com", "key", "/k"),
        ("mx.example.com", "dhe", "auto"),
    ]


def test_pki_errors() -> None:
    assert error('pki "bad name!" cert "/c"\n') == "t.conf:1: not a valid domain name: bad name!"
    assert error("pki mail dhe bogus\n") == "t.conf:1: invalid DHE keyword: bogus"
    assert 'expected "cert", "key" or "dhe"' in error("pki mail bogus\n")
    assert "quote it to use it as a value" in error("pki mx cert /c\n")


def test_ca_statement() -> None:
    stmt = one('ca "*" cert "/ca.pem"\n')
    assert stmt == ast.CaStmt("*", "/ca.pem", ast.Where("t.conf", 1))
    assert 'expected "cert"' in error("ca x key /k\n")


# -- listen -------------------------------------------------------------------------------------


def test_listen_defaults() -> None:
    lis = listener("listen on lo\n")
    assert lis == model.Listener("lo")
    assert lis.effective_port == 25
    assert (lis.file, lis.line) == ("t.conf", 1)


def test_listen_every_option() -> None:
    lis = listener(
        "listen on 127.0.0.1 inet4 port 2525 tls-require verify pki a pki B ca c "
        'ciphers "HIGH" protocols "tlsv1.3" auth <creds> tag T hostname mx.example.org '
        "hostnames <names> senders <snd> masquerade mask-src received-auth no-dsn proxy-v2 "
        "filter { f1, f2 }\n"
    )
    assert lis == model.Listener(
        interface="127.0.0.1",
        family="inet4",
        port=2525,
        tls=model.TlsMode.REQUIRE,
        verify=True,
        pki=("a", "b"),
        ca="c",
        ciphers="HIGH",
        protocols="tlsv1.3",
        auth=model.AuthMode.REQUIRED,
        auth_table=model.NamedTable("creds"),
        tag="T",
        hostname="mx.example.org",
        hostnames=model.NamedTable("names"),
        senders=model.NamedTable("snd"),
        masquerade=True,
        mask_src=True,
        received_auth=True,
        no_dsn=True,
        proxy_v2=True,
        filter=model.FilterRef(("f1", "f2"), chain=True),
    )


@pytest.mark.parametrize(
    ("option", "tls", "port"),
    [("smtps", model.TlsMode.SMTPS, 465), ("tls", model.TlsMode.STARTTLS, 25)],
)
def test_listen_tls_modes(option: str, tls: model.TlsMode, port: int) -> None:
    lis = listener(f"listen on lo {option}\n")
    assert (lis.tls, lis.effective_port) == (tls, port)


def test_listen_port_names() -> None:
    assert listener("listen on lo port smtps\n").port == 465
    assert listener("listen on lo port submission\n").port == 587
    # a quoted port is a service name, as in OpenSMTPD
    assert error('listen on lo port "2525"\n') == "t.conf:1: invalid port: 2525"


def test_listen_port_zero_lets_the_system_pick() -> None:
    # OpenSMTPD refuses port 0; mta takes it (servers in test suites) and
    # reports the port bound (mta.server.listeners)
    assert listener("listen on lo port 0\n").effective_port == 0


def test_listen_auth_optional_without_table() -> None:
    lis = listener("listen on lo tls auth-optional filter f\n")
    assert (lis.auth, lis.auth_table) == (model.AuthMode.OPTIONAL, None)
    assert lis.filter == model.FilterRef(("f",), chain=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen on lo port 25 port 26", "port already specified"),
        ("listen on lo inet4 inet6", "address family already specified"),
        ("listen on lo tls smtps", "TLS mode already specified"),
        ("listen on lo tag a tag b", "tag already specified"),
        ("listen on lo auth auth-optional", "auth already specified"),
        ("listen on lo mask-src mask-src", "mask-source already specified"),
        ("listen on lo no-dsn no-dsn", "no-dsn already specified"),
        ("listen on lo port 70000", "invalid port: 70000"),
        ("listen on lo port nosuchservice", "invalid port: nosuchservice"),
        ("listen on lo tag " + "x" * 32, "tag name too long"),
        ("listen on lo bogus", 'syntax error: unknown listen option "bogus"'),
        ("listen lo", 'syntax error: expected "on", found "lo"'),
        ("listen on socket bogus", 'syntax error: unknown socket listener option "bogus"'),
        ("listen on socket tag a tag b", "tag already specified"),
    ],
)
def test_listen_errors(text: str, message: str) -> None:
    assert error(text + "\n") == f"t.conf:1: {message}"


def test_listen_socket() -> None:
    stmt = one("listen on socket filter f mask-src no-dsn tag T\n")
    assert isinstance(stmt, ast.SocketStmt)
    assert stmt.socket == model.SocketListener(
        filter=model.FilterRef(("f",), chain=False), mask_src=True, no_dsn=True, tag="T"
    )
    assert stmt.socket.explicit


# -- action ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "method"),
    [
        ("mbox", model.LocalDelivery("mbox")),
        ("maildir", model.LocalDelivery("maildir")),
        ("maildir junk", model.LocalDelivery("maildir", junk=True)),
        ('maildir "~/Mail"', model.LocalDelivery("maildir", path="~/Mail")),
        ('maildir "~/Mail" junk', model.LocalDelivery("maildir", path="~/Mail", junk=True)),
        ('lmtp "/run/lmtp"', model.LocalDelivery("lmtp", path="/run/lmtp")),
        ('lmtp "h:24" rcpt-to', model.LocalDelivery("lmtp", path="h:24", rcpt_to=True)),
        ('mda "/bin/x %{rcpt}"', model.LocalDelivery("mda", path="/bin/x %{rcpt}")),
        ("forward-only", model.LocalDelivery("forward-only")),
        ("expand-only", model.LocalDelivery("expand-only")),
        (
            "maildir alias <a> userbase <u> user joe wrapper w",
            model.LocalDelivery(
                "maildir",
                alias=model.NamedTable("a"),
                userbase=model.NamedTable("u"),
                user="joe",
                wrapper="w",
            ),
        ),
        (
            "mbox virtual { a = b }",
            model.LocalDelivery("mbox", virtual=model.InlineTable((("a", "b"),))),
        ),
    ],
)
def test_action_local(text: str, method: model.LocalDelivery) -> None:
    a = action(f'action "x" {text}\n')
    assert a == model.Action("x", method)


def test_action_ttl() -> None:
    assert action("action x mbox ttl 2h\n").ttl == 7200
    assert action("action x relay ttl 1d\n").ttl == 86400


def test_action_relay_every_option() -> None:
    a = action(
        'action r relay host "smtp+tls://h:587" helo mx.example.org helo-src <hs> src <s> '
        'pki MX ca CA ciphers "HIGH" protocols "all" tls no-verify auth <creds> '
        "mail-from bounce@example.org filter f\n"
    )
    assert a.method == model.Relay(
        host=model.InlineTable((("smtp+tls://h:587", None),)),
        helo="mx.example.org",
        helo_src=model.NamedTable("hs"),
        src=model.NamedTable("s"),
        pki="mx",
        ca="ca",
        ciphers="HIGH",
        protocols="all",
        tls="no-verify",
        auth=model.NamedTable("creds"),
        mail_from="bounce@example.org",
        filter=model.FilterRef(("f",), chain=False),
    )


def test_action_relay_backup_domain_tls_srs() -> None:
    assert action("action r relay backup mx mx2.example.org tls\n").method == model.Relay(
        backup=True, backup_mx="mx2.example.org", tls="required"
    )
    assert action("action r relay domain <d>\n").method == model.Relay(domain=model.NamedTable("d"))
    stmts = parse('srs key "k"\naction r relay srs filter { a, b }\n')
    assert isinstance(stmts[1], ast.ActionStmt)
    assert stmts[1].action.method == model.Relay(
        srs=True, filter=model.FilterRef(("a", "b"), chain=True)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("action a mbox user joe", "user may not be specified for this dispatcher"),
        ("action a forward-only user joe", "user may not be specified for forward-only"),
        ("action a expand-only user joe", "user may not be specified for expand-only"),
        ("action a maildir user a user b", "user already specified for this dispatcher"),
        (
            "action a maildir alias <t> virtual <t>",
            "alias mapping already specified for this dispatcher",
        ),
        (
            "action a maildir virtual <t> alias <t>",
            "virtual mapping already specified for this dispatcher",
        ),
        (
            "action a maildir alias <t> alias <t>",
            "alias mapping already specified for this dispatcher",
        ),
        (
            "action a maildir userbase <t> userbase <t>",
            "userbase mapping already specified for this dispatcher",
        ),
        ("action a maildir wrapper a wrapper b", "wrapper already specified for this dispatcher"),
        ("action a mbox ttl 1d ttl 2d", "ttl already specified for this dispatcher"),
        ("action a mbox ttl 4x", 'ttl delay "4x" is invalid'),
        ("action a mbox ttl 0d", 'ttl delay "0d" is invalid'),
        ('action a relay backup host "smtp://h"', "backup and host are mutually exclusive"),
        ('action a relay host "smtp://h" backup', "backup and host are mutually exclusive"),
        ("action a relay domain <d> backup", "backup and domain are mutually exclusive"),
        ("action a relay backup domain <d>", "backup and domain are mutually exclusive"),
        (
            'action a relay host "smtp://h" host "smtp://i"',
            "host mapping already specified for this dispatcher",
        ),
        ("action a relay auth <t>", "auth may not be specified without host on a dispatcher"),
        ("action a relay srs", "an srs key is required for srs to be specified in an action"),
        ("action a relay helo a helo b", "helo already specified for this dispatcher"),
        ("action a relay tls tls", "tls already specified for this dispatcher"),
        ("action a relay src <a> src <b>", "source mapping already specified for this dispatcher"),
        (
            "action a relay helo-src <a> helo-src <b>",
            "helo-source mapping already specified for this dispatcher",
        ),
        ("action a relay filter a filter b", "filter already specified for this dispatcher"),
        (
            "action a",
            "syntax error: expected a delivery method (mbox, maildir, lmtp, mda, relay, ...), found end of line",
        ),
        (
            "action a bogus",
            'syntax error: expected a delivery method (mbox, maildir, lmtp, mda, relay, ...), found "bogus"',
        ),
        ("action a mbox bogus", 'syntax error: expected end of line, found "bogus"'),
        ("action a mda", "syntax error: expected an MDA command, found end of line"),
        (
            "action mbox mbox",
            'syntax error: expected an action name, found the keyword "mbox" (quote it to use it as a value)',
        ),
    ],
)
def test_action_errors(text: str, message: str) -> None:
    assert error(text + "\n") == f"t.conf:1: {message}"


# -- match ------------------------------------------------------------------------------------------


FROM_LOCAL = model.Criterion("from", "local")
FOR_LOCAL = model.Criterion("for", "local")


def test_match_defaults() -> None:
    r = rule("match reject\n")
    assert r.criteria == (FROM_LOCAL, FOR_LOCAL)
    assert r.action is None
    assert rule('match action "a"\n').action == "a"


@pytest.mark.parametrize(
    ("text", "crit"),
    [
        ("from any", model.Criterion("from", "any")),
        ("from local", model.Criterion("from", "local")),
        ("from socket", model.Criterion("from", "socket")),
        ("! from socket", model.Criterion("from", "socket", negated=True)),
        ("from src <n>", model.Criterion("from", "src", model.NamedTable("n"))),
        (
            "from src 10.0.0.0/8",
            model.Criterion("from", "src", model.InlineTable((("10.0.0.0/8", None),))),
        ),
        ("from src regex <r>", model.Criterion("from", "src", model.NamedTable("r"), regex=True)),
        ("from rdns", model.Criterion("from", "rdns")),
        ("from rdns <d>", model.Criterion("from", "rdns", model.NamedTable("d"))),
        (
            "!from rdns regex { a, b }",
            model.Criterion(
                "from", "rdns", model.InlineTable((("a", None), ("b", None))), True, True
            ),
        ),
    ],
)
def test_match_from(text: str, crit: model.Criterion) -> None:
    assert rule(f"match {text} reject\n").criteria == (crit, FOR_LOCAL)


@pytest.mark.parametrize(
    ("text", "crit"),
    [
        ("for any", model.Criterion("for", "any")),
        ("for local", model.Criterion("for", "local")),
        ("! for local", model.Criterion("for", "local", negated=True)),
        (
            "for domain example.com",
            model.Criterion("for", "domain", model.InlineTable((("example.com", None),))),
        ),
        ("for domain <d>", model.Criterion("for", "domain", model.NamedTable("d"))),
        (
            "for domain regex <r>",
            model.Criterion("for", "domain", model.NamedTable("r"), regex=True),
        ),
    ],
)
def test_match_for(text: str, crit: model.Criterion) -> None:
    assert rule(f"match {text} reject\n").criteria == (FROM_LOCAL, crit)


def test_match_from_auth_and_mail_from_mean_from_any() -> None:
    r = rule("match from auth <u> reject\n")
    assert r.criteria == (
        model.Criterion("from", "any"),
        FOR_LOCAL,
        model.Criterion("auth", table=model.NamedTable("u")),
    )
    r = rule("match ! from mail-from regex <m> reject\n")
    assert r.get("from") == model.Criterion("from", "any")
    assert r.get("mail-from") == model.Criterion(
        "mail-from", table=model.NamedTable("m"), regex=True, negated=True
    )
    assert rule("match from auth reject\n").get("auth") == model.Criterion("auth")


def test_match_for_rcpt_to_means_for_any() -> None:
    r = rule("match for rcpt-to <r> reject\n")
    assert r.get("for") == model.Criterion("for", "any")
    assert r.get("rcpt-to") == model.Criterion("rcpt-to", table=model.NamedTable("r"))


def test_match_other_criteria_in_canonical_order() -> None:
    r = rule(
        "match tls !rcpt-to <r> mail-from regex <m> auth helo <h> tag T for any from any "
        'action "a"\n'
    )
    assert [c.kind for c in r.criteria] == [
        "from",
        "for",
        "tag",
        "helo",
        "auth",
        "mail-from",
        "rcpt-to",
        "tls",
    ]
    assert r.get("tag") == model.Criterion("tag", table=model.InlineTable((("T", None),)))
    assert r.get("rcpt-to") == model.Criterion("rcpt-to", table=model.NamedTable("r"), negated=True)
    assert r.get("tls") == model.Criterion("tls")
    assert r.get("auth") == model.Criterion("auth")
    assert r.action == "a"
    assert (r.file, r.line) == ("t.conf", 1)


def test_match_auth_forms() -> None:
    assert rule("match auth <u> reject\n").get("auth") == model.Criterion(
        "auth", table=model.NamedTable("u")
    )
    assert rule("match !auth regex <u> reject\n").get("auth") == model.Criterion(
        "auth", table=model.NamedTable("u"), regex=True, negated=True
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("match from any from local reject", "from already specified for this rule"),
        ("match for any for local reject", "for already specified for this rule"),
        ("match tag a tag b reject", "tag already specified for this rule"),
        ("match auth auth reject", "auth already specified for this rule"),
        ("match from auth auth reject", "auth already specified for this rule"),
        ("match for rcpt-to <a> rcpt-to <b> reject", "rcpt-to already specified for this rule"),
        ("match tls tls reject", "tls already specified for this rule"),
        (
            "match for any",
            'syntax error: expected a match criterion, "action NAME" or "reject", found end of line',
        ),
        ("match for any action", "syntax error: expected an action name, found end of line"),
        ("match for any reject now", 'syntax error: expected end of line, found "now"'),
        (
            "match from nowhere reject",
            'syntax error: expected socket, local, any, src, rdns, auth or mail-from, found "nowhere"',
        ),
        (
            "match for nowhere reject",
            'syntax error: expected local, any, domain or rcpt-to, found "nowhere"',
        ),
        (
            "match ! reject",
            "syntax error: expected a match criterion after '!', found the keyword \"reject\" (quote it to use it as a value)",
        ),
        (
            "match from src reject",
            'syntax error: expected a table, found the keyword "reject" (quote it to use it as a value)',
        ),
        (
            "match tag <t reject",
            "syntax error: expected '>', found the keyword \"reject\" (quote it to use it as a value)",
        ),
    ],
)
def test_match_errors(text: str, message: str) -> None:
    assert error(text + "\n") == f"t.conf:1: {message}"


# -- filter and proc -------------------------------------------------------------------------------------


def test_proc_and_filters() -> None:
    stmts = parse(
        'proc p "/bin/f" user u group g chroot "/c"\n'
        "filter a proc p\n"
        'filter b proc-exec "/bin/g -x" user v\n'
        "filter c chain { a, b }\n"
        'filter d phase mail-from match !mail-from regex <r> reject "550 no"\n'
        "filter e phase connect match fcrdns junk\n"
        "filter f phase rcpt-to match rdns bypass\n"
        'filter g phase commit match auth <u> report "x"\n'
    )
    assert isinstance(stmts[0], ast.ProcStmt)
    assert stmts[0].proc == model.Proc("p", "/bin/f", "u", "g", "/c")
    filters = {s.name: s for s in stmts if isinstance(s, ast.FilterStmt)}
    assert filters["a"].filter == model.FilterProc("p")
    assert filters["b"].filter == model.FilterProc("b", exec_=True)
    assert filters["b"].proc == model.Proc("b", "/bin/g -x", user="v")
    assert filters["c"].filter == model.FilterChain(("a", "b"))
    assert filters["d"].filter == model.FilterBuiltin(
        "mail-from",
        model.FilterCondition.MAIL_FROM,
        True,
        model.NamedTable("r"),
        True,
        "reject",
        "550 no",
    )
    assert filters["e"].filter == model.FilterBuiltin(
        "connect", model.FilterCondition.FCRDNS, False, None, False, "junk"
    )
    assert filters["f"].filter == model.FilterBuiltin(
        "rcpt-to", model.FilterCondition.RDNS, False, None, False, "bypass"
    )
    assert filters["g"].filter == model.FilterBuiltin(
        "commit", model.FilterCondition.AUTH, False, model.NamedTable("u"), False, "report", "x"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "filter f bogus",
            'syntax error: expected "proc", "proc-exec", "phase" or "chain", found "bogus"',
        ),
        (
            "filter f phase data-line match rdns junk",
            'syntax error: expected a filter phase (connect, helo, ehlo, auth, mail-from, rcpt-to, data, commit), found the keyword "data-line" (quote it to use it as a value)',
        ),
        (
            "filter f phase connect match helo <h> junk",
            'syntax error: expected a condition allowed in phase connect (fcrdns, rdns, src), found the keyword "helo" (quote it to use it as a value)',
        ),
        (
            "filter f phase helo match rcpt-to <h> junk",
            'syntax error: expected a condition allowed in phase helo (fcrdns, rdns, src, helo), found the keyword "rcpt-to" (quote it to use it as a value)',
        ),
        (
            "filter f phase commit match rdns junk",
            'syntax error: expected a decision (reject, disconnect, rewrite, report), found the keyword "junk" (quote it to use it as a value)',
        ),
        (
            "filter f phase connect match rdns reject",
            "syntax error: expected the reject text, found end of line",
        ),
        (
            "filter f phase connect match src junk",
            'syntax error: expected a table, found the keyword "junk" (quote it to use it as a value)',
        ),
        ('proc p "c" user a user b', "user already specified for this processor"),
        ('filter f proc-exec "c" chroot a chroot b', "chroot already specified for this processor"),
        ("proc p", "syntax error: expected a command, found end of line"),
    ],
)
def test_filter_errors(text: str, message: str) -> None:
    assert error(text + "\n") == f"t.conf:1: {message}"


# -- global options -------------------------------------------------------------------------------------


def settings(text: str) -> dict[tuple[str, ...], object]:
    return {s.key: s.value for s in parse(text) if isinstance(s, ast.SetStmt)}


def test_global_options() -> None:
    got = settings(
        "queue compression\n"
        'queue encryption "0123456789abcdef0123456789abcdef"\n'
        "queue ttl 2d\n"
        "smtp limit max-rcpt 10 max-mails 5\n"
        'smtp ciphers "HIGH"\n'
        "smtp max-message-size 10M\n"
        'smtp sub-addr-delim "-"\n'
        "mda limit max-session 1 max-session-per-user 2 task-lowat 3 task-hiwat 4 task-release 5\n"
        'mda wrapper w "/bin/w %{mda}"\n'
        "scheduler limit max-inflight 1 max-evp-batch-size 2 max-msg-batch-size 3 max-schedule 4\n"
        "mta max-deferred 7\n"
        'srs key "secret"\n'
        'srs key backup "old"\n'
        "srs ttl 2d\n"
        "bounce warn-interval 1h, 2h, 3h, 4h, 5h\n"
        'admd "mx.example.org"\n'
    )
    assert got == {
        ("queue", "compression"): True,
        ("queue", "encryption"): "0123456789abcdef0123456789abcdef",
        ("queue", "ttl"): 2 * 86400,
        ("smtp", "max_rcpt"): 10,
        ("smtp", "max_mails"): 5,
        ("smtp", "ciphers"): "HIGH",
        ("smtp", "max_message_size"): 10 << 20,
        ("smtp", "sub_addr_delim"): "-",
        ("mda", "max_session"): 1,
        ("mda", "max_session_per_user"): 2,
        ("mda", "task_lowat"): 3,
        ("mda", "task_hiwat"): 4,
        ("mda", "task_release"): 5,
        ("mda", "wrapper", "w"): "/bin/w %{mda}",
        ("scheduler", "max_inflight"): 1,
        ("scheduler", "max_evp_batch_size"): 2,
        ("scheduler", "max_msg_batch_size"): 3,
        ("scheduler", "max_schedule"): 4,
        ("mta", "max_deferred"): 7,
        ("srs", "key"): "secret",
        ("srs", "key_backup"): "old",
        ("srs", "ttl_days"): 2,
        ("bounce_warn",): (3600, 7200, 10800, 14400),
        ("admd",): "mx.example.org",
    }


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("queue encryption", None),
        ("queue encryption -", "stdin"),
        ("queue encryption stdin", "stdin"),
    ],
)
def test_queue_encryption_key_forms(text: str, key: str | None) -> None:
    assert settings(text + "\n") == {("queue", "encryption"): key}


def test_mta_limit() -> None:
    got = settings(
        "mta limit for domain example.org max-conn-per-host 3 inet6 session-keepalive 9\n"
    )
    assert got == {
        ("mta", "limit", "example.org"): model.MtaLimits(
            (("max-conn-per-host", 3), ("session-keepalive", 9)), "inet6"
        )
    }


def test_sizes() -> None:
    assert settings("smtp max-message-size 1024\n") == {("smtp", "max_message_size"): 1024}
    assert settings("smtp max-message-size 1.5K\n") == {("smtp", "max_message_size"): 1536}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("queue ttl 4x", "invalid ttl delay: 4x"),
        (
            "queue ttl 4",
            'syntax error: expected a delay such as 4d, found the number "4" '
            "(a delay needs a unit: s, m, h or d)",
        ),
        (
            "queue bogus",
            'syntax error: expected "compression", "encryption" or "ttl", found "bogus"',
        ),
        ("smtp max-message-size 12Q", "invalid size: 12Q"),
        ("smtp max-message-size -5", "invalid size: -5"),
        ('smtp sub-addr-delim "ab"', "sub-addr-delim must be one character"),
        ('smtp sub-addr-delim "@"', "sub-addr-delim uses invalid character"),
        ('smtp sub-addr-delim " "', "sub-addr-delim uses invalid character"),
        ("smtp limit max-rcpt x", 'syntax error: expected a number for max-rcpt, found "x"'),
        ("smtp limit bogus 1", "invalid session limit keyword: bogus"),
        ("mda limit bogus 1", "invalid scheduler limit keyword: bogus"),
        ("scheduler limit bogus 1", "invalid scheduler limit keyword: bogus"),
        ("scheduler bogus", 'syntax error: expected "limit", found "bogus"'),
        ("mta limit bogus 1", "invalid mta limit keyword: bogus"),
        ("mta limit for bogus", 'syntax error: expected "domain", found "bogus"'),
        ("srs ttl 4x", 'ttl delay "4x" is invalid'),
        ("srs ttl 12h", 'ttl delay "12h" is too short (SRS needs at least 1d)'),
        ("srs bogus", 'syntax error: expected "key" or "ttl", found "bogus"'),
        ("bounce warn-interval 1h, 4x", 'bounce delay "4x" is invalid'),
        ("bounce 1h", 'syntax error: expected "warn-interval", found "1h"'),
        ('admd "a\tb"', "not a valid admd"),
        (
            "smtp",
            'syntax error: expected "limit", "ciphers", "max-message-size" or "sub-addr-delim", found end of line',
        ),
        ("bogus", 'syntax error: expected a directive, found "bogus"'),
        ("{", 'syntax error: expected a directive, found "{"'),
    ],
)
def test_global_errors(text: str, message: str) -> None:
    assert error(text + "\n") == f"t.conf:1: {message}"


# -- grammar detection and error recovery ---------------------------------------------------------------


def test_mixing_grammars() -> None:
    msg = error("match for any reject\naccept for any deliver to mbox\n")
    assert msg.startswith('t.conf:2: "accept" belongs to the legacy grammar')
    assert "(since t.conf:1)" in msg
    msg = error("accept for any deliver to mbox\naction a mbox\n")
    assert msg.startswith('t.conf:2: "action" belongs to the modern grammar')


def test_grammar_detected() -> None:
    assert doc("match reject\n").grammar == "modern"
    assert doc("accept for any deliver to mbox\n").grammar == "legacy"
    assert doc("").grammar == "modern"


def test_every_error_is_reported_with_its_line() -> None:
    d = doc("bogus\nmatch from any from any reject\nlisten on lo port 70000\nmatch reject\n")
    assert [(e.file, e.line) for e in d.errors] == [("t.conf", 1), ("t.conf", 2), ("t.conf", 3)]
    assert len(d.statements) == 1


def test_error_at_statement_start_does_not_loop() -> None:
    d = doc("from\nfor\n!\n<\n}\nmatch reject\n")
    assert len(d.errors) == 5
    assert len(d.statements) == 1


def test_unterminated_quote_stops_parsing() -> None:
    d = doc('match reject\naction a mda "oops\nmatch reject\n')
    assert len(d.errors) == 1
    err: ConfigError = d.errors[0]
    assert (err.file, err.line) == ("t.conf", 2)
    assert "never closed" in err.message
