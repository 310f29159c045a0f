"""Tests for mta.rules.expand: recipient resolution with real configurations."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from mta.config.model import NamedTable
from mta.envelope import Address, DeliveryNode, EnvelopeKind
from mta.errors import PermanentFailure, TableError, TemporaryFailure
from mta.relay.srs import srs_encode
from mta.reply import Reply
from mta.rules import forwardcache
from mta.rules.expand import Delivery, RecipientRejected, Resolver
from mta.rules.forward import read_forward
from mta.rules.ruleset import MatchContext
from mta.rules.tableset import TableSet
from mta.tables import Service, Table, TableType, builtin_tables
from mta.tables.proctable import ProcTable
from mta.tables.values import UserInfo
from tests.rules.helpers import (
    HOSTNAME,
    LOCAL_ADDRESSES,
    load,
    local_socket,
    open_tables,
    remote,
    write_proc_helper,
)

ROOT = os.geteuid() == 0
UID = 4242 if ROOT else os.getuid()  # as root, test users get their own uid


class Homes:
    """Home directories for the users of a test, and a userbase table for them.

    ``rooty`` has uid 0 (files and commands are refused in its ``.forward``)."""

    def __init__(self, root: Path, users: list[str]) -> None:
        self.root = root
        self.uids = dict.fromkeys(users, UID)
        self.uids["rooty"] = 0
        for user in self.uids:
            self.home(user).mkdir(mode=0o755)
            self.own(self.home(user), user)

    def own(self, path: Path, user: str) -> None:
        if ROOT:
            os.chown(path, self.uids[user], self.uids[user])

    def home(self, user: str) -> Path:
        return self.root / user

    def table(self, name: str = "users") -> str:
        entries = ", ".join(f'{u} = "{uid}:{uid}:{self.home(u)}"' for u, uid in self.uids.items())
        return f"table {name} {{ {entries} }}\n"

    def forward(self, user: str, text: str, mode: int = 0o644) -> Path:
        path = self.home(user) / ".forward"
        path.write_text(text)
        path.chmod(mode)
        self.own(path, user)
        return path


@pytest.fixture
def homes(tmp_path: Path) -> Homes:
    return Homes(tmp_path, ["alice", "bob", "carol", "dave", "vmail"])


class Setup:
    def __init__(self, text: str, **kwargs: object) -> None:
        self.config_text = text
        self.config = load(text)
        self.tables = open_tables(self.config)
        self.resolver = Resolver(self.config, self.tables, HOSTNAME, **kwargs)  # type: ignore[arg-type]

    async def resolve(self, rcpt: str, ctx: MatchContext | None = None) -> list[Delivery]:
        return await self.resolver.resolve(ctx or remote(), Address.parse(rcpt))

    async def reject(self, rcpt: str, ctx: MatchContext | None = None) -> RecipientRejected:
        with pytest.raises(RecipientRejected) as info:
            await self.resolve(rcpt, ctx)
        return info.value

    def close(self) -> None:
        self.tables.close()


@pytest.fixture
def made() -> Iterator[list[Setup]]:
    made: list[Setup] = []
    yield made
    for setup in made:
        setup.close()


def setup_of(made: list[Setup], text: str, **kwargs: object) -> Setup:
    setup = Setup(text, **kwargs)
    made.append(setup)
    return setup


def users(deliveries: list[Delivery]) -> list[str]:
    return [d.mda_user for d in deliveries]


LOCAL = f'match from any for domain "{HOSTNAME}" action "local"\n'


# -- relay and rule outcomes ---------------------------------------------------------


async def test_relay_is_one_mta_delivery(made: list[Setup]) -> None:
    s = setup_of(made, 'action "out" relay\nmatch from any for any action "out"\n')
    assert await s.resolve("Bob+x@Example.NET") == [
        Delivery("out", EnvelopeKind.MTA, Address("Bob+x", "example.net"))
    ]


async def test_no_rule_is_invalid_recipient(made: list[Setup]) -> None:
    s = setup_of(made, 'action "out" relay\nmatch from local for any action "out"\n')
    exc = await s.reject("bob@example.net")
    assert exc.reply == Reply.of(550, "5.1.1", "Invalid recipient: <bob@example.net>")
    assert isinstance(exc, PermanentFailure)


async def test_reject_rule_is_invalid_recipient(made: list[Setup]) -> None:
    s = setup_of(
        made,
        'action "out" relay\nmatch from any for domain "example.net" reject\n'
        'match from any for any action "out"\n',
    )
    exc = await s.reject("bob@example.net")
    assert exc.reply.encode() == b"550 5.1.1 Invalid recipient: <bob@example.net>\r\n"
    assert len(await s.resolve("bob@example.org")) == 1


async def test_rule_lookup_error_is_temporary() -> None:
    config = load(
        'table domains { example.net }\naction "out" relay\n'
        'match from any for domain <domains> action "out"\n'
    )
    named: dict[str, Table] = dict(builtin_tables(HOSTNAME, LOCAL_ADDRESSES))
    named["domains"] = ProcTable("domains", "/bin/false", None)  # its helper exits at once
    tables = TableSet(named)
    try:
        with pytest.raises(RecipientRejected) as info:
            await Resolver(config, tables, HOSTNAME).resolve(
                remote(), Address("bob", "example.net")
            )
    finally:
        tables.close()
    assert info.value.reply == Reply.of(451, "4.3.0", "Temporary failure: <bob@example.net>")
    assert isinstance(info.value, TemporaryFailure)


async def test_recipient_without_domain_gets_smtpname(made: list[Setup]) -> None:
    s = setup_of(made, 'action "out" relay\nmatch from any for local action "out"\n')
    deliveries = await s.resolve("postmaster")
    assert deliveries[0].dest == Address("postmaster", HOSTNAME)


# -- local users -------------------------------------------------------------------


async def test_local_user_from_userbase(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, homes.table() + 'action "local" mbox userbase <users>\n' + LOCAL)
    assert await s.resolve(f"Alice@{HOSTNAME}") == [
        Delivery("local", EnvelopeKind.MDA, Address("Alice", HOSTNAME), DeliveryNode.USER, "alice")
    ]


async def test_unknown_local_user_is_refused_at_rcpt(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, homes.table() + 'action "local" mbox userbase <users>\n' + LOCAL)
    exc = await s.reject(f"nobody@{HOSTNAME}")
    assert exc.reply == Reply.of(550, "5.1.1", f"Invalid recipient: <nobody@{HOSTNAME}>")


async def test_subaddress(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, homes.table() + 'action "local" maildir userbase <users>\n' + LOCAL)
    [delivery] = await s.resolve(f"alice+lists@{HOSTNAME}")
    assert (delivery.mda_user, delivery.mda_subaddress) == ("alice", "lists")
    assert delivery.dest == Address("alice+lists", HOSTNAME)


async def test_custom_subaddress_delimiter(made: list[Setup], homes: Homes) -> None:
    s = setup_of(
        made,
        'smtp sub-addr-delim "-"\n'
        + homes.table()
        + 'action "local" maildir userbase <users>\n'
        + LOCAL,
    )
    [delivery] = await s.resolve(f"bob-news@{HOSTNAME}")
    assert (delivery.mda_user, delivery.mda_subaddress) == ("bob", "news")
    with pytest.raises(RecipientRejected):
        await s.resolve(f"bob+news@{HOSTNAME}")


async def test_getpwnam_is_the_default_userbase(made: list[Setup]) -> None:
    s = setup_of(made, 'action "local" mbox\n' + LOCAL, forward_reader=lambda info: None)
    [delivery] = await s.resolve(f"root@{HOSTNAME}")
    assert delivery.mda_user == "root"
    await s.reject(f"no-such-user-here-xyz@{HOSTNAME}")


# -- aliases -------------------------------------------------------------------------


def alias_config(homes: Homes, aliases: str, extra: str = "") -> str:
    return (
        homes.table()
        + f"table aliases {{ {aliases} }}\n"
        + 'action "local" mbox alias <aliases> userbase <users>\n'
        + 'action "out" relay\n'
        + extra
        + LOCAL
        + 'match from local for any action "out"\n'
    )


async def test_alias_to_several_users(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, alias_config(homes, 'team = "alice, bob, carol"'))
    deliveries = await s.resolve(f"team@{HOSTNAME}")
    assert users(deliveries) == ["alice", "bob", "carol"]
    assert {d.dest for d in deliveries} == {Address("team", HOSTNAME)}
    assert all(d.kind is EnvelopeKind.MDA and d.node is DeliveryNode.USER for d in deliveries)


async def test_nested_aliases(made: list[Setup], homes: Homes) -> None:
    s = setup_of(
        made, alias_config(homes, 'all = "staff, dave", staff = "alice, admins", admins = bob')
    )
    assert sorted(users(await s.resolve(f"all@{HOSTNAME}"))) == ["alice", "bob", "dave"]


async def test_alias_tagged_key_first(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, alias_config(homes, '"alice+vip" = bob, alice = carol'))
    assert users(await s.resolve(f"alice+vip@{HOSTNAME}")) == ["bob"]
    assert users(await s.resolve(f"alice+other@{HOSTNAME}")) == ["carol"]


async def test_alias_to_unknown_user_is_refused(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, alias_config(homes, 'team = "alice, ghost"'))
    exc = await s.reject(f"team@{HOSTNAME}")
    assert exc.reply.code == 550


async def test_alias_loop_ends(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, alias_config(homes, 'a = "b, alice", b = "a, bob"'))
    assert sorted(users(await s.resolve(f"a@{HOSTNAME}"))) == ["alice", "bob"]


async def test_alias_loop_without_users_is_an_expansion_problem(
    made: list[Setup], homes: Homes
) -> None:
    s = setup_of(made, alias_config(homes, "a = b, b = a"))
    exc = await s.reject(f"a@{HOSTNAME}")
    assert exc.reply == Reply.of(524, "5.2.4", f"Mailing list expansion problem: <a@{HOSTNAME}>")


async def test_alias_address_loop_hits_the_depth_limit(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, alias_config(homes, f'a = "b@{HOSTNAME}", b = "a@{HOSTNAME}"'))
    exc = await s.reject(f"a@{HOSTNAME}")
    assert (exc.reply.code, exc.reply.enhanced) == (524, "5.2.4")


async def test_user_aliased_to_self_and_others(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, alias_config(homes, 'alice = "alice, bob"'))
    assert sorted(users(await s.resolve(f"alice@{HOSTNAME}"))) == ["alice", "bob"]


async def test_duplicate_deliveries_kept_once(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, alias_config(homes, f'list = "bob, carol@{HOSTNAME}", carol = "bob, alice"'))
    assert sorted(users(await s.resolve(f"list@{HOSTNAME}"))) == ["alice", "bob"]


async def test_alias_to_remote_address_relays(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, alias_config(homes, 'ext = "someone@example.net, alice"'))
    deliveries = await s.resolve(f"ext@{HOSTNAME}")
    assert deliveries == [
        Delivery("out", EnvelopeKind.MTA, Address("someone", "example.net"), internal=True),
        Delivery("local", EnvelopeKind.MDA, Address("ext", HOSTNAME), mda_user="alice"),
    ]


async def test_expanded_address_matched_as_internal(made: list[Setup], homes: Homes) -> None:
    # a remote client may not relay, but an alias pointing outside does
    s = setup_of(made, alias_config(homes, 'ext = "someone@example.net"'))
    [delivery] = await s.resolve(f"ext@{HOSTNAME}")
    assert delivery.kind is EnvelopeKind.MTA and delivery.internal
    await s.reject("someone@example.net")


async def test_expanded_address_rejected_refuses_recipient(made: list[Setup], homes: Homes) -> None:
    s = setup_of(
        made,
        alias_config(
            homes,
            'ext = "alice, x@blocked.example"',
            'match from any for domain "blocked.example" reject\n',
        ),
    )
    exc = await s.reject(f"ext@{HOSTNAME}")
    assert exc.reply == Reply.of(550, "5.1.1", f"Invalid recipient: <ext@{HOSTNAME}>")


async def test_alias_error_entry(made: list[Setup], homes: Homes) -> None:
    s = setup_of(
        made,
        alias_config(
            homes,
            'gone = "error:550 5.1.6 moved away", busy = "error:450 try later",'
            ' odd = "error:550 4.2.2 wrong class"',
        ),
    )
    exc = await s.reject(f"gone@{HOSTNAME}")
    assert exc.reply == Reply.of(550, "5.1.6", f"moved away: <gone@{HOSTNAME}>")
    assert isinstance(exc, PermanentFailure)
    exc = await s.reject(f"busy@{HOSTNAME}")
    assert exc.reply == Reply.of(450, "4.0.0", f"try later: <busy@{HOSTNAME}>")
    assert isinstance(exc, TemporaryFailure)
    exc = await s.reject(f"odd@{HOSTNAME}")
    assert exc.reply == Reply.of(550, "5.0.0", f"4.2.2 wrong class: <odd@{HOSTNAME}>")


async def test_alias_file_and_command(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, alias_config(homes, 'arch = "/var/mail/archive, \\"|/bin/cat -n\\""'))
    deliveries = await s.resolve(f"arch@{HOSTNAME}")
    assert [(d.node, d.mda_exec, d.mda_user) for d in deliveries] == [
        (DeliveryNode.FILENAME, "/var/mail/archive", ""),
        (DeliveryNode.COMMAND, "/bin/cat -n", ""),
    ]


async def test_include(made: list[Setup], homes: Homes, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# members\nalice, bob\ncarol@example.net\n")
    s = setup_of(made, alias_config(homes, f'list = "dave, :include:{listing}"'))
    deliveries = await s.resolve(f"list@{HOSTNAME}")
    assert users(deliveries) == ["dave", "alice", "bob", ""]
    assert deliveries[-1].dest == Address("carol", "example.net")


async def test_missing_include_is_temporary(
    made: list[Setup], homes: Homes, tmp_path: Path
) -> None:
    s = setup_of(made, alias_config(homes, f'list = ":include:{tmp_path}/missing"'))
    exc = await s.reject(f"list@{HOSTNAME}")
    assert (exc.reply.code, exc.reply.enhanced) == (424, "4.2.4")


# -- virtual -------------------------------------------------------------------------


def virtual_config(homes: Homes, virtual: str) -> str:
    return (
        homes.table()
        + f"table vtable {{ {virtual} }}\n"
        + 'action "vdomains" maildir virtual <vtable> userbase <users>\n'
        + 'action "out" relay\n'
        + 'match from any for domain { "example.com", "example.org" } action "vdomains"\n'
        + 'match from local for any action "out"\n'
    )


async def test_virtual_with_catch_all(made: list[Setup], homes: Homes) -> None:
    s = setup_of(
        made,
        virtual_config(
            homes,
            '"info@example.com" = "alice, bob", "@example.com" = carol, '
            '"sales@example.org" = "dave@example.net"',
        ),
    )
    assert users(await s.resolve("info@example.com")) == ["alice", "bob"]
    assert users(await s.resolve("anything@example.com")) == ["carol"]
    [relayed] = await s.resolve("sales@example.org")
    assert relayed == Delivery(
        "out", EnvelopeKind.MTA, Address("dave", "example.net"), internal=True
    )
    exc = await s.reject("nobody@example.org")
    assert (exc.reply.code, exc.reply.enhanced) == (524, "5.2.4")


async def test_virtual_subaddress(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, virtual_config(homes, '"alice@example.com" = alice'))
    [delivery] = await s.resolve("alice+x@example.com")
    assert (delivery.mda_user, delivery.mda_subaddress) == ("alice", "")
    assert delivery.dest == Address("alice+x", "example.com")


async def test_virtual_to_unknown_user_is_refused(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, virtual_config(homes, '"a@example.com" = ghost'))
    assert (await s.reject("a@example.com")).reply.code == 550


# -- table errors during expansion ----------------------------------------------------


class BrokenAliases(Table):
    backend = "broken"

    def __init__(self, name: str) -> None:
        super().__init__(name, Service.ALIAS | Service.USERINFO, TableType.HASH)

    def _lookup(self, service: Service, key: str) -> str | None:
        raise TableError("backend down")


async def test_alias_table_error_is_temporary(homes: Homes) -> None:
    config = load(alias_config(homes, "a = b"))
    named: dict[str, Table] = dict(builtin_tables(HOSTNAME, LOCAL_ADDRESSES))
    named["aliases"] = BrokenAliases("aliases")
    named["users"] = open_tables(config).get(config.actions["local"].method.userbase)  # type: ignore[union-attr,arg-type]
    resolver = Resolver(config, TableSet(named), HOSTNAME)
    with pytest.raises(RecipientRejected) as info:
        await resolver.resolve(remote(), Address("a", HOSTNAME))
    assert info.value.reply == Reply.of(
        424, "4.2.4", f"Mailing list expansion problem: <a@{HOSTNAME}>"
    )


async def test_userbase_error_is_temporary(homes: Homes) -> None:
    config = load(alias_config(homes, "a = b"))
    named: dict[str, Table] = dict(builtin_tables(HOSTNAME, LOCAL_ADDRESSES))
    named["aliases"] = open_tables(config).get(config.actions["local"].method.alias)  # type: ignore[union-attr,arg-type]
    named["users"] = BrokenAliases("users")
    resolver = Resolver(config, TableSet(named), HOSTNAME)
    with pytest.raises(RecipientRejected) as info:
        await resolver.resolve(local_socket(), Address("alice", HOSTNAME))
    assert info.value.reply == Reply.of(451, "4.3.0", f"Temporary failure: <alice@{HOSTNAME}>")


# -- .forward -------------------------------------------------------------------------


def forward_config(homes: Homes, method: str = "mbox", options: str = "") -> str:
    return (
        homes.table()
        + "table aliases { postmaster = rooty }\n"
        + f'action "local" {method} alias <aliases> userbase <users> {options}\n'
        + 'action "out" relay\n'
        + LOCAL
        + 'match from local for any action "out"\n'
    )


async def test_forward_elsewhere_and_keep_a_copy(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", "alice@example.net, \\alice\n")
    s = setup_of(made, forward_config(homes))
    assert await s.resolve(f"alice@{HOSTNAME}") == [
        Delivery("out", EnvelopeKind.MTA, Address("alice", "example.net"), internal=True),
        Delivery("local", EnvelopeKind.MDA, Address("alice", HOSTNAME), mda_user="alice"),
    ]


async def test_forward_to_self_delivers_once(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", "alice\nalice\n")
    s = setup_of(made, forward_config(homes))
    assert users(await s.resolve(f"alice@{HOSTNAME}")) == ["alice"]


async def test_forward_chain(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", "bob\n")
    homes.forward("bob", f"carol@{HOSTNAME}\n")
    s = setup_of(made, forward_config(homes))
    [delivery] = await s.resolve(f"alice@{HOSTNAME}")
    assert delivery.mda_user == "carol"
    assert delivery.dest == Address("carol", HOSTNAME) and delivery.internal


async def test_forward_with_subaddress(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", "alice, bob\n")
    s = setup_of(made, forward_config(homes))
    deliveries = await s.resolve(f"alice+tag@{HOSTNAME}")
    assert [(d.mda_user, d.mda_subaddress) for d in deliveries] == [("alice", ""), ("bob", "")]


async def test_empty_forward_delivers(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", "# nothing here\n")
    s = setup_of(made, forward_config(homes))
    assert users(await s.resolve(f"alice@{HOSTNAME}")) == ["alice"]


async def test_forward_file_and_command(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", '/tmp/alice.mbox, "|/usr/bin/filter -x"\n')
    s = setup_of(made, forward_config(homes))
    deliveries = await s.resolve(f"alice@{HOSTNAME}")
    assert [(d.node, d.mda_exec, d.mda_user) for d in deliveries] == [
        (DeliveryNode.FILENAME, "/tmp/alice.mbox", "alice"),
        (DeliveryNode.COMMAND, "/usr/bin/filter -x", "alice"),
    ]


async def test_files_and_commands_refused_in_roots_forward(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, forward_config(homes))
    homes.forward("rooty", "/tmp/root.mbox\n")
    exc = await s.reject(f"postmaster@{HOSTNAME}")
    assert exc.reply == Reply.of(451, "4.3.0", f"Temporary failure: <postmaster@{HOSTNAME}>")
    homes.forward("rooty", '"|/bin/true"\n')
    s.resolver.forwards.clear()  # a changed .forward shows after the cache TTL
    assert (await s.reject(f"rooty@{HOSTNAME}")).reply.code == 451
    homes.forward("rooty", "alice\n")
    s.resolver.forwards.clear()  # a changed .forward shows after the cache TTL
    assert users(await s.resolve(f"postmaster@{HOSTNAME}")) == ["alice"]


async def test_forward_error_entry(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", "error:550 5.7.1 no mail please\n")
    s = setup_of(made, forward_config(homes))
    exc = await s.reject(f"alice@{HOSTNAME}")
    assert exc.reply == Reply.of(550, "5.7.1", f"no mail please: <alice@{HOSTNAME}>")


async def test_insecure_forward_is_temporary(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", "bob\n", mode=0o666)
    s = setup_of(made, forward_config(homes))
    exc = await s.reject(f"alice@{HOSTNAME}")
    assert exc.reply == Reply.of(
        424, "4.2.4", f"Mailing list expansion problem: <alice@{HOSTNAME}>"
    )


async def test_malformed_forward_is_temporary(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", '"unterminated\n')
    s = setup_of(made, forward_config(homes))
    assert (await s.reject(f"alice@{HOSTNAME}")).reply.code == 424


async def test_forward_only(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, forward_config(homes, "forward-only"))
    exc = await s.reject(f"alice@{HOSTNAME}")
    assert (exc.reply.code, exc.reply.enhanced) == (424, "4.2.4")
    homes.forward("alice", "alice@example.net\n")
    s.resolver.forwards.clear()  # a changed .forward shows after the cache TTL
    [delivery] = await s.resolve(f"alice@{HOSTNAME}")
    assert delivery.kind is EnvelopeKind.MTA
    homes.forward("alice", "/tmp/file\n")
    s.resolver.forwards.clear()  # a changed .forward shows after the cache TTL
    assert (await s.reject(f"alice@{HOSTNAME}")).reply.code == 451
    homes.forward("alice", "error:550 gone\n")
    s.resolver.forwards.clear()  # a changed .forward shows after the cache TTL
    assert (await s.reject(f"alice@{HOSTNAME}")).reply.code == 451


async def test_expand_only(made: list[Setup], homes: Homes) -> None:
    s = setup_of(made, forward_config(homes, "expand-only"))
    exc = await s.reject(f"alice@{HOSTNAME}")
    assert (exc.reply.code, exc.reply.enhanced) == (524, "5.2.4")
    homes.forward("alice", "bob@example.net\n")
    s.resolver.forwards.clear()  # a changed .forward shows after the cache TTL
    assert len(await s.resolve(f"alice@{HOSTNAME}")) == 1


async def test_action_user_skips_other_users_forward(made: list[Setup], homes: Homes) -> None:
    homes.forward("alice", "alice@example.net\n")
    homes.forward("vmail", "vmail@example.net\n")
    s = setup_of(made, forward_config(homes, "maildir", "user vmail"))
    [delivery] = await s.resolve(f"alice@{HOSTNAME}")
    assert (delivery.kind, delivery.mda_user) == (EnvelopeKind.MDA, "alice")
    [delivery] = await s.resolve(f"vmail@{HOSTNAME}")
    assert delivery.kind is EnvelopeKind.MTA


async def test_forward_reader_is_called_with_the_userinfo(made: list[Setup], homes: Homes) -> None:
    seen: list[UserInfo] = []

    def reader(info: UserInfo) -> str | None:
        seen.append(info)
        if info.username == "bob":
            raise PermanentFailure("refused")
        return None

    s = setup_of(made, forward_config(homes), forward_reader=reader)
    assert users(await s.resolve(f"Alice@{HOSTNAME}")) == ["alice"]
    assert seen == [UserInfo("alice", UID, UID, str(homes.home("alice")))]
    exc = await s.reject(f"bob@{HOSTNAME}")
    assert (exc.reply.code, exc.reply.enhanced) == (524, "5.2.4")


# -- tables that may block ---------------------------------------------------------------


async def test_helper_tables_in_rules_and_aliases(homes: Homes, tmp_path: Path) -> None:
    config = load(
        homes.table()
        + "table aliases { x = y }\ntable domains { example.com }\n"
        + 'action "local" mbox alias <aliases> userbase <users>\n'
        + 'match from any for domain <domains> action "local"\n'
    )
    helper = str(write_proc_helper(tmp_path))
    argument = json.dumps([{"team": "alice, bob"}, [HOSTNAME]])
    static = open_tables(config)
    named: dict[str, Table] = dict(builtin_tables(HOSTNAME, LOCAL_ADDRESSES))
    named["aliases"] = ProcTable("aliases", helper, argument)
    named["domains"] = ProcTable("domains", helper, argument)
    named["users"] = static.get(NamedTable("users"))
    tables = TableSet(named)
    resolver = Resolver(config, tables, HOSTNAME)
    results: list[list[str]] = []

    async def one() -> None:
        results.append(users(await resolver.resolve(remote(), Address("team", HOSTNAME))))

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(one)
        assert results == [["alice", "bob"]] * 8
        with pytest.raises(RecipientRejected) as info:
            await resolver.resolve(remote(), Address("team", "example.com"))
        assert info.value.reply.code == 550
    finally:
        tables.close()
        static.close()


async def test_legacy_grammar(made: list[Setup], homes: Homes) -> None:
    s = setup_of(
        made,
        homes.table()
        + "table aliases { postmaster = alice }\n"
        + 'accept from any for domain "example.com" alias <aliases> userbase <users>'
        + " deliver to mbox\n"
        + "accept from local for any relay\n",
    )
    assert await s.resolve("postmaster@example.com") == [
        Delivery(
            "legacy-mbox", EnvelopeKind.MDA, Address("postmaster", "example.com"), mda_user="alice"
        )
    ]
    await s.reject("postmaster@example.net")
    [relayed] = await s.resolve("postmaster@example.net", local_socket())
    assert (relayed.action, relayed.kind) == ("legacy-relay", EnvelopeKind.MTA)


async def test_forward_reads_are_cached_for_a_second(
    made: list[Setup], homes: Homes, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []

    def reader(info: UserInfo) -> str | None:
        calls.append(info.username)
        return read_forward(info)

    s = setup_of(made, forward_config(homes), forward_reader=reader)
    assert users(await s.resolve(f"alice@{HOSTNAME}")) == ["alice"]
    homes.forward("alice", "bob\n")
    assert users(await s.resolve(f"alice@{HOSTNAME}")) == ["alice"]  # within the TTL
    assert calls == ["alice"]
    await trio.sleep(forwardcache.TTL)
    assert users(await s.resolve(f"alice@{HOSTNAME}")) == ["bob"]
    assert calls == ["alice", "alice", "bob"]


async def test_forward_failures_are_not_cached(made: list[Setup], homes: Homes) -> None:
    calls = 0

    def reader(info: UserInfo) -> str | None:
        nonlocal calls
        calls += 1
        raise TemporaryFailure("home directory unreachable")

    s = setup_of(made, forward_config(homes), forward_reader=reader)
    for _ in range(2):
        assert (await s.reject(f"alice@{HOSTNAME}")).reply.code == 424
    assert calls == 2


# -- SRS bounces -----------------------------------------------------------------------

SRS_NOW = 20000 * 86400.0


async def test_a_bounce_to_an_srs_address_goes_to_the_original_sender(
    made: list[Setup],
) -> None:
    s = setup_of(
        made,
        'srs key "secret"\nsrs key backup "old"\naction "out" relay\n'
        'match from any for any action "out"\n',
        clock=lambda: SRS_NOW,
    )
    bounce = remote(sender=Address("", ""))
    address = srs_encode("alice@example.org", HOSTNAME, "old", SRS_NOW)
    (delivery,) = await s.resolve(address, bounce)
    assert delivery.dest == Address("alice", "example.org") and delivery.internal
    # only bounces are decoded; a forged or expired one is matched as it is
    (kept,) = await s.resolve(address, remote())
    assert kept.dest == Address.parse(address) and not kept.internal
    forged = address.replace("alice", "mallory")
    (as_is,) = await s.resolve(forged, bounce)
    assert as_is.dest == Address.parse(forged)
    late = setup_of(made, s.config_text, clock=lambda: SRS_NOW + 5 * 86400)
    (expired,) = await late.resolve(address, bounce)
    assert expired.dest == Address.parse(address)


async def test_srs_is_not_decoded_without_a_key(made: list[Setup]) -> None:
    s = setup_of(made, 'action "out" relay\nmatch from any for any action "out"\n')
    address = srs_encode("alice@example.org", HOSTNAME, "secret", SRS_NOW)
    (delivery,) = await s.resolve(address, remote(sender=Address("", "")))
    assert delivery.dest == Address.parse(address)
