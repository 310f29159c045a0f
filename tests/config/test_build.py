# ruff: noqa: E501  (tables of exact error messages read best one per line)
"""The builder: parsed statements folded into the checked model, through ``load_text``.

Defaults, name resolution (tables, actions, filters, procs, pki and ca must be declared
first), table kinds, file checks and every build-time error, each located at
``file:line``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mta.config import model
from mta.config.load import LoadResult, load_config, load_text
from mta.errors import ConfigError, ConfigErrors
from tests.config.corpus_util import CORPUS

HOST = "mx.example.org"
FILES = CORPUS / "files"


def load(text: str, **kwargs: object) -> LoadResult:
    options: dict[str, object] = {"hostname": HOST, "check_interfaces": False}
    options.update(kwargs)
    return load_text(text, "t.conf", **options)  # type: ignore[arg-type]


def cfg(text: str, **kwargs: object) -> model.Config:
    return load(text, **kwargs).config


def errors(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load(text, **kwargs)
    assert all(isinstance(e, ConfigError) for e in info.value.errors)
    return [str(e) for e in info.value.errors]


def error(text: str, **kwargs: object) -> str:
    errs = errors(text, **kwargs)
    assert len(errs) == 1, errs
    return errs[0]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    dest = tmp_path / "files"
    shutil.copytree(FILES, dest)
    for key in dest.glob("*key*.pem"):
        key.chmod(0o600)
    return dest


# -- defaults --------------------------------------------------------------------------------


def test_defaults() -> None:
    c = cfg("match for any reject\n")
    assert c.queue == model.QueueOptions(
        compression=False, encryption=False, key=None, ttl=4 * 86400
    )
    assert c.smtp == model.SmtpOptions(1000, 100, None, 36700160, "+")
    assert c.scheduler == model.SchedulerLimits(5000, 256, 1024, 10)
    assert c.mda == model.MdaLimits(50, 7, 30, 50, 10)
    assert c.mta_max_deferred == 100
    assert c.mta_limits == {}
    assert c.srs == model.SrsOptions(None, None, 4)
    assert c.bounce_warn == (4 * 3600,)
    assert c.admd is None
    assert c.listeners == ()
    assert c.socket == model.SocketListener()
    assert not c.socket.explicit
    assert c.hostname == HOST
    assert c.rules == (
        model.Rule((model.Criterion("from", "local"), model.Criterion("for", "any")), None),
    )


def test_no_rules() -> None:
    assert errors("listen on lo\n") == ["t.conf: no rules, nothing to do (add a match rule)"]
    assert errors("") == ["t.conf: no rules, nothing to do (add a match rule)"]


def test_every_global_option_reaches_the_model() -> None:
    c = cfg(
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
        "mta limit max-conn-per-host 3\n"
        "mta limit session-keepalive 9 inet4\n"
        "mta limit for domain example.com max-conn-per-route 1\n"
        'srs key "secret"\n'
        'srs key backup "old"\n'
        "srs ttl 2d\n"
        "bounce warn-interval 1h, 2h\n"
        'admd "mx.example.org"\n'
        "match for any reject\n"
    )
    assert c.queue == model.QueueOptions(True, True, "0123456789abcdef0123456789abcdef", 2 * 86400)
    assert c.smtp == model.SmtpOptions(10, 5, "HIGH", 10 << 20, "-")
    assert c.mda == model.MdaLimits(1, 2, 3, 4, 5)
    assert c.mda_wrappers == {"w": "/bin/w %{mda}"}
    assert c.scheduler == model.SchedulerLimits(1, 2, 3, 4)
    assert c.mta_max_deferred == 7
    assert c.mta_limits == {
        "": model.MtaLimits((("max-conn-per-host", 3), ("session-keepalive", 9)), "inet4"),
        "example.com": model.MtaLimits((("max-conn-per-route", 1),)),
    }
    assert c.mta_limits[""].get("max-conn-per-host") == 3
    assert c.mta_limits[""].get("conn-delay-relay") == 0  # the default (OpenSMTPD: 2)
    assert c.srs == model.SrsOptions("secret", "old", 2)
    assert c.bounce_warn == (3600, 7200)
    assert c.admd == "mx.example.org"


def test_a_later_global_setting_wins() -> None:
    c = cfg("smtp limit max-rcpt 10\nsmtp limit max-rcpt 20\nmatch for any reject\n")
    assert c.smtp.max_rcpt == 20


def test_queue_encryption_from_stdin() -> None:
    c = cfg("queue encryption -\nmatch for any reject\n")
    assert (c.queue.encryption, c.queue.key) == (True, "stdin")
    c = cfg("queue encryption\nmatch for any reject\n")
    assert (c.queue.encryption, c.queue.key) == (True, None)


@pytest.mark.parametrize("key", ["short", "x" * 33, "é" * 16 + "x"])
def test_queue_key_not_32_bytes(key: str) -> None:
    msg = error(f'\nqueue encryption "{key}"\nmatch for any reject\n')
    assert msg.startswith("t.conf:2: invalid key for queue encryption: it must be exactly 32 bytes")


def test_queue_key_of_32_bytes() -> None:
    assert cfg('queue encryption "' + "é" * 16 + '"\nmatch for any reject\n').queue.key == "é" * 16


# -- declarations before use ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("match for any action nope", "t.conf:1: no such dispatcher: nope"),
        ("match for domain <nope> reject", "t.conf:1: no such table: nope"),
        ("action a mbox alias <nope>\nmatch for any action a", "t.conf:1: no such table: nope"),
        (
            "listen on lo filter nope\nmatch for any reject",
            "t.conf:1: no filter exist with that name: nope",
        ),
        (
            "listen on socket filter nope\nmatch for any reject",
            "t.conf:1: no filter exist with that name: nope",
        ),
        (
            "action a relay filter nope\nmatch for any action a",
            "t.conf:1: no filter exist with that name: nope",
        ),
        (
            "filter f proc nope\nmatch for any reject",
            "t.conf:1: no processor exist with that name: nope",
        ),
        (
            "filter c chain { nope }\nmatch for any reject",
            "t.conf:1: no filter exist with that name: nope",
        ),
        (
            "listen on lo tls pki nope\nmatch for any reject",
            "t.conf:1: pki name not found: nope (declare it before the listener)",
        ),
        (
            "action a mda x wrapper w\nmatch for any action a",
            "t.conf:1: no mda wrapper with that name: w",
        ),
        ("match for any action a\naction a mbox", "t.conf:1: no such dispatcher: a"),
        ("match for domain <t> reject\ntable t { a }", "t.conf:1: no such table: t"),
    ],
)
def test_undeclared(text: str, message: str) -> None:
    assert message in errors(text + "\n")


def test_undeclared_ca(files: Path) -> None:
    text = f'pki mail cert "{files}/cert.pem"\npki mail key "{files}/key.pem"\n'
    assert error(text + "listen on lo tls pki mail ca nope\nmatch for any reject\n") == (
        "t.conf:3: ca name not found: nope (declare it before the listener)"
    )


def test_relay_pki_undeclared_is_a_warning() -> None:
    result = load("action r relay pki nope ca nope2\nmatch for any action r\n")
    assert result.warnings == (
        "t.conf:1: warning: pki nope is not declared",
        "t.conf:1: warning: ca nope2 is not declared",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "action a mbox\naction a maildir",
            "t.conf:2: dispatcher already declared with that name: a",
        ),
        ("table t { a }\ntable t { b }", 't.conf:2: table "t" already defined'),
        ('proc p "a"\nproc p "b"', "t.conf:2: processor already exists with that name: p"),
        (
            "filter f phase connect match rdns junk\nfilter f phase helo match rdns junk",
            "t.conf:2: filter already exists with that name: f",
        ),
        (
            'mda wrapper w "a"\nmda wrapper w "b"',
            "t.conf:2: mda wrapper already declared with that name: w",
        ),
        ("listen on socket\nlisten on socket", "t.conf:2: socket listener already configured"),
    ],
)
def test_duplicates(text: str, message: str) -> None:
    assert error(text + "\nmatch for any reject\n") == message


def test_a_failed_declaration_is_reported_once() -> None:
    assert errors("action a relay backup host smtp://h\nmatch for any action a\n") == [
        "t.conf:1: backup and host are mutually exclusive"
    ]
    assert errors("table t { a, b = c }\nmatch for domain <t> reject\n") == [
        "t.conf:1: syntax error: a table mixes plain values and key = value pairs"
    ]
    assert errors("filter f phase nope\nlisten on lo filter f\nmatch for any reject\n") == [
        "t.conf:1: syntax error: expected a filter phase (connect, helo, ehlo, auth, mail-from, "
        'rcpt-to, data, commit), found "nope"'
    ]


# -- filters -----------------------------------------------------------------------------------------


def test_filters_and_procs() -> None:
    c = cfg(
        'proc p "/bin/p"\n'
        "filter a proc p\n"
        'filter b proc-exec "/bin/b"\n'
        "filter k phase connect match src { 10.0.0.0/8 } junk\n"
        "filter c chain { a, b, k }\n"
        "listen on lo filter c\n"
        "listen on 127.0.0.1 port 2525 filter { a, k }\n"
        "listen on socket filter b\n"
        "match for any reject\n"
    )
    assert c.procs == {"p": model.Proc("p", "/bin/p"), "b": model.Proc("b", "/bin/b")}
    assert set(c.filters) == {"a", "b", "k", "c"}
    assert c.listeners[0].filter == model.FilterRef(("c",), chain=False)
    assert c.socket.filter == model.FilterRef(("b",), chain=False)
    assert c.socket.explicit


@pytest.mark.parametrize(
    ("decls", "use", "message"),
    [
        (
            "filter a phase connect match rdns junk\n",
            "filter c chain { a, a }",
            "no filter allowed twice within a filter chain: a",
        ),
        (
            "filter a phase connect match rdns junk\nfilter c chain { a }\n",
            "filter d chain { c }",
            "no filter chain allowed within a filter chain: c",
        ),
        (
            'proc p "x"\nfilter a proc p\nfilter b proc p\n',
            "filter c chain { a, b }",
            "no proc allowed twice within a filter chain: p",
        ),
        (
            "filter a phase connect match rdns junk\nfilter c chain { a }\n",
            "listen on lo filter { c }",
            "no filter chain allowed within a filter chain: c",
        ),
        (
            "filter a phase connect match rdns junk\n",
            "listen on lo filter { a, a }",
            "no filter allowed twice within a filter chain: a",
        ),
    ],
)
def test_chain_errors(decls: str, use: str, message: str) -> None:
    line = decls.count("\n") + 1
    assert error(decls + use + "\nmatch for any reject\n") == f"t.conf:{line}: {message}"


# -- listeners ------------------------------------------------------------------------------------------


def test_listener_checks(files: Path) -> None:
    pki = f'pki mail cert "{files}/cert.pem"\npki mail key "{files}/key.pem"\nca c cert "{files}/ca.pem"\n'
    c = cfg(pki + "listen on lo smtps pki mail ca c auth\nmatch for any reject\n")
    assert c.pkis["mail"] == model.Pki("mail", f"{files}/cert.pem", f"{files}/key.pem")
    assert c.cas["c"] == model.Ca("c", f"{files}/ca.pem")
    assert c.listeners[0].effective_port == 465
    assert error(pki + "listen on lo auth\nmatch for any reject\n") == (
        "t.conf:4: invalid listen option: auth requires tls/smtps"
    )
    assert error(pki + "listen on lo auth-optional\nmatch for any reject\n") == (
        "t.conf:4: invalid listen option: auth requires tls/smtps"
    )
    assert error(pki + "listen on lo pki mail\nmatch for any reject\n") == (
        "t.conf:4: invalid listen option: pki requires tls/smtps"
    )
    assert error(pki + "listen on lo tls smtps\nmatch for any reject\n") == (
        "t.conf:4: TLS mode already specified"
    )


def test_listener_interfaces_are_resolved() -> None:
    c = cfg(
        "listen on lo\nlisten on 127.0.0.1 port 2525\nlisten on ::1 port 2526\nmatch for any reject\n",
        check_interfaces=True,
    )
    assert [lis.interface for lis in c.listeners] == ["lo", "127.0.0.1", "::1"]
    assert error("listen on 127.0.0.1 inet6\nmatch for any reject\n", check_interfaces=True) == (
        "t.conf:1: invalid virtual ip or interface: 127.0.0.1"
    )
    assert error("listen on nosuchif0\nmatch for any reject\n", check_interfaces=True) == (
        "t.conf:1: invalid virtual ip or interface: nosuchif0"
    )


def test_listener_tables(files: Path) -> None:
    c = cfg(
        f'table names "{files}/addrnames"\ntable snd "{files}/senders"\n'
        "listen on lo hostnames <names> senders <snd> masquerade\nmatch for any reject\n"
    )
    assert c.listeners[0].hostnames == model.NamedTable("names")
    assert (
        error("table l { a, b }\nlisten on lo hostnames <l>\nmatch for any reject\n")
        == 't.conf:2: invalid use of table "l" as HOSTNAMES parameter'
    )
    assert (
        error("table l { a, b }\nlisten on lo senders <l>\nmatch for any reject\n")
        == 't.conf:2: invalid use of table "l" as SENDERS parameter'
    )


# -- actions ------------------------------------------------------------------------------------------------


def test_actions(files: Path) -> None:
    c = cfg(
        f'table aliases "{files}/aliases"\n'
        f'table users "{files}/userbase"\n'
        f'table creds "{files}/credentials"\n'
        'mda wrapper w "/bin/w %{mda}"\n'
        'action loc maildir "~/Mail" junk alias <aliases> userbase <users> wrapper w ttl 1h\n'
        "action virt mbox virtual { '@example.com' = alice }\n"
        'action lm lmtp "127.0.0.1:24" rcpt-to\n'
        'action out relay host "smtp+tls://bob@smtp.example.com:587" auth <creds> tls\n'
        "match from any for domain example.com action virt\n"
        "match for local action loc\n"
        "match for any action out\n"
    )
    assert list(c.actions) == ["loc", "virt", "lm", "out"]
    assert c.actions["loc"] == model.Action(
        "loc",
        model.LocalDelivery(
            "maildir",
            path="~/Mail",
            junk=True,
            alias=model.NamedTable("aliases"),
            userbase=model.NamedTable("users"),
            wrapper="w",
        ),
        ttl=3600,
    )
    assert c.actions["loc"].is_local
    assert not c.actions["out"].is_local
    assert [r.action for r in c.rules] == ["virt", "loc", "out"]
    assert c.rules[0].line == 9


@pytest.mark.parametrize(
    ("decl", "message"),
    [
        ("action a mbox alias { a, b }", 'table "<dynamic>" may not be used for alias lookups'),
        ("action a mbox virtual { a, b }", 'table "<dynamic>" may not be used for virtual lookups'),
        (
            "action a mbox userbase { a, b }",
            'table "<dynamic>" may not be used for userbase lookups',
        ),
        (
            "action a relay helo-src { a, b }",
            'table "<dynamic>" may not be used for helo-source lookups',
        ),
        ("action a relay domain { a, b }", 'table "<dynamic>" may not be used for host lookups'),
        (
            'action a relay host "smtp://h" auth { a, b }',
            'table "<dynamic>" may not be used for auth lookups',
        ),
        ('action a relay host "bogus://h"', "invalid relay host bogus://h"),
        ('action a lmtp "nocolon"', "invalid lmtp destination: nocolon (use host:port or /socket)"),
    ],
)
def test_action_table_kinds(decl: str, message: str) -> None:
    assert message in error(decl + "\nmatch for any action a\n")


def test_wrong_named_table_kind() -> None:
    assert error("table t { a, b }\naction a mbox alias <t>\nmatch for any action a\n") == (
        't.conf:2: table "t" may not be used for alias lookups'
    )


# -- rules ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crit", "message"),
    [
        ("from src { a = b }", 'table "<dynamic>" may not be used for from lookups'),
        ("for domain { a = b }", "table \"<dynamic>\" may not be used for 'for' lookups"),
        ("tag { a = b }", 'table "<dynamic>" may not be used for tag lookups'),
        ("helo { a = b }", 'table "<dynamic>" may not be used for helo lookups'),
    ],
)
def test_rule_table_kinds(crit: str, message: str) -> None:
    assert error(f"match {crit} reject\n") == f"t.conf:1: {message}"


def test_rule_tables(files: Path) -> None:
    c = cfg(
        f'table dom "{files}/domains"\ntable re "{files}/regexes"\ntable net "{files}/netaddr"\n'
        "match from src <net> for domain <dom> reject\n"
        "match from rdns regex <re> for domain regex <re> reject\n"
        "match auth { alice } mail-from { a@example.com } rcpt-to regex <re> reject\n"
    )
    assert len(c.rules) == 3


def test_patterns_that_do_not_compile_are_errors(tmp_path: Path) -> None:
    patterns = tmp_path / "patterns"
    patterns.write_text("# comment\n^ok@\n^bad(@\n")
    errs = errors(
        f'table re "{patterns}"\n'
        'table inline { "^x[" }\n'
        'action "d" maildir\n'
        'filter "f" phase helo match helo regex { "*mx" } reject "550 no"\n'
        'listen on lo filter "f"\n'
        'match from any for rcpt-to regex <re> action "d"\n'
        'match from rdns regex <inline> for any action "d"\n'
        'match from any for domain regex { "(a)\\1" } action "d"\n'
    )
    assert errs == [
        "t.conf:4: invalid regex '*mx': nothing to repeat before * (at character 1)",
        f"t.conf:6: table re: {patterns}:3: invalid regex '^bad(@': unmatched (",
        "t.conf:7: table inline: invalid regex '^x[': unmatched [ (at character 3)",
        "t.conf:8: invalid regex '(a)\\1': back-reference \\1 is not supported (matching must stay linear)",
    ]


def test_regex_tables_are_marked_for_the_daemon(tmp_path: Path) -> None:
    patterns = tmp_path / "patterns"
    patterns.write_text("^a**b$\n[\\]@\n")  # valid POSIX: refused by RE2 as written
    result = load(
        f'table re "{patterns}"\ntable dom {{ example.org }}\n'
        'filter "f" phase mail-from match mail-from regex <re> reject "550 no"\n'
        'listen on lo filter "f"\n'
        "match from any for domain <dom> reject\n"
    )
    assert result.warnings == ()
    assert result.config.tables["re"].regex
    assert not result.config.tables["dom"].regex


def test_bad_entries_for_other_services_stay_warnings(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("joe 1000:x:/home/joe\n")
    result = load(
        f'table users "{users}"\naction "d" maildir userbase <users>\nmatch for any action "d"\n'
    )
    assert result.warnings == (
        f"t.conf:2: warning: table users: {users}:1: invalid userinfo: bad gid 'x'",
    )


# -- pki and ca files --------------------------------------------------------------------------------------


def test_pki_files_are_checked(files: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    errs = errors(
        f'pki a cert "{bad}"\npki a key "{bad}"\n'
        f'pki b key "{files}/key.pem"\n'
        f'pki c cert "{files}/cert.pem"\n'
        f'ca d cert "{tmp_path}/missing.pem"\n'
        "match for any reject\n"
    )
    assert errs[0].startswith(
        f"t.conf:1: pki a: failed to load certificate file: no valid PEM certificate in {bad}"
    )
    assert errs[1].startswith(f"t.conf:1: pki a: failed to load key file {bad}")
    assert errs[2] == "t.conf:3: pki b: missing certificate file"
    assert errs[3] == "t.conf:4: pki c: missing key file"
    assert (
        errs[4]
        == f"t.conf:5: ca d: failed to load CA file: cannot read {tmp_path}/missing.pem: No such file or directory"
    )
    assert len(errs) == 5


def test_pki_names_are_case_insensitive(files: Path) -> None:
    c = cfg(
        f'pki MX.example.com cert "{files}/cert.pem"\npki mx.EXAMPLE.com key "{files}/key.pem"\n'
        "listen on lo tls pki Mx.Example.Com\nmatch for any reject\n"
    )
    assert list(c.pkis) == ["mx.example.com"]
    assert c.listeners[0].pki == ("mx.example.com",)


# -- tables ------------------------------------------------------------------------------------------------


def test_table_files(files: Path) -> None:
    c = cfg(f'table a "{files}/aliases"\ntable d db:{files}/aliases.db\nmatch for any reject\n')
    assert c.tables["a"] == model.TableDecl("a", "file", f"{files}/aliases")
    assert c.tables["d"] == model.TableDecl("d", "db", f"{files}/aliases.db")


def test_missing_table_file() -> None:
    msg = error('table t "/nonexistent/x"\nmatch for any reject\n')
    assert msg.startswith("t.conf:1: invalid configuration file /nonexistent/x for table t:")
    assert "No such file or directory" in msg


def test_missing_table_file_message_names_the_file_and_the_reason_once() -> None:
    assert error("table t file:/nonexistent/x\nmatch for any reject\n") == (
        "t.conf:1: invalid configuration file /nonexistent/x for table t: No such file or directory"
    )


def test_malformed_table_file_keeps_the_line(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("a b\n=x\n")
    assert error(f"table t file:{tmp_path}/t\nmatch for any reject\n") == (
        f"t.conf:1: invalid configuration file {tmp_path}/t for table t: {tmp_path}/t:2: invalid map entry"
    )


def test_a_table_that_failed_to_load_is_reported_once() -> None:
    # every use below would be "no such table" if the failed table counted as undeclared
    errs = errors(
        "table t file:/nonexistent/t\n"
        "listen on lo tls auth <t>\n"
        "action a mbox alias <t>\n"
        "action r relay host smtp+tls://bob@smtp.example.com auth <t>\n"
        "match from src <t> for any action a\n"
        "match for domain <t> action r\n"
        "action b mbox alias <undeclared>\n"
    )
    assert errs == [
        "t.conf:1: invalid configuration file /nonexistent/t for table t: No such file or directory",
        "t.conf:7: no such table: undeclared",
    ]


def test_a_legacy_table_that_failed_to_load_is_reported_once() -> None:
    errs = errors(
        "table aliases db:/nonexistent/aliases.db\n"
        'table other-relays "/nonexistent/other-relays"\n'
        "accept for local alias <aliases> deliver to mbox\n"
        'reject from ! source <other-relays> sender "@example.com" for any\n'
        "accept for any relay via tls+auth://label@smtp.example.com auth <aliases>\n"
    )
    assert errs == [
        "t.conf:1: invalid configuration file /nonexistent/aliases.db for table aliases: No such file or directory",
        "t.conf:2: invalid configuration file /nonexistent/other-relays for table other-relays: No such file or directory",
    ]


def test_a_table_that_failed_to_load_is_still_declared(files: Path) -> None:
    errs = errors(f"table t file:/nonexistent/t\ntable t file:{files}/aliases\nmatch reject\n")
    assert errs[1:] == ['t.conf:2: table "t" already defined']


def test_table_error_names_the_table_once() -> None:
    msg = error('table t { "" }\nmatch for any reject\n')
    assert msg.count("table t") == 1


# -- load_config, macros, hostname ---------------------------------------------------------------------


def test_load_config(tmp_path: Path) -> None:
    path = tmp_path / "smtpd.conf"
    path.write_text('d = "example.com"\nunused = "x"\nmatch for domain $d reject\n')
    result = load_config(
        str(path), hostname=HOST, check_interfaces=False, macros={"d": "cli.example"}
    )
    crit = result.config.rules[0].get("for")
    assert crit is not None
    assert crit.table == model.InlineTable((("cli.example", None),))
    assert result.grammar == "modern"
    assert result.warnings == (f"{path}: warning: macro 'unused' not used",)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_config(str(tmp_path / "nope.conf"), hostname=HOST)
    assert (
        str(info.value)
        == f"{tmp_path}/nope.conf: cannot read configuration: No such file or directory"
    )


def test_errors_from_included_files_name_them(tmp_path: Path) -> None:
    inc = tmp_path / "inc.conf"
    inc.write_text("\naction a mbox alias <nope>\n")
    errs = errors(f'include "{inc}"\nmatch for any action a\n')
    assert errs == [f"{inc}:2: no such table: nope"]


def test_legacy_builds_the_same_model() -> None:
    legacy = load("accept from any for domain example.com deliver to mbox\n")
    modern = load(
        'action "legacy-mbox" mbox\nmatch from any for domain example.com action "legacy-mbox"\n'
    )
    assert legacy.grammar == "legacy"
    assert legacy.config == modern.config


_NEVER_RUNS = (
    "builtin filter b on a relay action would never run: relay sessions have no "
    "filter phases, only smtp-out reports to proc filters"
)


@pytest.mark.parametrize(
    "ref",
    ['filter "b"', 'filter { "b" }', 'filter { "p", "b" }', 'filter "c"'],
    ids=["named", "anonymous-chain", "in-a-chain", "named-chain"],
)
def test_a_builtin_filter_on_a_relay_action_is_refused(ref: str) -> None:
    """OpenSMTPD accepts it and never runs it (smtp-out has no filter phases)."""
    text = (
        'filter "b" phase connect match rdns bypass\n'
        'filter "p" proc-exec "/bin/true"\n'
        'filter "c" chain { "p", "b" }\n'
        f'action "r" relay {ref}\n'
        'match for any action "r"\n'
    )
    assert errors(text) == [f"t.conf:4: {_NEVER_RUNS}"]


def test_proc_filters_on_relay_actions_are_kept() -> None:
    config = cfg(
        'filter "p" proc-exec "/bin/true"\n'
        'filter "q" proc-exec "/bin/true"\n'
        'filter "c" chain { "p", "q" }\n'
        'action "r1" relay filter "c"\n'
        'action "r2" relay filter { "q" }\n'
        'match for domain "a.test" action "r1"\n'
        'match for any action "r2"\n'
    )
    r1, r2 = config.actions["r1"].method, config.actions["r2"].method
    assert isinstance(r1, model.Relay) and isinstance(r2, model.Relay)
    assert r1.filter == model.FilterRef(("c",), chain=False)
    assert r2.filter == model.FilterRef(("q",), chain=True)
