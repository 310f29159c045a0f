"""Tests for mta.rules.ruleset: every match criterion, negated and not, with
tables and regexes, rule order, no match, and lookup failures."""

from __future__ import annotations

import pytest

from mta.envelope import NULL_ADDRESS, Address
from mta.errors import TableError, TemporaryFailure
from mta.rules.ruleset import MatchContext, match_rule, rule_tables
from mta.rules.tableset import TableSet
from mta.tables import Service, Table, TableType, builtin_tables
from mta.tables.static import StaticTable
from tests.rules.helpers import HOSTNAME, LOCAL_ADDRESSES, load, local_socket, open_tables, remote

RCPT = Address("alice", "example.com")


def matches(criteria: str, ctx: MatchContext, rcpt: Address = RCPT) -> bool:
    config = load(f'action "a" relay\nmatch {criteria} action "a"\n')
    tables = open_tables(config)
    try:
        return match_rule(config, tables, ctx, rcpt) is not None
    finally:
        tables.close()


def negate(criteria: str, keyword: str) -> str:
    head, sep, tail = criteria.partition(keyword)
    assert sep, (criteria, keyword)
    return f"{head}! {keyword}{tail}"


ANY = "from any for any"

# (criteria, the keyword to negate, context, recipient, expected)
CASES: list[tuple[str, str, MatchContext, Address, bool]] = [
    # from any / local / socket
    ("from any for any", "from", remote(), RCPT, True),
    ("from any for any", "from", local_socket(), RCPT, True),
    ("from local for any", "from", remote(), RCPT, False),
    ("from local for any", "from", remote(src="127.0.0.1"), RCPT, True),
    ("from local for any", "from", remote(src="::1"), RCPT, True),
    ("from local for any", "from", remote(src="192.0.2.10"), RCPT, True),
    ("from local for any", "from", local_socket(), RCPT, True),
    ("from socket for any", "from", local_socket(), RCPT, True),
    ("from socket for any", "from", remote(src="127.0.0.1"), RCPT, False),
    # from src: list, CIDR, regex
    ('from src "203.0.113.0/24" for any', "from", remote(), RCPT, True),
    ("from src { 10.0.0.0/8, 203.0.113.5 } for any", "from", remote(), RCPT, True),
    ("from src { 10.0.0.0/8, 198.51.100.1 } for any", "from", remote(), RCPT, False),
    ('from src regex "^203\\.0\\." for any', "from", remote(), RCPT, True),
    ('from src regex "^10\\." for any', "from", remote(), RCPT, False),
    # from rdns
    ("from rdns for any", "from", remote(), RCPT, True),
    ("from rdns for any", "from", remote(rdns=None), RCPT, False),
    ('from rdns { "*.sender.example" } for any', "from", remote(), RCPT, True),
    ('from rdns { "*.other.example" } for any', "from", remote(), RCPT, False),
    ('from rdns regex "sender\\.example$" for any', "from", remote(), RCPT, True),
    ('from rdns regex "^smtp\\." for any', "from", remote(), RCPT, False),
    # from auth (= from any + auth)
    ("from auth for any", "from", remote(auth_user="alice"), RCPT, True),
    ("from auth for any", "from", remote(), RCPT, False),
    ("from auth { alice } for any", "from", remote(auth_user="Alice"), RCPT, True),
    ("from auth { alice } for any", "from", remote(auth_user="bob"), RCPT, False),
    (
        'from auth { "alice@example.org" } for any',
        "from",
        remote(auth_user="alice+x@example.org"),
        RCPT,
        True,
    ),
    ('from auth { "alice@example.org" } for any', "from", remote(auth_user="alice"), RCPT, False),
    ('from auth regex "^al" for any', "from", remote(auth_user="alice"), RCPT, True),
    ('from auth regex "^al" for any', "from", remote(auth_user="bob"), RCPT, False),
    # from mail-from (= from any + mail-from)
    ('from mail-from "@sender.example" for any', "from", remote(), RCPT, True),
    ('from mail-from "@other.example" for any', "from", remote(), RCPT, False),
    ('from mail-from regex "^bob@" for any', "from", remote(), RCPT, True),
    ('from mail-from regex "^carol@" for any', "from", remote(), RCPT, False),
    # for any / local / domain / rcpt-to
    ("from any for any", "for", remote(), RCPT, True),
    ("from any for local", "for", remote(), Address("a", HOSTNAME), True),
    ("from any for local", "for", remote(), Address("a", "localhost"), True),
    ("from any for local", "for", remote(), Address("a", "192.0.2.10"), True),
    ("from any for local", "for", remote(), RCPT, False),
    ('from any for domain { example.com, "*.example.net" }', "for", remote(), RCPT, True),
    (
        'from any for domain { example.com, "*.example.net" }',
        "for",
        remote(),
        Address("a", "mx.example.net"),
        True,
    ),
    (
        'from any for domain { example.com, "*.example.net" }',
        "for",
        remote(),
        Address("a", "example.org"),
        False,
    ),
    ('from any for domain regex "\\.(com|net)$"', "for", remote(), RCPT, True),
    (
        'from any for domain regex "\\.(com|net)$"',
        "for",
        remote(),
        Address("a", "example.org"),
        False,
    ),
    (
        'from any for rcpt-to "alice@example.com"',
        "for",
        remote(),
        Address("Alice+tag", "example.com"),
        True,
    ),
    (
        'from any for rcpt-to "alice@example.com"',
        "for",
        remote(),
        Address("bob", "example.com"),
        False,
    ),
    ('from any for rcpt-to regex "^alice@"', "for", remote(), RCPT, True),
    ('from any for rcpt-to regex "^bob@"', "for", remote(), RCPT, False),
    # tag
    (f"{ANY} tag inbound", "tag", remote(tag="inbound"), RCPT, True),
    (f"{ANY} tag inbound", "tag", remote(tag="outbound"), RCPT, False),
    (f"{ANY} tag inbound", "tag", remote(), RCPT, False),
    (f'{ANY} tag regex "^in"', "tag", remote(tag="inbound"), RCPT, True),
    (f'{ANY} tag regex "^in"', "tag", remote(tag="outbound"), RCPT, False),
    # helo
    (f'{ANY} helo "*.sender.example"', "helo", remote(), RCPT, True),
    (f'{ANY} helo "*.sender.example"', "helo", remote(helo="spam.invalid"), RCPT, False),
    (f'{ANY} helo regex "^mail\\."', "helo", remote(), RCPT, True),
    (f'{ANY} helo regex "^smtp\\."', "helo", remote(), RCPT, False),
    # auth
    (f"{ANY} auth", "auth", remote(auth_user="alice"), RCPT, True),
    (f"{ANY} auth", "auth", remote(), RCPT, False),
    (f"{ANY} auth {{ alice, carol }}", "auth", remote(auth_user="carol"), RCPT, True),
    (f"{ANY} auth {{ alice, carol }}", "auth", remote(auth_user="bob"), RCPT, False),
    (f"{ANY} auth {{ alice, carol }}", "auth", remote(), RCPT, False),
    (f'{ANY} auth regex "^c"', "auth", remote(auth_user="carol"), RCPT, True),
    (f'{ANY} auth regex "^c"', "auth", remote(auth_user="alice"), RCPT, False),
    # mail-from
    (f'{ANY} mail-from "bob@sender.example"', "mail-from", remote(), RCPT, True),
    (
        f'{ANY} mail-from "bob@sender.example"',
        "mail-from",
        remote(sender=Address("bob+list", "sender.example")),
        RCPT,
        True,
    ),
    (
        f'{ANY} mail-from "bob@sender.example"',
        "mail-from",
        remote(sender=NULL_ADDRESS),
        RCPT,
        False,
    ),
    (f'{ANY} mail-from "@"', "mail-from", remote(sender=NULL_ADDRESS), RCPT, True),
    (f'{ANY} mail-from regex "@sender\\.example$"', "mail-from", remote(), RCPT, True),
    (
        f'{ANY} mail-from regex "@sender\\.example$"',
        "mail-from",
        remote(sender=Address("x", "y.example")),
        RCPT,
        False,
    ),
    # rcpt-to
    (f'{ANY} rcpt-to "@example.com"', "rcpt-to", remote(), RCPT, True),
    (f'{ANY} rcpt-to "@example.com"', "rcpt-to", remote(), Address("alice", "example.org"), False),
    (f'{ANY} rcpt-to regex "^alice"', "rcpt-to", remote(), RCPT, True),
    (f'{ANY} rcpt-to regex "^alice"', "rcpt-to", remote(), Address("bob", "example.com"), False),
    # tls
    (f"{ANY} tls", "tls", remote(tls=True), RCPT, True),
    (f"{ANY} tls", "tls", remote(), RCPT, False),
]


