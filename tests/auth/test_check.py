"""Tests for mta.auth.check: AUTH against credentials tables and system users."""

from __future__ import annotations

import threading
from collections.abc import Callable

import bcrypt
import pytest
import trio
from passlib.hash import sha512_crypt  # type: ignore[import-untyped]

from mta.auth import check
from mta.auth.check import AuthResult, authenticate
from mta.auth.hashes import make_hash, verify_password
from mta.errors import TableError
from mta.tables.base import Table
from mta.tables.services import ALL_SERVICES, Service, TableType
from mta.tables.static import StaticTable

ALICE = make_hash("alice-secret")
BOB = bcrypt.hashpw(b"bob-secret", bcrypt.gensalt(4)).decode()


def credentials() -> StaticTable:
    return StaticTable("creds", entries=[("alice", ALICE), ("Bob", BOB)])


class BrokenTable(Table):
    """A backend whose every lookup fails, as a dead proc helper does."""

    backend = "broken"

    def __init__(self) -> None:
        super().__init__("broken", ALL_SERVICES & ~Service.AUTH, TableType.DYNAMIC)
        self.lookups = 0

    def _lookup(self, service: Service, key: str) -> str | None:
        self.lookups += 1
        raise TableError("table broken: helper exited")


class OffloadTable(Table):
    """A K_AUTH table (like a table-proc helper that checks passwords itself)."""

    backend = "proc"

    def __init__(self, accept: str, *, registers_auth: bool = True) -> None:
        super().__init__("offload", ALL_SERVICES, TableType.DYNAMIC)
        self.accept = accept
        self.registers_auth = registers_auth
        self.keys: list[str] = []

    def _handshake(self) -> None:
        # what ProcTable does on first use: the helper's services replace ALL_SERVICES
        if not self.registers_auth:
            self.services = Service.CREDENTIALS

    def _match(self, service: Service, key: str) -> bool:
        self.keys.append(key)
        return key == self.accept

    def match(self, service: Service, key: str) -> bool:
        self._handshake()
        return super().match(service, key)

    def _lookup(self, service: Service, key: str) -> str | None:
        return ALICE if key == "alice" else None


async def test_good_password() -> None:
    table = credentials()
    assert await authenticate(table, "alice", "alice-secret") is AuthResult.OK
    assert await authenticate(table, "bob", "bob-secret") is AuthResult.OK


async def test_username_is_case_insensitive_like_table_keys() -> None:
    assert await authenticate(credentials(), "ALICE", "alice-secret") is AuthResult.OK


async def test_wrong_password_and_unknown_user_fail() -> None:
    table = credentials()
    assert await authenticate(table, "alice", "alice-Secret") is AuthResult.FAIL
    assert await authenticate(table, "alice", "") is AuthResult.FAIL
    assert await authenticate(table, "bob", "alice-secret") is AuthResult.FAIL
    assert await authenticate(table, "carol", "alice-secret") is AuthResult.FAIL
    assert await authenticate(table, "", "") is AuthResult.FAIL


async def test_hash_itself_is_not_a_password() -> None:
    assert await authenticate(credentials(), "alice", ALICE) is AuthResult.FAIL


async def test_table_error_is_error() -> None:
    table = BrokenTable()
    assert await authenticate(table, "alice", "alice-secret") is AuthResult.ERROR
    assert table.lookups == 1


async def test_over_long_username_fails_without_a_table_error() -> None:
    assert await authenticate(credentials(), "a" * 5000, "x") is AuthResult.FAIL


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []
    real: Callable[[str, str], bool] = verify_password

    def counted(hashed: str, password: str) -> bool:
        calls.append((hashed, threading.get_ident()))
        return real(hashed, password)

    monkeypatch.setattr(check, "verify_password", counted)
    return calls


async def test_unknown_user_takes_the_wrong_password_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _counting(monkeypatch)
    slow = sha512_crypt.using(rounds=9000).hash("x")
    table = StaticTable("creds", entries=[("dave", slow)])
    main = threading.get_ident()

    assert await authenticate(table, "dave", "wrong") is AuthResult.FAIL
    assert [h for h, _ in calls] == [slow]
    calls.clear()
    assert await authenticate(table, "nobody", "wrong") is AuthResult.FAIL
    # one hash check, in a worker thread, of the same scheme and cost as the real one
    assert len(calls) == 1
    dummy, thread = calls[0]
    assert dummy.startswith("$6$rounds=9000$") and dummy != slow
    assert thread != main


async def test_unknown_user_before_any_known_one_uses_default_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _counting(monkeypatch)
    table = StaticTable("creds", entries=[("dave", BOB)])
    assert await authenticate(table, "nobody", "x") is AuthResult.FAIL
    assert len(calls) == 1 and calls[0][0].startswith("$6$")
    assert await authenticate(table, "dave", "x") is AuthResult.FAIL
    assert await authenticate(table, "nobody", "x") is AuthResult.FAIL
    assert calls[-1][0].startswith("$2b$04$")


async def test_hashing_does_not_block_other_tasks() -> None:
    slow = bcrypt.hashpw(b"pw", bcrypt.gensalt(12)).decode()  # a few hundred ms
    table = StaticTable("creds", entries=[("eve", slow)])
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await trio.sleep(0.005)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.sleep(0)
        before = ticks
        assert await authenticate(table, "eve", "pw") is AuthResult.OK
        during = ticks - before
        done = True
    assert during >= 3


async def test_auth_offload_table() -> None:
    table = OffloadTable("alice:s3cret")
    assert await authenticate(table, "alice", "s3cret") is AuthResult.OK
    assert await authenticate(table, "alice", "other") is AuthResult.FAIL
    # keys are lowercased before the lookup, password included, as OpenSMTPD does
    assert table.keys == ["alice:s3cret", "alice:other"]


async def test_helper_without_auth_falls_back_to_credentials() -> None:
    table = OffloadTable("", registers_auth=False)
    assert await authenticate(table, "alice", "alice-secret") is AuthResult.OK
    assert await authenticate(table, "alice", "nope") is AuthResult.FAIL
    assert table.keys == []


async def test_system_users_when_no_table(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, int]] = []

    def fake(username: str, password: str) -> AuthResult:
        seen.append((username, password, threading.get_ident()))
        return AuthResult.ERROR

    monkeypatch.setattr(check, "check_system_user", fake)
    assert await authenticate(None, "root", "pw") is AuthResult.ERROR
    assert seen[0][:2] == ("root", "pw") and seen[0][2] != threading.get_ident()
