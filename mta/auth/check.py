"""SMTP AUTH for a listener: a credentials table (``auth <table>``) or the
system users (``auth`` alone), as OpenSMTPD's ``lka_authenticate``.

Hashing and PAM run in worker threads so that no session waits on another's
password check; the table lookup itself runs in the caller, as every other
table lookup does.
"""

from __future__ import annotations

import os
import weakref

import trio

from mta.auth.hashes import dummy_hash, verify_password
from mta.auth.result import AuthResult
from mta.auth.system import check_system_user
from mta.errors import TableError
from mta.log import get_logger, visible
from mta.tables.base import MAX_KEY_LENGTH, Table
from mta.tables.lookups import lookup_credentials
from mta.tables.memory import MemoryTable
from mta.tables.services import Service

__all__ = ["AuthResult", "authenticate"]

log = get_logger("smtp")

# worker threads per trio run: hashing is CPU-bound; PAM mostly sleeps (fail delays)
_HASH_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("hash")
_SYSTEM_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("system")
SYSTEM_THREADS = 16

# per table, a real hash seen in it: unknown users are checked against a dummy of the
# same scheme and cost, so that their timing does not tell them apart
_seen: weakref.WeakKeyDictionary[Table, str] = weakref.WeakKeyDictionary()


def _limiter(var: trio.lowlevel.RunVar[trio.CapacityLimiter], size: int) -> trio.CapacityLimiter:
    try:
        return var.get()
    except LookupError:
        limiter = trio.CapacityLimiter(size)
        var.set(limiter)
        return limiter


def check_hash(stored: str | None, password: str, like: str | None = None) -> bool:
    """Blocking: ``password`` against ``stored``; with no stored hash (unknown
    user), against a dummy like ``like`` and always False."""
    if stored is None:
        verify_password(dummy_hash(like), password)
        return False
    return verify_password(stored, password)


def _offload(table: Table, username: str, password: str) -> bool | None:
    """K_AUTH (a proc table checking ``user:password`` itself, key lowercased as
    OpenSMTPD does); None when the table turns out not to offer it."""
    try:
        return table.match(Service.AUTH, f"{username}:{password}")
    except TableError:
        if Service.AUTH & table.services:
            raise
        return None  # the helper registered its services: no AUTH after all


def _lookup(table: Table, username: str, password: str) -> AuthResult | str | None:
    """The verdict of a table that checks passwords itself, else the stored hash
    of ``username`` (None: unknown user).  Raises TableError."""
    if Service.AUTH & table.services:
        offloaded = _offload(table, username, password)
        if offloaded is not None:
            return AuthResult.OK if offloaded else AuthResult.FAIL
    if len(username) > MAX_KEY_LENGTH:
        return None
    credentials = lookup_credentials(table, username)
    return credentials.password if credentials is not None else None


async def authenticate(table: Table | None, username: str, password: str) -> AuthResult:
    """Check ``username``/``password``: against the K_CREDENTIALS ``table``
    (crypt hashes), or the system users when ``table`` is None."""
    if table is None:
        return await trio.to_thread.run_sync(
            check_system_user,
            username,
            password,
            limiter=_limiter(_SYSTEM_LIMITER, SYSTEM_THREADS),
        )
    try:
        if isinstance(table, MemoryTable):
            found = _lookup(table, username, password)
        else:
            # a helper process or a file may be slow: never stall other sessions
            found = await trio.to_thread.run_sync(_lookup, table, username, password)
    except TableError as exc:
        log.warning(
            "smtp authentication lookup failed in table %s for user %s: %s",
            table.name,
            visible(username),
            visible(str(exc)),
        )
        return AuthResult.ERROR
    if isinstance(found, AuthResult):
        return found
    stored = found
    like = _seen.get(table)
    if stored is not None and stored != like:
        _seen[table] = stored
    ok = await trio.to_thread.run_sync(
        check_hash,
        stored,
        password,
        like,
        limiter=_limiter(_HASH_LIMITER, max(2, os.cpu_count() or 2)),
    )
    return AuthResult.OK if ok else AuthResult.FAIL