@pytest.mark.parametrize(("criteria", "keyword", "ctx", "rcpt", "expected"), CASES)
def test_criterion(
    criteria: str, keyword: str, ctx: MatchContext, rcpt: Address, expected: bool
) -> None:
    assert matches(criteria, ctx, rcpt) is expected


@pytest.mark.parametrize(("criteria", "keyword", "ctx", "rcpt", "expected"), CASES)
def test_negated_criterion(
    criteria: str, keyword: str, ctx: MatchContext, rcpt: Address, expected: bool
) -> None:
    assert matches(negate(criteria, keyword), ctx, rcpt) is not expected


def test_rdns_table_never_matches_without_rdns() -> None:
    # OpenSMTPD: no reverse name fails "from rdns <table>", negated or not
    assert not matches('from rdns { "*" } for any', remote(rdns=None))
    assert not matches('! from rdns { "*" } for any', remote(rdns=None))
    assert matches('! from rdns { "*.other" } for any', remote())


def test_defaults_are_from_local_for_local() -> None:
    assert matches("", remote(src="127.0.0.1"), Address("a", HOSTNAME))
    assert not matches("", remote(), Address("a", HOSTNAME))
    assert not matches("", remote(src="127.0.0.1"), RCPT)


# -- addresses produced by expansion ---------------------------------------------


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("from local for any", True),
        ("from any for any", True),
        ("! from local for any", False),
        ('from src "203.0.113.5" for any', False),
        ('from src "local" for any', True),
        ("from socket for any", False),
        ("! from socket for any", False),
        ("from rdns for any", False),
        ("! from rdns for any", False),
        ('from rdns "local" for any', True),
    ],
)
def test_internal_addresses_match_as_local(criteria: str, expected: bool) -> None:
    assert matches(criteria, remote(internal=True)) is expected


