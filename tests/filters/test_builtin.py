"""Tests for mta.filters.builtin: phases, which condition exists at which phase,
every condition at every phase where it is valid (plain, table, regex, negated),
the decisions and the validation of their replies, and failed lookups."""

from __future__ import annotations

import itertools

import attrs
import pytest

from mta.config.model import FilterCondition
from mta.errors import ConfigErrors
from mta.filters.builtin import (
    BUILTIN_PHASES,
    CONDITIONS,
    Decision,
    DecisionKind,
    FilterMisbehaved,
    Lookup,
    SessionFacts,
    builtin_decision,
    condition_tests,
    filter_reply,
    has_rdns,
    phase_param,
)
from mta.filters.chain import BuiltinEntry
from mta.filters.protocol import FilterPhase
from mta.reply import Reply
from mta.tables import Service
from tests.filters.helpers import FACTS, chain_of, load, open_tables, run_builtins, with_fact

# parse.y filter_phase_*_options, written out
GLOBAL = {"fcrdns", "rdns", "src"}
EXPECTED_CONDITIONS = {
    "connect": GLOBAL,
    "helo": GLOBAL | {"helo"},
    "ehlo": GLOBAL | {"helo"},
    "auth": GLOBAL | {"helo", "auth"},
    "mail-from": GLOBAL | {"helo", "auth", "mail-from"},
    "rcpt-to": GLOBAL | {"helo", "auth", "mail-from", "rcpt-to"},
    "data": GLOBAL | {"helo", "auth", "mail-from"},
    "commit": GLOBAL | {"helo", "auth", "mail-from"},
}

DECLS = (
    'table rdnsnames { "*.example.com" }\n'
    'table srcnets { "203.0.113.0/24", "2001:db8::/32" }\n'
    'table helonames { "mx*.example.com", "*.example.net" }\n'
    "table authusers { alice, bob }\n"
    'table senderaddrs { "alice@example.com", "@example.net" }\n'
    'table rcptaddrs { "rcpt@example.com" }\n'
    'table patterns { "^alice@", "^nobody$" }\n'
)

# condition text, the fact it tests, a value that matches, a value that does not
SPECS: list[tuple[str, str, object, object]] = [
    ("fcrdns", "fcrdns", True, False),
    ("rdns", "rdns", "client.example.com", None),
    ("rdns", "rdns", "client.example.com", "192.0.2.1"),
    ('rdns "*.example.com"', "rdns", "client.example.com", "client.example.org"),
    ("rdns <rdnsnames>", "rdns", "a.example.com", None),
    ('rdns regex "\\.example\\.com$"', "rdns", "client.example.com", "example.com.evil"),
    ("src { 203.0.113.0/24 }", "src", "203.0.113.5", "198.51.100.7"),
    ("src <srcnets>", "src", "2001:db8::25", "2001:db9::25"),
    ("src <srcnets>", "src", "203.0.113.200", "local"),
    ('src regex "^203\\.0\\.113\\."', "src", "203.0.113.5", "198.51.100.7"),
    ("helo <helonames>", "helo", "mx1.example.com", "client.example.org"),
    ('helo "*.example.net"', "helo", "a.example.net", "a.b.example.net"),
    ('helo regex "^mx[0-9]+\\."', "helo", "MX2.example.com", "client.example.com"),
    ("auth", "auth_user", "alice", None),
    ("auth <authusers>", "auth_user", "Bob", "carol"),
    ("auth <authusers>", "auth_user", "alice", None),
    ('auth regex "^al"', "auth_user", "alice", "carol"),
    ("mail-from <senderaddrs>", "mail_from", "alice+tag@example.com", "bob@example.com"),
    ("mail-from <senderaddrs>", "mail_from", "anyone@example.net", ""),
    ("mail-from regex <patterns>", "mail_from", "alice@example.org", "bob@example.org"),
    ('mail-from regex "^$"', "mail_from", "", "bob@example.org"),
    ("rcpt-to <rcptaddrs>", "rcpt_to", "RCPT@example.com", "other@example.com"),
    ('rcpt-to regex "@example\\.net$"', "rcpt_to", "x@example.net", "x@example.com"),
]


def _cases() -> list[tuple[str, str, str, object, object, bool]]:
    cases = []
    for phase, (cond, field, good, bad), negated in itertools.product(
        EXPECTED_CONDITIONS, SPECS, (False, True)
    ):
        if cond.split()[0] in EXPECTED_CONDITIONS[phase]:
            cases.append((phase, cond, field, good, bad, negated))
    return cases


CASES = _cases()


