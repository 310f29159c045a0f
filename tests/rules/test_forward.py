"""Tests for mta.rules.forward: safe reading and parsing of ~/.forward files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta.errors import TemporaryFailure
from mta.rules.forward import MAX_FORWARD_NODES, MAX_FORWARD_SIZE, parse_forward, read_forward
from mta.tables.aliasnodes import AliasAddress, AliasCommand, AliasError, AliasFile, AliasUser
from mta.tables.values import UserInfo

UID = os.getuid()


def info(home: Path, uid: int = UID) -> UserInfo:
    return UserInfo("alice", uid, uid, str(home))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "alice"
    path.mkdir(mode=0o755)
    return path


def write(home: Path, text: str, mode: int = 0o644) -> Path:
    path = home / ".forward"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_missing_file_or_home_is_no_forward(home: Path, tmp_path: Path) -> None:
    assert read_forward(info(home)) is None
    assert read_forward(info(tmp_path / "nowhere")) is None


def test_reads_text(home: Path) -> None:
    write(home, "bob@example.net\n")
    assert read_forward(info(home)) == "bob@example.net\n"
    write(home, "")
    assert read_forward(info(home)) == ""


def test_group_or_world_writable_is_refused(home: Path) -> None:
    write(home, "bob\n", 0o664)
    with pytest.raises(TemporaryFailure, match="writable"):
        read_forward(info(home))
    write(home, "bob\n", 0o646)
    with pytest.raises(TemporaryFailure, match="writable"):
        read_forward(info(home))


def test_insecure_home_is_refused(home: Path) -> None:
    write(home, "bob\n")
    home.chmod(0o777)
    try:
        with pytest.raises(TemporaryFailure):
            read_forward(info(home))
    finally:
        home.chmod(0o755)


def test_sticky_home_is_refused(home: Path) -> None:
    write(home, "bob\n")
    home.chmod(0o1755)
    with pytest.raises(TemporaryFailure, match="sticky"):
        read_forward(info(home))


def test_symbolic_link_is_refused(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("bob\n")
    (home / ".forward").symlink_to(target)
    with pytest.raises(TemporaryFailure, match="symbolic link"):
        read_forward(info(home))


def test_not_a_regular_file_is_refused(home: Path) -> None:
    (home / ".forward").mkdir()
    with pytest.raises(TemporaryFailure):
        read_forward(info(home))


@pytest.mark.skipif(UID == 0, reason="root reads any file")
def test_unreadable_is_temporary(home: Path) -> None:
    write(home, "bob\n", 0o000)
    with pytest.raises(TemporaryFailure):
        read_forward(info(home))


def test_owner_must_be_the_user(home: Path) -> None:
    write(home, "bob\n")
    other = info(home, uid=UID + 1)
    if os.geteuid() == 0:
        with pytest.raises(TemporaryFailure, match="not owned"):
            read_forward(other)
    else:
        # unprivileged, files owned by the daemon's own user are accepted too
        assert read_forward(other) == "bob\n"


def test_too_large_is_temporary(home: Path) -> None:
    write(home, "a" * (MAX_FORWARD_SIZE - 1))
    assert read_forward(info(home)) is not None
    write(home, "a" * MAX_FORWARD_SIZE)
    with pytest.raises(TemporaryFailure, match="larger"):
        read_forward(info(home))


def test_parse_entries() -> None:
    text = (
        "# my forward\n"
        "bob@example.net, \\alice\n"
        '"|/usr/bin/procmail -f-"  # filter\n'
        "/home/alice/archive, \\\n"
        "  carol\n"
        ":include:/etc/ignored\n"
        "error:550 5.1.1 go away\n"
        "bob@example.net\n"
    )
    assert parse_forward(text) == (
        AliasAddress("bob", "example.net"),
        AliasUser("alice"),
        AliasCommand("/usr/bin/procmail -f-"),
        AliasFile("/home/alice/archive"),
        AliasUser("carol"),
        AliasError(550, "5.1.1 go away"),
    )


def test_parse_comment_escape() -> None:
    assert parse_forward("a\\#b@example.net\n") == (AliasAddress("a#b", "example.net"),)


def test_parse_empty() -> None:
    assert parse_forward("") == ()
    assert parse_forward("# nothing\n\n") == ()


def test_parse_errors_are_temporary() -> None:
    with pytest.raises(TemporaryFailure):
        parse_forward('"unterminated\n')
    with pytest.raises(TemporaryFailure):
        parse_forward("not an address!\n")
    with pytest.raises(TemporaryFailure, match="destinations"):
        parse_forward("\n".join(f"user{i}" for i in range(MAX_FORWARD_NODES + 1)))
    assert len(parse_forward("\n".join(f"user{i}" for i in range(MAX_FORWARD_NODES)))) == 100


def test_home_not_a_directory_is_temporary(tmp_path: Path) -> None:
    home = tmp_path / "file"
    home.write_text("")
    with pytest.raises(TemporaryFailure):
        read_forward(info(home))