def test_internal_keeps_session_criteria() -> None:
    assert matches(f"{ANY} auth", remote(internal=True, auth_user="alice"))
    assert not matches(f"{ANY} auth", remote(internal=True))
    assert matches(f"{ANY} tls", remote(internal=True, tls=True))


# -- rule order and outcomes ---------------------------------------------------------


ORDERED = """
action "local" mbox
action "out" relay
match from any for domain "example.com" rcpt-to "postmaster@example.com" action "local"
match from any for domain "example.com" reject
match from local for any action "out"
match from any auth for any action "out"
"""


def first(ctx: MatchContext, rcpt: Address) -> tuple[int, str | None] | None:
    config = load(ORDERED)
    tables = open_tables(config)
    rule = match_rule(config, tables, ctx, rcpt)
    tables.close()
    if rule is None:
        return None
    return config.rules.index(rule), rule.action


def test_first_match_wins() -> None:
    assert first(remote(), Address("postmaster", "example.com")) == (0, "local")
    assert first(remote(), Address("alice", "example.com")) == (1, None)  # a reject rule
    assert first(remote(src="127.0.0.1"), Address("alice", "example.com")) == (1, None)
    assert first(remote(src="127.0.0.1"), Address("a", "example.net")) == (2, "out")
    assert first(remote(auth_user="u"), Address("a", "example.net")) == (3, "out")


def test_no_rule_matches() -> None:
    assert first(remote(), Address("a", "example.net")) is None


# -- lookup failures -------------------------------------------------------------------


class BrokenTable(Table):
    backend = "broken"

    def __init__(self, name: str) -> None:
        super().__init__(name, Service.DOMAIN | Service.NETADDR, TableType.LIST)
        self.calls = 0

    def _lookup(self, service: Service, key: str) -> str | None:
        self.calls += 1
        raise TableError("backend down")


def broken_set(name: str) -> tuple[TableSet, BrokenTable]:
    broken = BrokenTable(name)
    tables: dict[str, Table] = dict(builtin_tables(HOSTNAME, LOCAL_ADDRESSES))
    tables[name] = broken
    return TableSet(tables), broken


def test_table_error_is_a_temporary_failure() -> None:
    config = load(
        'table domains { example.com }\naction "a" relay\n'
        'match from any for domain <domains> action "a"\n'
    )
    tables, broken = broken_set("domains")
    with pytest.raises(TemporaryFailure):
        match_rule(config, tables, remote(), RCPT)
    assert broken.calls == 1


def test_lookups_stop_at_the_first_failing_criterion() -> None:
    # "from local" fails first, so the broken table is never asked (OpenSMTPD order)
    config = load(
        'table domains { example.com }\naction "a" relay\n'
        'match from local for domain <domains> action "a"\n'
        'match from any for any action "a"\n'
    )
    tables, broken = broken_set("domains")
    rule = match_rule(config, tables, remote(), RCPT)
    assert rule is config.rules[1]
    assert broken.calls == 0


def test_too_long_key_is_a_temporary_failure() -> None:
    with pytest.raises(TemporaryFailure):
        matches('from any for domain "example.com"', remote(), Address("a", "x" * 2000))


def test_rule_tables_lists_what_rules_ask() -> None:
    config = load(
        'table domains { example.com }\naction "a" relay\n'
        'match from any for domain <domains> action "a"\n'
        'match from socket for local tag { t } action "a"\n'
    )
    tables = open_tables(config)
    found = rule_tables(config, tables)
    names = sorted(t.name for t in found)
    assert names == sorted(["<anyhost>", "domains", "<localnames>", "<dynamic>"])
    assert all(isinstance(t, StaticTable) for t in found)
    tables.close()
