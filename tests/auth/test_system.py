"""Tests for mta.auth.system: PAM (service smtpd) and the shadow-file fallback."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from mta.auth import system
from mta.auth.check import AuthResult, authenticate
from mta.auth.hashes import make_hash
from mta.auth.system import PAM_SERVICE, check_system_user, pam_usable

TEST_USER = "mta-test-auth"
TEST_PASSWORD = "Corr3ct horse battery"


def test_pam_service_name_is_opensmtpds() -> None:
    assert PAM_SERVICE == "smtpd"


# -- the shadow fallback (PAM not usable) ----------------------------------------


@pytest.fixture
def shadow(tmp_path: Path) -> str:
    path = tmp_path / "shadow"
    path.write_text(
        "root:*:19000:0:99999:7:::\n"
        f"alice:{make_hash('wonderland')}:19000:0:99999:7:::\n"
        f"locked:!{make_hash('wonderland')}:19000:0:99999:7:::\n"
        "empty::19000:0:99999:7:::\n"
    )
    return str(path)


def test_shadow_good_and_bad_password(shadow: str) -> None:
    assert check_system_user("alice", "wonderland", use_pam=False, shadow=shadow) is AuthResult.OK
    assert check_system_user("alice", "Wonderland", use_pam=False, shadow=shadow) is (
        AuthResult.FAIL
    )
    # system user names are case-sensitive
    assert check_system_user("Alice", "wonderland", use_pam=False, shadow=shadow) is (
        AuthResult.FAIL
    )


@pytest.mark.parametrize("user", ["nobody-here", "locked", "empty", "root", "alice:x"])
def test_shadow_unknown_locked_or_empty_fails_after_a_hash(
    shadow: str, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def counted(hashed: str, password: str) -> bool:
        calls.append(hashed)
        return False

    monkeypatch.setattr(system, "verify_password", counted)
    for password in ("wonderland", ""):
        assert check_system_user(user, password, use_pam=False, shadow=shadow) is (AuthResult.FAIL)
    assert len(calls) == 2 and all(h.startswith("$6$") for h in calls)


def test_shadow_unreadable_is_error_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "no-shadow")
    with caplog.at_level(logging.WARNING, logger="mta"):
        result = check_system_user("alice", "wonderland", use_pam=False, shadow=missing)
    assert result is AuthResult.ERROR
    assert "PAM cannot be used" in caplog.text and missing in caplog.text


# -- PAM, with a throwaway system user ----------------------------------------------


def _root_with_useradd() -> str | None:
    if os.geteuid() != 0:
        return "creating a system user needs root"
    if not (shutil.which("useradd") and shutil.which("userdel") and shutil.which("chpasswd")):
        return "useradd/userdel/chpasswd not installed"
    if not pam_usable():
        return "libpam not loadable"
    return None


needs_system_user = pytest.mark.skipif(
    _root_with_useradd() is not None, reason=_root_with_useradd() or ""
)


def _userdel() -> None:
    subprocess.run(["userdel", TEST_USER], capture_output=True, check=False)


@pytest.fixture
def system_user() -> Iterator[str]:
    _userdel()  # left over by an interrupted run
    subprocess.run(
        ["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", TEST_USER],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            ["chpasswd"],
            input=f"{TEST_USER}:{TEST_PASSWORD}\n".encode(),
            check=True,
            capture_output=True,
        )
        yield TEST_USER
    finally:
        _userdel()


@needs_system_user
def test_pam_good_password(system_user: str) -> None:
    assert check_system_user(system_user, TEST_PASSWORD) is AuthResult.OK


@needs_system_user
async def test_pam_through_authenticate(system_user: str) -> None:
    # wrong password and unknown user each wait out PAM's failure delay: in parallel
    results: dict[str, AuthResult] = {}

    async def run(name: str, user: str, password: str) -> None:
        results[name] = await authenticate(None, user, password)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "good", system_user, TEST_PASSWORD)
        nursery.start_soon(run, "wrong", system_user, TEST_PASSWORD + "x")
        nursery.start_soon(run, "unknown", "mta-test-nobody", TEST_PASSWORD)
        nursery.start_soon(run, "nul", system_user, TEST_PASSWORD + "\0")
    assert results == {
        "good": AuthResult.OK,
        "wrong": AuthResult.FAIL,
        "unknown": AuthResult.FAIL,
        "nul": AuthResult.FAIL,
    }


@pytest.fixture
def broken_pam_service() -> Iterator[str]:
    name = "mta-test-auth-broken"
    path = Path("/etc/pam.d") / name
    # pam_exec failing to run its program is a PAM_SYSTEM_ERR
    path.write_text(
        "auth required pam_exec.so /nonexistent/mta-test\naccount required pam_permit.so\n"
    )
    try:
        yield name
    finally:
        path.unlink()


@needs_system_user
def test_pam_system_error_is_error(system_user: str, broken_pam_service: str) -> None:
    result = check_system_user(system_user, TEST_PASSWORD, service=broken_pam_service)
    assert result is AuthResult.ERROR


@needs_system_user
def test_shadow_fallback_on_the_real_shadow_file(system_user: str) -> None:
    # as root /etc/shadow is readable: the fallback checks the real entry (yescrypt on
    # current Debian, through the system crypt)
    assert check_system_user(system_user, TEST_PASSWORD, use_pam=False) is AuthResult.OK
    assert check_system_user(system_user, "nope", use_pam=False) is AuthResult.FAIL