def test_phases_are_named_as_the_filter_protocol_names_them() -> None:
    assert [p.value for p in FilterPhase] == [
        "connect", "helo", "ehlo", "starttls", "auth", "mail-from", "rcpt-to", "data",
        "data-line", "rset", "quit", "noop", "help", "wiz", "commit",
    ]  # fmt: skip
    assert {p.value for p in BUILTIN_PHASES} == set(EXPECTED_CONDITIONS)


def test_conditions_per_phase_are_opensmtpd_s() -> None:
    assert {p.value: {c.value for c in conds} for p, conds in CONDITIONS.items()} == (
        EXPECTED_CONDITIONS
    )


@pytest.mark.parametrize("phase", sorted(EXPECTED_CONDITIONS))
@pytest.mark.parametrize("cond", [c.value for c in FilterCondition])
def test_parser_accepts_a_condition_only_where_its_data_exists(phase: str, cond: str) -> None:
    words = {"fcrdns": "fcrdns", "rdns": "rdns", "auth": "auth"}.get(cond, f'{cond} "x"')
    text = f'filter f phase {phase} match {words} reject "550 no"\n'
    if cond in EXPECTED_CONDITIONS[phase]:
        assert load(text).filters["f"].condition is FilterCondition(cond)  # type: ignore[union-attr]
    else:
        with pytest.raises(ConfigErrors, match="condition allowed in phase"):
            load(text)


@pytest.mark.parametrize("decision", ["junk", "bypass"])
def test_commit_takes_no_junk_or_bypass(decision: str) -> None:
    with pytest.raises(ConfigErrors, match="expected a decision"):
        load(f"filter f phase commit match rdns {decision}\n")
    load(f"filter f phase data match rdns {decision}\n")


@pytest.mark.parametrize(("phase", "cond", "field", "good", "bad", "negated"), CASES)
def test_condition_at_phase(
    phase: str, cond: str, field: str, good: object, bad: object, negated: bool
) -> None:
    bang = "!" if negated else ""
    config = load(DECLS + f'filter f phase {phase} match {bang}{cond} reject "550 no"\n')
    tables = open_tables(config)
    chain = chain_of(config, tables, "f")
    try:
        for value, matches in ((good, True), (bad, False)):
            facts = with_fact(FACTS, field, value)
            done = run_builtins(chain, FilterPhase(phase), facts)
            expected = DecisionKind.REJECT if matches != negated else DecisionKind.PROCEED
            assert done.decision.kind is expected, (value, done)
            assert done.lookup_errors == ()
    finally:
        tables.close()


def test_every_condition_and_phase_is_covered() -> None:
    seen = {(phase, cond.split()[0]) for phase, cond, *_ in CASES}
    assert seen == {(p, c) for p, conds in EXPECTED_CONDITIONS.items() for c in conds}
    assert {cond for _, cond, *_ in CASES if "regex" in cond} >= {
        'rdns regex "\\.example\\.com$"',
        'src regex "^203\\.0\\.113\\."',
        'helo regex "^mx[0-9]+\\."',
        'auth regex "^al"',
        "mail-from regex <patterns>",
        'rcpt-to regex "@example\\.net$"',
    }


def _tests_of(text: str, facts: SessionFacts) -> tuple[object, ...]:
    config = load(DECLS + text)
    tables = open_tables(config)
    entry = chain_of(config, tables, "f").entries[0]
    assert isinstance(entry, BuiltinEntry)
    return condition_tests(entry.filter, entry.table, facts)


def test_auth_table_asks_string_then_credentials() -> None:
    # filter_builtins_global: filter_check_auth_table with K_STRING, then K_CREDENTIALS
    facts = attrs.evolve(FACTS, auth_user="alice")
    tests = _tests_of('filter f phase data match auth <authusers> reject "550 no"\n', facts)
    assert [(t.service, t.key) for t in tests if isinstance(t, Lookup)] == [
        (Service.STRING, "alice"),
        (Service.CREDENTIALS, "alice"),
    ]
    regex = _tests_of('filter f phase data match auth regex "^a" reject "550 no"\n', facts)
    assert [t.service for t in regex if isinstance(t, Lookup)] == [Service.REGEX]


def test_conditions_without_their_data_look_nothing_up() -> None:
    none = attrs.evolve(FACTS, rdns=None, helo=None, mail_from=None, rcpt_to=None)
    for text in (
        'filter f phase connect match rdns { "*" } reject "550 no"\n',
        'filter f phase data match helo { "*" } reject "550 no"\n',
        'filter f phase data match mail-from { "@" } reject "550 no"\n',
        'filter f phase data match auth <authusers> reject "550 no"\n',
    ):
        assert _tests_of(text, none) == (False,)


