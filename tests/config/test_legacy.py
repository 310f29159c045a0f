"""The legacy (OpenSMTPD 5.x / 6.0) grammar and its translation into modern statements.

Each test parses text with :func:`mta.config.parser.parse_text` and checks the emitted
statements: the ``accept``/``reject`` rules become ``MatchStmt`` rules with the same
criteria the modern parser builds, each ``accept`` delivery a generated ``ActionStmt``,
and the legacy globals ``SetStmt`` with the modern keys.  The builder is not involved.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import ast, model
from mta.config.parser import Document, parse_text
from mta.errors import ConfigError
from mta.tables.relayhost import parse_relay_url

EXAMPLES = Path(__file__).parents[2] / "conf" / "examples"

FROM_LOCAL = model.Criterion("from", "local")
FOR_LOCAL = model.Criterion("for", "local")
FOR_ANY = model.Criterion("for", "any")
FROM_ANY = model.Criterion("from", "any")


def _no_include(path: str) -> str:
    raise FileNotFoundError(2, "No such file or directory", path)


def _doc(text: str) -> Document:
    return parse_text(text, "test.conf", _no_include)


def parse(text: str) -> tuple[ast.Statement, ...]:
    doc = _doc(text)
    assert doc.errors == (), [str(e) for e in doc.errors]
    assert doc.grammar == "legacy"
    return doc.statements


def error(text: str) -> ConfigError:
    """The single error a text produces."""
    doc = _doc(text)
    assert len(doc.errors) == 1, [str(e) for e in doc.errors]
    return doc.errors[0]


def actions(text: str) -> list[model.Action]:
    return [s.action for s in parse(text) if isinstance(s, ast.ActionStmt)]


def rules(text: str) -> list[model.Rule]:
    return [s.rule for s in parse(text) if isinstance(s, ast.MatchStmt)]


def one_rule(text: str) -> tuple[model.Action | None, model.Rule]:
    """The statements of a one-rule text: its action (if any) and its rule."""
    stmts = [s for s in parse(text) if isinstance(s, ast.ActionStmt | ast.MatchStmt)]
    if len(stmts) == 1:
        assert isinstance(stmts[0], ast.MatchStmt)
        return None, stmts[0].rule
    assert len(stmts) == 2
    act, match = stmts
    assert isinstance(act, ast.ActionStmt)
    assert isinstance(match, ast.MatchStmt)
    assert match.rule.action == act.action.name
    return act.action, match.rule


def method(text: str) -> model.LocalDelivery | model.Relay:
    act, _ = one_rule(text)
    assert act is not None
    return act.method


def relay(text: str) -> model.Relay:
    m = method(text)
    assert isinstance(m, model.Relay)
    return m


def sets(text: str) -> list[tuple[tuple[str, ...], object]]:
    return [(s.key, s.value) for s in parse(text) if isinstance(s, ast.SetStmt)]


def inline(*values: str) -> model.InlineTable:
    return model.InlineTable(tuple((v, None) for v in values))


# -- accept: deliveries -------------------------------------------------------------


def test_deliver_to_mbox_defaults_from_and_for_local() -> None:
    stmts = parse("accept deliver to mbox\n")
    assert stmts == (
        ast.ActionStmt(
            model.Action("legacy-mbox", model.LocalDelivery("mbox"), None),
            ast.Where("test.conf", 1),
        ),
        ast.MatchStmt(
            model.Rule((FROM_LOCAL, FOR_LOCAL), "legacy-mbox", 1, "test.conf"),
            ast.Where("test.conf", 1),
        ),
    )
    assert [s.where.line for s in stmts] == [1, 1]


def test_deliver_to_maildir_default_and_path() -> None:
    assert method("accept deliver to maildir\n") == model.LocalDelivery("maildir")
    assert method('accept deliver to maildir "~/Mail/%{rcpt.user}"\n') == (
        model.LocalDelivery("maildir", path="~/Mail/%{rcpt.user}")
    )
    # a keyword after "maildir" is not a path
    act, _ = one_rule("accept deliver to maildir expire 2d\n")
    assert act == model.Action("legacy-maildir", model.LocalDelivery("maildir"), 2 * 86400)


def test_deliver_to_lmtp() -> None:
    assert method('accept deliver to lmtp "127.0.0.1:24"\n') == (
        model.LocalDelivery("lmtp", path="127.0.0.1:24")
    )
    assert method('accept deliver to lmtp "/var/run/dovecot/lmtp" rcpt-to as vmail\n') == (
        model.LocalDelivery("lmtp", path="/var/run/dovecot/lmtp", rcpt_to=True, user="vmail")
    )
    assert method('accept deliver to lmtp "localhost:24" as vmail\n') == (
        model.LocalDelivery("lmtp", path="localhost:24", user="vmail")
    )


def test_deliver_to_lmtp_needs_host_port_or_socket() -> None:
    err = error("\naccept deliver to lmtp localhost\n")
    assert err.message == "invalid lmtp destination: localhost"
    assert err.line == 2


def test_deliver_to_mda() -> None:
    assert method('accept deliver to mda "/usr/bin/procmail -f -"\n') == (
        model.LocalDelivery("mda", path="/usr/bin/procmail -f -")
    )
    assert method('accept deliver to mda "/bin/cat" as nobody\n') == (
        model.LocalDelivery("mda", path="/bin/cat", user="nobody")
    )


def test_deliver_needs_a_method() -> None:
    err = error("accept deliver to file\n")
    assert err.message.startswith('syntax error: expected "mbox", "maildir", "lmtp" or "mda"')
    assert err.line == 1


def test_no_delivery_is_expand_only() -> None:
    # 6.0.3 A_NONE: only aliases / ~/.forward may expand the recipient, else permfail
    act, rule = one_rule("accept for local alias <aliases>\n")
    assert act == model.Action(
        "legacy-expand-only",
        model.LocalDelivery("expand-only", alias=model.NamedTable("aliases")),
    )
    assert rule.criteria == (FROM_LOCAL, FOR_LOCAL)


def test_forward_only() -> None:
    act, rule = one_rule("accept for domain opensmtpd.org forward-only\n")
    assert act == model.Action("legacy-forward-only", model.LocalDelivery("forward-only"))
    assert rule.criteria == (FROM_LOCAL, model.Criterion("for", "domain", inline("opensmtpd.org")))


def test_forward_only_with_a_delivery_is_an_error() -> None:
    err = error("table a { x = y }\naccept for any relay \\\n  forward-only\n")
    assert err.message == "forward-only may not be used with a default action"
    assert err.line == 3
    err = error("accept deliver to mbox forward-only forward-only\n")
    assert err.message == "forward-only specified multiple times"


# -- accept: lookups ---------------------------------------------------------------


def test_alias_virtual_userbase_options() -> None:
    assert method("accept for local alias <aliases> deliver to mbox\n") == (
        model.LocalDelivery("mbox", alias=model.NamedTable("aliases"))
    )
    assert method("accept for any alias <aliases> deliver to maildir\n") == (
        model.LocalDelivery("maildir", alias=model.NamedTable("aliases"))
    )
    assert method("accept for local virtual <vmap> deliver to mbox\n") == (
        model.LocalDelivery("mbox", virtual=model.NamedTable("vmap"))
    )
    act, rule = one_rule(
        'accept from any for domain "*.example.com" virtual <users> userbase <ub> '
        "deliver to maildir\n"
    )
    assert act is not None
    assert act.method == model.LocalDelivery(
        "maildir", virtual=model.NamedTable("users"), userbase=model.NamedTable("ub")
    )
    assert rule.criteria == (FROM_ANY, model.Criterion("for", "domain", inline("*.example.com")))
    # lookups may come in either order, the inline forms are tables too
    assert method('accept userbase <ub> alias "/etc/aliases" deliver to mbox\n') == (
        model.LocalDelivery("mbox", alias=inline("/etc/aliases"), userbase=model.NamedTable("ub"))
    )


def test_mapping_twice_is_an_error() -> None:
    err = error("accept for local alias <a> virtual <v> deliver to mbox\n")
    assert err.message == "virtual specified multiple times"
    err = error("accept for local alias <a> alias <b> deliver to mbox\n")
    assert err.message == "alias specified multiple times"
    err = error("accept userbase <a> userbase <b> deliver to mbox\n")
    assert err.message == "userbase specified multiple times"


def test_relay_rules_refuse_userbase_and_mappings() -> None:
    err = error("\naccept for any userbase <u> relay\n")
    assert err.message == "userbase may not be used with a relay rule"
    assert err.line == 2
    err = error("accept for any alias <aliases> relay via smtp://mx.example.org\n")
    assert err.message == "aliases/virtual may not be used with a relay rule"
    err = error("accept for domain d virtual <v> relay\n")
    assert err.message == "aliases/virtual may not be used with a relay rule"


def test_decisions_after_lookups_are_a_syntax_error() -> None:
    # 6.0.3 reads decisions, then lookups, then the delivery
    err = error("accept alias <aliases> for local deliver to mbox\n")
    assert err.message.startswith("syntax error")
    assert err.line == 1


# -- accept: expire and action sharing -------------------------------------------------


def test_expire_per_rule_is_the_action_ttl() -> None:
    act, _ = one_rule("accept for any relay expire 4d\n")
    assert act == model.Action("legacy-relay", model.Relay(), 4 * 86400)
    err = error("accept deliver to mbox expire 4d expire 1h\n")
    assert err.message == "expire specified multiple times"
    err = error("accept deliver to mbox expire 4x\n")
    assert err.message == "invalid expire delay: 4x"


def test_identical_deliveries_share_one_action() -> None:
    stmts = parse(
        "accept for local deliver to mbox\n"
        "accept from any for domain example.org deliver to mbox\n"
        "accept for local deliver to mbox expire 1d\n"
        'accept for domain b.org deliver to maildir "/m/%{rcpt.user}"\n'
        "accept for domain c.org deliver to maildir\n"
        "accept for domain d.org deliver to maildir\n"
        'accept deliver to mda "/a"\n'
        'accept deliver to mda "/a" as bob\n'
        "accept for any relay\n"
        "accept for any relay tls\n"
        "accept for any relay expire 1d\n"
    )
    kinds = [
        (type(s).__name__, s.action.name if isinstance(s, ast.ActionStmt) else s.rule.action)
        for s in stmts
        if isinstance(s, ast.ActionStmt | ast.MatchStmt)
    ]
    assert kinds == [
        ("ActionStmt", "legacy-mbox"),
        ("MatchStmt", "legacy-mbox"),
        ("MatchStmt", "legacy-mbox"),
        ("ActionStmt", "legacy-mbox-2"),
        ("MatchStmt", "legacy-mbox-2"),
        ("ActionStmt", "legacy-maildir"),
        ("MatchStmt", "legacy-maildir"),
        ("ActionStmt", "legacy-maildir-2"),
        ("MatchStmt", "legacy-maildir-2"),
        ("MatchStmt", "legacy-maildir-2"),
        ("ActionStmt", "legacy-mda"),
        ("MatchStmt", "legacy-mda"),
        ("ActionStmt", "legacy-mda-2"),
        ("MatchStmt", "legacy-mda-2"),
        ("ActionStmt", "legacy-relay"),
        ("MatchStmt", "legacy-relay"),
        ("ActionStmt", "legacy-relay-2"),
        ("MatchStmt", "legacy-relay-2"),
        ("ActionStmt", "legacy-relay-3"),
        ("MatchStmt", "legacy-relay-3"),
    ]
    by_name = {s.action.name: s for s in stmts if isinstance(s, ast.ActionStmt)}
    assert by_name["legacy-mbox-2"].action.ttl == 86400
    assert by_name["legacy-mbox-2"].where.line == 3
    assert by_name["legacy-mda-2"].action.method == model.LocalDelivery(
        "mda", path="/a", user="bob"
    )


def test_action_names_are_per_parse() -> None:
    assert [a.name for a in actions("accept deliver to mbox\n")] == ["legacy-mbox"]
    assert [a.name for a in actions("accept deliver to mbox\n")] == ["legacy-mbox"]


# -- accept/reject: criteria -----------------------------------------------------------


def test_from_criteria() -> None:
    cases = {
        "from any": FROM_ANY,
        "from local": FROM_LOCAL,
        "from ! local": model.Criterion("from", "local", negated=True),
        "from ! any": model.Criterion("from", "any", negated=True),
        "from source <nets>": model.Criterion("from", "src", model.NamedTable("nets")),
        "from ! source { 192.168.0.0/16, 10.0.0.0/8 }": model.Criterion(
            "from", "src", inline("192.168.0.0/16", "10.0.0.0/8"), negated=True
        ),
        'from source "127.0.0.1"': model.Criterion("from", "src", inline("127.0.0.1")),
    }
    for text, crit in cases.items():
        _, rule = one_rule(f"reject {text}\n")
        assert rule.criteria == (crit, FOR_LOCAL), text
        assert rule.action is None


def test_for_criteria() -> None:
    cases = {
        "for any": FOR_ANY,
        "for local": FOR_LOCAL,
        "for ! local": model.Criterion("for", "local", negated=True),
        "for domain example.org": model.Criterion("for", "domain", inline("example.org")),
        "for ! domain <domains>": model.Criterion(
            "for", "domain", model.NamedTable("domains"), negated=True
        ),
    }
    for text, crit in cases.items():
        _, rule = one_rule(f"accept {text} deliver to mbox\n")
        assert rule.criteria == (FROM_LOCAL, crit), text


def test_sender_recipient_tagged_authenticated() -> None:
    _, rule = one_rule(
        "accept recipient ! <rcpts> authenticated tagged DKIM sender <sndrs> "
        "from any for any relay\n"
    )
    assert rule.criteria == (
        FROM_ANY,
        FOR_ANY,
        model.Criterion("tag", table=inline("DKIM")),
        model.Criterion("auth"),
        model.Criterion("mail-from", table=model.NamedTable("sndrs")),
        model.Criterion("rcpt-to", table=model.NamedTable("rcpts"), negated=True),
    )
    _, rule = one_rule('reject ! authenticated tagged ! SPAM sender ! "@example.com"\n')
    assert rule.criteria == (
        FROM_LOCAL,
        FOR_LOCAL,
        model.Criterion("tag", table=inline("SPAM"), negated=True),
        model.Criterion("auth", negated=True),
        model.Criterion("mail-from", table=inline("@example.com"), negated=True),
    )


def test_tag_length_is_checked() -> None:
    err = error(f"accept tagged {'t' * 32} deliver to mbox\n")
    assert err.message == f"tag name too long: {'t' * 32}"
    assert one_rule(f"accept tagged {'t' * 31} deliver to mbox\n")[1].get("tag") is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("reject from any from local", "from specified multiple times"),
        ("reject for any for local", "for specified multiple times"),
        ("reject sender <a> sender <b>", "sender specified multiple times"),
        ("reject recipient <a> recipient <b>", "recipient specified multiple times"),
    ],
)
def test_decision_twice_is_an_error(text: str, message: str) -> None:
    err = error(f"\n\n{text}\n")
    assert err.message == message
    assert err.line == 3


def test_reject_takes_only_decisions() -> None:
    err = error("reject for any deliver to mbox\n")
    assert err.message.startswith("syntax error")
    err = error("reject from banana\n")
    assert err.message.startswith('syntax error: expected "any", "local" or "source"')


def test_reject_rule() -> None:
    stmts = parse("reject from any for domain <bad>\n")
    assert stmts == (
        ast.MatchStmt(
            model.Rule(
                (FROM_ANY, model.Criterion("for", "domain", model.NamedTable("bad"))),
                None,
                1,
                "test.conf",
            ),
            ast.Where("test.conf", 1),
        ),
    )


# -- relay ---------------------------------------------------------------------------


def test_relay_plain_is_opportunistic() -> None:
    assert relay("accept for any relay\n") == model.Relay()


def test_relay_tls_and_tls_verify() -> None:
    # legacy "tls" requires STARTTLS without checking the certificate; "tls verify" checks
    assert relay("accept for any relay tls\n") == model.Relay(tls="no-verify")
    assert relay("accept for any relay tls verify\n") == model.Relay(tls="required")
    # 6.0.3 only ORs flags in: verify, once given, stays
    assert relay("accept for any relay tls verify tls\n") == model.Relay(tls="required")


def test_relay_backup() -> None:
    assert relay("accept for any relay backup\n") == model.Relay(backup=True)
    assert relay("accept for any relay backup mx1.example.org tls\n") == model.Relay(
        backup=True, backup_mx="mx1.example.org", tls="no-verify"
    )


def test_relay_common_options() -> None:
    r = relay(
        'accept for any relay as "@example.org" source <srcs> hostname mail.example.org '
        "pki Mail.Example.Org ca MyCA\n"
    )
    assert r == model.Relay(
        mail_from="@example.org",
        src=model.NamedTable("srcs"),
        helo="mail.example.org",
        pki="mail.example.org",
        ca="myca",
    )
    r = relay("accept for any relay source { 192.0.2.1 } hostnames <names>\n")
    assert r == model.Relay(src=inline("192.0.2.1"), helo_src=model.NamedTable("names"))


def test_relay_as_forms() -> None:
    assert relay("accept for any relay as bob\n").mail_from == "bob"
    assert relay('accept for any relay as "bob@"\n').mail_from == "bob"
    assert relay("accept for any relay as bob@example.org\n").mail_from == "bob@example.org"
    assert relay('accept for any relay as "a@b@c.org"\n').mail_from == "a@b@c.org"
    err = error('accept for any relay as "@"\n')
    assert err.message == "invalid empty parameter to AS"
    err = error('accept for any relay as ""\n')
    assert err.message == "invalid empty parameter to AS"
    long = "u" * 256
    err = error(f"accept for any relay as {long}@example.org\n")
    assert err.message == f"invalid parameter to AS: {long}@example.org"


def test_relay_options_are_not_relay_via_options() -> None:
    assert error("accept for any relay verify\n").message.startswith("syntax error")
    assert error("accept for any relay auth <s>\n").message.startswith("syntax error")


@pytest.mark.parametrize(
    ("url", "modern"),
    [
        ("smtp://mx1.example.org", "smtp+notls://mx1.example.org:25"),
        ("smtp://mx1.example.org:4321", "smtp+notls://mx1.example.org:4321"),
        ("mx1.example.org", "smtp://mx1.example.org:25"),
        ("smtp+tls://mx1.example.org", "smtp://mx1.example.org:25"),
        ("lmtp://localhost:2026", "lmtp://localhost:2026"),
        ("tls://mx1.example.org", "smtp+tls://mx1.example.org:25"),
        ("smtps://mx1.example.org", "smtps://mx1.example.org:465"),
        ("secure://mx1.example.org", "secure://mx1.example.org:465"),
        ("[192.0.2.1]:2525", "smtp://[192.0.2.1]:2525"),
        ("SMTP://mx1.example.org", "smtp+notls://mx1.example.org:25"),
    ],
)
def test_relay_via_urls(url: str, modern: str) -> None:
    r = relay(f'accept for any relay via "{url}"\n')
    assert r == model.Relay(host=inline(modern))
    # the modern spelling means exactly what the legacy one meant
    assert parse_relay_url(modern) == parse_relay_url(url, legacy=True)


@pytest.mark.parametrize(
    ("url", "modern"),
    [
        ("tls+auth://label@smtp.example.com", "smtp+tls://label@smtp.example.com:25"),
        ("smtps+auth://label@smtp.example.com", "smtps://label@smtp.example.com:465"),
        ("secure+auth://label@smtp.example.com", "secure://label@smtp.example.com:465"),
    ],
)
def test_relay_via_auth(url: str, modern: str) -> None:
    r = relay(f"accept for any relay via {url} auth <secrets>\n")
    assert r == model.Relay(host=inline(modern), auth=model.NamedTable("secrets"))
    assert parse_relay_url(modern) == parse_relay_url(url, legacy=True)


def test_relay_via_auth_needs_an_auth_table() -> None:
    err = error("\naccept for any relay via tls+auth://label@smtp.example.com\n")
    assert err.message == "auth without auth table"
    assert err.line == 2


def test_relay_via_verify() -> None:
    for url, modern in [
        ("tls://mx.example.org", "smtp+tls://mx.example.org:25"),
        ("smtps://mx.example.org", "smtps://mx.example.org:465"),
        ("secure://mx.example.org", "secure://mx.example.org:465"),
    ]:
        r = relay(f"accept for any relay via {url} verify\n")
        assert r == model.Relay(host=inline(modern), tls="required"), url
    for url in ("smtp://mx.example.org", "mx.example.org", "lmtp://h:24", "backup://mx"):
        err = error(f"accept for any relay via {url} verify\n")
        assert err.message == 'cannot "verify" with insecure protocol', url


def test_relay_via_common_options() -> None:
    r = relay(
        "accept for any relay via smtps+auth://me@smtp.example.com auth <s> "
        'as "me@example.com" source <src> hostname out.example.com pki out.example.com '
        "verify\n"
    )
    assert r == model.Relay(
        host=inline("smtps://me@smtp.example.com:465"),
        auth=model.NamedTable("s"),
        mail_from="me@example.com",
        src=model.NamedTable("src"),
        helo="out.example.com",
        pki="out.example.com",
        tls="required",
    )


def test_relay_via_backup_urls() -> None:
    assert relay("accept for any relay via backup://mx2.example.org\n") == model.Relay(
        backup=True, backup_mx="mx2.example.org"
    )
    assert relay("accept for any relay via tls+backup://mx2.example.org\n") == model.Relay(
        backup=True, backup_mx="mx2.example.org", tls="no-verify"
    )
    assert relay("accept for any relay via tls+backup://mx2.example.org verify\n") == (
        model.Relay(backup=True, backup_mx="mx2.example.org", tls="required")
    )
    err = error("accept for any relay via backup://mx2.example.org:2525\n")
    assert err.message.startswith("a port cannot be given with a backup relay URL")


@pytest.mark.parametrize(
    "url",
    [
        "foo://mx.example.org",
        "lmtp://localhost",
        "smtp://label@mx.example.org",
        "tls://label@mx.example.org",
        "smtp://mx.example.org:0",
        "smtp://mx.example.org:99999",
        "smtp://-bad-.example.org",
    ],
)
def test_relay_via_invalid_urls(url: str) -> None:
    err = error(f"\naccept for any relay via {url}\n")
    assert err.message.startswith("invalid relay URL")
    assert err.line == 2


def test_relay_via_must_come_first() -> None:
    err = error("accept for any relay tls via smtp://x.org\n")
    assert err.message.startswith("syntax error")


# -- global options ---------------------------------------------------------------------


def test_global_expire() -> None:
    assert sets("expire 4d\n") == [(("queue", "ttl"), 4 * 86400)]
    assert sets("expire 10h\n") == [(("queue", "ttl"), 10 * 3600)]
    err = error("\nexpire 4\n")
    assert err.line == 2
    assert err.message.startswith("syntax error")
    assert error("expire 0d\n").message == "invalid expire delay: 0d"
    assert error("expire 4w\n").message == "invalid expire delay: 4w"


def test_max_message_size() -> None:
    assert sets("max-message-size 35M\n") == [(("smtp", "max_message_size"), 35 << 20)]
    assert sets("max-message-size 1024\n") == [(("smtp", "max_message_size"), 1024)]
    assert error("max-message-size 12Q\n").message == "invalid size: 12Q"


def test_max_mta_deferred() -> None:
    assert sets("max-mta-deferred 50\n") == [(("mta", "max_deferred"), 50)]
    assert error("max-mta-deferred lots\n").message.startswith("syntax error")


def test_bounce_warn() -> None:
    assert sets("bounce-warn 1h, 6h, 2d\n") == [(("bounce_warn",), (3600, 6 * 3600, 2 * 86400))]
    # at most four delays are kept; an empty list turns the warnings off
    assert sets("bounce-warn 1h, 2h, 3h, 4h, 5h\n") == [
        (("bounce_warn",), (3600, 7200, 3 * 3600, 4 * 3600))
    ]
    assert sets("bounce-warn\n") == [(("bounce_warn",), ())]
    assert error("bounce-warn 1h, 6x\n").message == "invalid bounce delay: 6x"


def test_subaddressing_delimiter() -> None:
    assert sets('subaddressing-delimiter "-"\n') == [(("smtp", "sub_addr_delim"), "-")]
    assert sets("subaddressing-delimiter _\n") == [(("smtp", "sub_addr_delim"), "_")]
    err = error('subaddressing-delimiter "--"\n')
    assert err.message == "subaddressing-delimiter must be one character"
    err = error('subaddressing-delimiter "@"\n')
    assert err.message == "subaddressing-delimiter uses invalid character"


def test_ciphers() -> None:
    assert sets('ciphers "HIGH:!aNULL"\n') == [(("smtp", "ciphers"), "HIGH:!aNULL")]


def test_limit_session() -> None:
    assert sets("limit session max-rcpt 50 max-mails 10\n") == [
        (("smtp", "max_rcpt"), 50),
        (("smtp", "max_mails"), 10),
    ]
    assert error("limit session max-foo 1\n").message == "invalid session limit keyword: max-foo"


def test_limit_mda_and_scheduler() -> None:
    assert sets("limit mda max-session 10 max-session-per-user 2\n") == [
        (("mda", "max_session"), 10),
        (("mda", "max_session_per_user"), 2),
    ]
    assert sets("limit scheduler max-inflight 100\n") == [(("scheduler", "max_inflight"), 100)]
    # 6.0.3 words both errors as a scheduler limit
    assert error("limit mda foo 1\n").message == "invalid scheduler limit keyword: foo"
    assert error("limit scheduler foo 1\n").message == "invalid scheduler limit keyword: foo"


def test_limit_mta() -> None:
    assert sets("limit mta inet4\n") == [(("mta", "limit", ""), model.MtaLimits((), "inet4"))]
    assert sets("limit mta for domain example.org inet6 max-conn-per-host 2\n") == [
        (
            ("mta", "limit", "example.org"),
            model.MtaLimits((("max-conn-per-host", 2),), "inet6"),
        )
    ]
    assert error("limit mta foo 2\n").message == "invalid mta limit keyword: foo"


def test_limit_needs_a_subsystem() -> None:
    err = error("limit smtp max-rcpt 1\n")
    assert err.message.startswith('syntax error: expected "session", "mda", "mta" or')


# -- grammar --------------------------------------------------------------------------


def test_mixing_accept_and_match_is_an_error() -> None:
    doc = _doc(
        "listen on lo0\n"
        "accept for local deliver to mbox\n"
        'action "local" mbox\n'
        'match for local action "local"\n'
    )
    assert doc.errors
    err = doc.errors[0]
    assert err.line == 3
    assert "test.conf:2" in err.message
    assert '"action"' in err.message
    doc = _doc('action "local" mbox\nmatch for local action "local"\n\naccept deliver to mbox\n')
    assert doc.errors
    err = doc.errors[0]
    assert err.line == 4
    assert '"accept"' in err.message and "test.conf:1" in err.message


def test_errors_do_not_stop_the_parse() -> None:
    doc = _doc("accept for any relay via foo://x\naccept deliver to mbox\nexpire 3x\n")
    assert [e.line for e in doc.errors] == [1, 3]
    assert [s.action.name for s in doc.statements if isinstance(s, ast.ActionStmt)] == [
        "legacy-mbox"
    ]


def test_legacy_keywords_must_be_quoted_as_values() -> None:
    err = error("accept tagged relay deliver to mbox\n")
    assert "quote it" in err.message
    _, rule = one_rule('accept tagged "relay" deliver to mbox\n')
    assert rule.get("tag") == model.Criterion("tag", table=inline("relay"))


def test_continued_lines_keep_the_rule_line() -> None:
    stmts = parse("\naccept from any \\\n\tfor domain example.com \\\n\tdeliver to mbox\n")
    assert [s.where.line for s in stmts] == [2, 2]


# -- the manual's examples -------------------------------------------------------------------


def test_every_manual_example_is_present() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("00[01]-*.conf"))
    assert [n[:5] for n in names] == [
        "000-1", "000-2", "000-3", "000-4", "001-1", "001-2", "001-3", "001-4",
    ]  # fmt: skip


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("00[01]-*.conf")), ids=lambda p: p.name)
def test_manual_examples_parse(path: Path) -> None:
    doc = parse_text(path.read_text(), str(path), _no_include)
    assert doc.errors == (), [str(e) for e in doc.errors]
    assert doc.grammar == "legacy"
    assert any(isinstance(s, ast.MatchStmt) for s in doc.statements)


def test_smarthost_example() -> None:
    text = (EXAMPLES / "001-1-smarthost.conf").read_text()
    assert actions(text) == [
        model.Action("legacy-mbox", model.LocalDelivery("mbox", alias=model.NamedTable("aliases"))),
        model.Action(
            "legacy-relay",
            model.Relay(
                host=inline("smtp+tls://label@smtp.example.com:25"),
                auth=model.NamedTable("secrets"),
            ),
        ),
    ]
    assert [r.criteria for r in rules(text)] == [(FROM_LOCAL, FOR_LOCAL), (FROM_LOCAL, FOR_ANY)]


def test_reject_forged_example() -> None:
    text = (EXAMPLES / "000-4-reject-forged.conf").read_text()
    assert [(r.criteria, r.action) for r in rules(text)] == [
        ((FROM_LOCAL, FOR_LOCAL), "legacy-mbox"),
        ((FROM_LOCAL, FOR_ANY), "legacy-relay"),
        (
            (
                model.Criterion("from", "src", model.NamedTable("other-relays"), negated=True),
                FOR_ANY,
                model.Criterion("mail-from", table=inline("@example.com")),
            ),
            None,
        ),
        ((FROM_ANY, model.Criterion("for", "domain", inline("example.com"))), "legacy-mbox"),
    ]


def test_dkimproxy_example() -> None:
    text = (EXAMPLES / "000-3-dkimproxy.conf").read_text()
    assert [a.method for a in actions(text)] == [
        model.LocalDelivery("mbox", alias=model.NamedTable("aliases")),
        model.Relay(),
        model.Relay(host=inline("smtp+notls://127.0.0.1:10027")),
    ]
    assert rules(text)[1].criteria == (
        FROM_LOCAL,
        FOR_ANY,
        model.Criterion("tag", table=inline("DKIM")),
    )