def test_rdns_without_a_name_never_matches_a_table() -> None:
    # OpenSMTPD would look "<unknown>" up, which "*" matches; no name matches nothing here
    config = load('filter f phase connect match rdns { "*" } reject "550 no"\n')
    config2 = load('filter f phase connect match !rdns regex ".*" reject "550 no"\n')
    for cfg, expected in ((config, DecisionKind.PROCEED), (config2, DecisionKind.REJECT)):
        tables = open_tables(cfg)
        done = run_builtins(
            chain_of(cfg, tables, "f"), FilterPhase.CONNECT, attrs.evolve(FACTS, rdns=None)
        )
        assert done.decision.kind is expected


@pytest.mark.parametrize("negated", [False, True])
def test_a_failed_lookup_is_no_match(negated: bool) -> None:
    # lka_filter.c: table_match(...) > 0, so an error (-1) is no match, negation applies
    bang = "!" if negated else ""
    config = load(DECLS + f'filter f phase helo match {bang}helo <helonames> reject "550 no"\n')
    tables = open_tables(config)
    facts = attrs.evolve(FACTS, helo="x" * 1100)  # longer than any lookup key
    done = run_builtins(chain_of(config, tables, "f"), FilterPhase.HELO, facts)
    assert done.decision.kind is (DecisionKind.REJECT if negated else DecisionKind.PROCEED)
    assert len(done.lookup_errors) == 1
    assert "filter f: domain lookup failed" in done.lookup_errors[0]
    assert "too long" in done.lookup_errors[0]


def test_the_helo_and_mail_from_phases_test_the_submitted_value() -> None:
    config = load(
        DECLS
        + 'filter h phase ehlo match helo <helonames> reject "550 helo"\n'
        + 'filter m phase mail-from match mail-from <senderaddrs> reject "550 sender"\n'
        + 'filter r phase rcpt-to match rcpt-to <rcptaddrs> reject "550 rcpt"\n'
    )
    tables = open_tables(config)
    earlier = attrs.evolve(FACTS, helo="client.example.org", mail_from="x@y.org", rcpt_to="a@b")
    for name, phase, field, value in (
        ("h", FilterPhase.EHLO, "helo", "mx9.example.com"),
        ("m", FilterPhase.MAIL_FROM, "mail_from", "alice@example.com"),
        ("r", FilterPhase.RCPT_TO, "rcpt_to", "rcpt@example.com"),
    ):
        # the session's facts hold the previous value; the parameter is the new one
        done = run_builtins(chain_of(config, tables, name), phase, with_fact(earlier, field, value))
        assert done.decision.kind is DecisionKind.REJECT, name


def test_has_rdns() -> None:
    assert has_rdns("mail.example.com")
    assert not has_rdns(None)
    assert not has_rdns("<unknown>")
    assert not has_rdns("192.0.2.1")
    assert not has_rdns("[2001:db8::1]")


def test_phase_param_is_what_lka_passes() -> None:
    assert (
        phase_param(FilterPhase.MAIL_FROM, "<a@b.example> SIZE=100 BODY=8BITMIME") == "a@b.example"
    )
    assert phase_param(FilterPhase.MAIL_FROM, "<>") == ""
    assert phase_param(FilterPhase.RCPT_TO, "<Rcpt@Example.com> NOTIFY=NEVER") == "Rcpt@Example.com"
    assert phase_param(FilterPhase.HELO, "client.example.com") == "client.example.com"
    assert (
        phase_param(FilterPhase.AUTH, "PLAIN AGFsaWNlAHNlY3JldA==") == "PLAIN AGFsaWNlAHNlY3JldA=="
    )
    assert phase_param(FilterPhase.DATA, None) == ""
    assert phase_param(FilterPhase.COMMIT, None) == ""


def test_facts_at_a_phase() -> None:
    facts = SessionFacts(
        src="192.0.2.1",
        rdns="client.example",
        fcrdns=True,
        helo="old.example",
        auth_user="ann",
        mail_from="a@b",
        rcpt_to="c@d",
    )
    renamed = attrs.evolve(facts, helo="new.example")
    assert facts.at(FilterPhase.HELO, "new.example") == renamed
    assert facts.at(FilterPhase.EHLO, "new.example") == renamed
    assert facts.at(FilterPhase.MAIL_FROM, "x@y") == attrs.evolve(
        facts, mail_from="x@y", rcpt_to=None
    )
    assert facts.at(FilterPhase.RCPT_TO, "e@f") == attrs.evolve(facts, rcpt_to="e@f")
    for phase in (
        FilterPhase.CONNECT,
        FilterPhase.AUTH,
        FilterPhase.DATA,
        FilterPhase.COMMIT,
        FilterPhase.QUIT,
    ):
        assert facts.at(phase, "whatever") == facts


@pytest.mark.parametrize(
    ("text", "code", "enhanced", "line", "disconnect"),
    [
        ("550 go away", 550, "5.0.0", "go away", False),
        ("550 5.7.1 go away", 550, "5.7.1", "go away", False),
        ("451 4.7.1 try later", 451, "4.7.1", "try later", False),
        ("550 4.7.1 wrong class", 550, "5.0.0", "4.7.1 wrong class", False),
        ("421 closing", 421, "4.0.0", "closing", True),
        ("421 4.7.0 closing", 421, "4.7.0", "closing", True),
        ("go away", 421, "4.0.0", "Internal server error", True),
        ("250 fine", 421, "4.0.0", "Internal server error", True),
        ("350 x", 421, "4.0.0", "Internal server error", True),
        ("650 x", 421, "4.0.0", "Internal server error", True),
        ("550", 421, "4.0.0", "Internal server error", True),
        ("550 ", 421, "4.0.0", "Internal server error", True),
        ("550-multi line", 421, "4.0.0", "Internal server error", True),
        ("5500 x", 421, "4.0.0", "Internal server error", True),
        ("55a x", 421, "4.0.0", "Internal server error", True),
        ("", 421, "4.0.0", "Internal server error", True),
    ],
)
def test_filter_reply(text: str, code: int, enhanced: str, line: str, disconnect: bool) -> None:
    reply, closes = filter_reply(text)
    assert reply == Reply(code, enhanced, (line,), close=disconnect)
    assert closes is disconnect


def test_decisions_from_words() -> None:
    assert Decision.of("proceed") == Decision.proceed() == Decision(DecisionKind.PROCEED)
    assert Decision.of("junk") == Decision.junk()
    assert Decision.of("bypass") == Decision.bypass()
    assert Decision.of("rewrite", "<x@y>") == Decision(DecisionKind.REWRITE, "<x@y>")
    assert Decision.of("report", "hello") == Decision(DecisionKind.REPORT, "hello")
    reject = Decision.of("reject", "550 5.7.1 go away")
    assert reject.kind is DecisionKind.REJECT
    assert reject.value == "550 5.7.1 go away"
    assert reject.reply is not None and reject.reply.encode() == b"550 5.7.1 go away\r\n"
    assert Decision.reject("451 later").reply == Reply.of(451, "4.0.0", "later")
    # 421 and invalid texts disconnect, whichever word was used
    assert Decision.reject("421 bye").kind is DecisionKind.DISCONNECT
    bad = Decision.reject("go away")
    assert bad.kind is DecisionKind.DISCONNECT and bad.value == "421 Internal server error"
    assert bad.reply is not None and bad.reply.close
    gone = Decision.disconnect("550 go away")
    assert gone.kind is DecisionKind.DISCONNECT
    assert gone.reply == Reply(550, "5.0.0", ("go away",), close=False)
    assert [d.ends_chain for d in (Decision.proceed(), Decision.report("r"))] == [False, False]
    assert all(d.ends_chain for d in (Decision.junk(), Decision.bypass(), reject, gone))


@pytest.mark.parametrize(
    ("word", "text"),
    [("maybe", None), ("reject", None), ("disconnect", None), ("rewrite", None),
     ("report", None), ("junk", "x"), ("proceed", "x"), ("bypass", "x")],
)  # fmt: skip
def test_bad_decisions(word: str, text: str | None) -> None:
    with pytest.raises(FilterMisbehaved, match=word):
        Decision.of(word, text)


def test_decision_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="reply"):
        Decision(DecisionKind.REJECT, "550 x")
    with pytest.raises(ValueError, match="reply"):
        Decision(DecisionKind.REWRITE, "x", Reply.of(550, None, "x"))


def test_builtin_decision_is_the_configured_one() -> None:
    config = load(
        'filter a phase connect match rdns reject "550 5.7.1 no rdns"\n'
        'filter b phase helo match rdns rewrite "helo.example"\n'
        "filter c phase data match rdns junk\n"
    )
    kinds = {name: builtin_decision(f) for name, f in config.filters.items()}  # type: ignore[arg-type]
    assert kinds["a"] == Decision.reject("550 5.7.1 no rdns")
    assert kinds["b"] == Decision.rewrite("helo.example")
    assert kinds["c"] == Decision.junk()
