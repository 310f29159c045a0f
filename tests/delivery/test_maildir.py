"""Tests of the maildir delivery: contents, unique names, junk, folders, links, failures."""

from __future__ import annotations

import errno
import itertools
import mailbox
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.delivery import maildir
from mta.delivery.fsidentity import run_with_fs_identity
from mta.delivery.maildir import (
    LineNormalizer,
    deliver_maildir,
    delivery_headers,
    folder_name,
    is_junk_line,
)
from mta.delivery.result import Outcome
from mta.delivery.tmpsweep import TmpSweep
from mta.errors import PermanentFailure, TemporaryFailure
from mta.tables.values import UserInfo

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"From here on, a line that starts with From.\r\n"
    b".\r\n"
)


def lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def read_maildir(root: Path) -> mailbox.Maildir:
    return mailbox.Maildir(str(root), factory=None, create=False)


def entries(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def spam(header: bytes) -> list[bytes]:
    return [b"Subject: x\r\n", header + b"\r\n", b"\r\nbody\r\n"]


# --- contents ---------------------------------------------------------------


def test_delivers_into_new_with_headers_and_lf(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    prepend = delivery_headers("alice@example.org", "bob@example.net")
    final = deliver_maildir(str(root), [MESSAGE], prepend=prepend, hostname="mx")
    assert os.path.dirname(final) == str(root / "new")
    assert entries(root / "tmp") == []
    assert entries(root / "cur") == []
    data = Path(final).read_bytes()
    assert data == b"Return-Path: <alice@example.org>\nDelivered-To: bob@example.net\n" + lf(
        MESSAGE
    )
    box = read_maildir(root)
    assert len(box) == 1
    key = next(iter(box.keys()))
    assert box.get_bytes(key) == data
    msg = box.get_message(key)
    assert msg["Return-Path"] == "<alice@example.org>"
    assert msg["Delivered-To"] == "bob@example.net"
    assert msg["Subject"] == "hello"
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o600


def test_null_sender_gets_no_return_path() -> None:
    assert delivery_headers("", "bob@example.net") == b"Delivered-To: bob@example.net\n"
    assert delivery_headers("a@b\r\n", "c@d") == b"Return-Path: <a@b>\nDelivered-To: c@d\n"


def test_creates_root_parents_and_subdirs_0700(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "Maildir"
    deliver_maildir(str(root), [MESSAGE])
    for d in (tmp_path / "a", tmp_path / "a" / "b", root, root / "tmp", root / "new", root / "cur"):
        assert d.is_dir()
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert not (root / ".Junk").exists()


def test_existing_directory_modes_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    root.mkdir(mode=0o750)
    os.chmod(root, 0o750)
    deliver_maildir(str(root), [MESSAGE])
    assert stat.S_IMODE(root.stat().st_mode) == 0o750


def test_owner_given_to_what_is_created(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    root = tmp_path / "home" / "Maildir"
    final = deliver_maildir(str(root), [MESSAGE], owner=(4321, 8765), junk=True)
    for p in (tmp_path / "home", root, root / "new", root / ".Junk", root / ".Junk" / "tmp"):
        assert (p.stat().st_uid, p.stat().st_gid) == (4321, 8765)
    assert (os.stat(final).st_uid, os.stat(final).st_gid) == (4321, 8765)
    assert tmp_path.stat().st_uid == os.geteuid()


def test_parents_need_search_permission_only(shared: Path) -> None:
    """A parent the user may cross but not list (``/home`` mode 0711) is no
    obstacle, as it is none to the kernel's own path lookup."""
    crossed = shared / "crossed"
    box = crossed / "box"
    box.mkdir(parents=True)
    box.chmod(0o1777)
    if os.geteuid() != 0:
        crossed.chmod(0o311)  # no read permission, even for its owner
        try:
            final = deliver_maildir(str(box / "Maildir"), [MESSAGE])
        finally:
            crossed.chmod(0o755)
        assert os.path.exists(final)
        return
    crossed.chmod(0o711)  # root reads every directory: deliver as another user
    delivered: list[str] = []
    result = trio.run(
        run_with_fs_identity,
        UserInfo("nobody", 65534, 65534, "/nonexistent"),
        lambda: delivered.append(deliver_maildir(str(box / "Maildir"), [MESSAGE])),
    )
    assert result.outcome is Outcome.OK, result.text
    assert os.stat(delivered[0]).st_uid == 65534


def test_line_endings(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    chunks = [b"A: b\r", b"\n\r\nx\ry\r\r\n", b"no newline at the end"]
    final = deliver_maildir(str(root), chunks)
    assert Path(final).read_bytes() == b"A: b\n\nx\ry\r\nno newline at the end\n"


def test_empty_message(tmp_path: Path) -> None:
    final = deliver_maildir(str(tmp_path / "M"), [])
    assert Path(final).read_bytes() == b""


def test_large_message_streamed(tmp_path: Path) -> None:
    lines = [b"Subject: big\r\n", b"\r\n"]
    lines += [b"line %07d " % i + b"x" * (i % 97) + b"\r\n" for i in range(60_000)]
    message = b"".join(lines)
    consumed = 0

    def chunks() -> Iterator[bytes]:
        nonlocal consumed
        pos, size = 0, 1
        while pos < len(message):
            yield message[pos : pos + size]
            consumed += 1
            pos += size
            size = size * 7 % 1013 + 1  # odd sizes: CR and LF often in different chunks

    final = deliver_maildir(str(tmp_path / "M"), chunks())
    assert consumed > 5000
    assert Path(final).read_bytes() == lf(message)


# --- unique names -------------------------------------------------------------


def test_unique_names_under_many_deliveries(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    paths: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(25):
            p = deliver_maildir(str(root), [b"X-N: %d-%d\r\n\r\nbody\r\n" % (n, i)])
            with lock:
                paths.append(p)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 200
    assert len(entries(root / "new")) == 200
    assert entries(root / "tmp") == []
    box = read_maildir(root)
    assert sorted(box.get_message(k)["X-N"] for k in box.iterkeys()) == sorted(
        f"{n}-{i}" for n in range(8) for i in range(25)
    )


def test_unique_name_format_and_hostname_escaping(tmp_path: Path) -> None:
    final = deliver_maildir(str(tmp_path / "M"), [MESSAGE], hostname="mx/1:2.example")
    name = os.path.basename(final)
    assert re.fullmatch(
        rf"\d+\.M\d+P{os.getpid()}Q\d+R[0-9a-f]{{16}}\.mx\\0571\\0722\.example", name
    ), name


def test_never_overwrites_an_existing_name(tmp_path: Path, monkeypatch: Any) -> None:
    root = tmp_path / "M"
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True)
    (root / "new" / "n1").write_bytes(b"already there")
    names = iter(["n1", "n2"])
    monkeypatch.setattr(maildir, "_unique_name", lambda host: next(names))
    final = deliver_maildir(str(root), [MESSAGE])
    assert final == str(root / "new" / "n2")
    assert (root / "new" / "n1").read_bytes() == b"already there"
    assert entries(root / "tmp") == []


def test_existing_tmp_name_is_neither_reused_nor_followed(tmp_path: Path, monkeypatch: Any) -> None:
    root = tmp_path / "M"
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True)
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    (root / "tmp" / "s1").symlink_to(target)
    names = iter(["s1", "s2"])
    monkeypatch.setattr(maildir, "_unique_name", lambda host: next(names))
    final = deliver_maildir(str(root), [MESSAGE])
    assert final == str(root / "new" / "s2")
    assert target.read_bytes() == b"precious"


def test_without_hard_links_renames(tmp_path: Path, monkeypatch: Any) -> None:
    def no_link(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    root = tmp_path / "M"
    final = deliver_maildir(str(root), [MESSAGE])
    assert Path(final).read_bytes() == lf(MESSAGE)
    assert entries(root / "tmp") == []


# --- junk ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "is_spam"),
    [
        (b"X-Spam: yes", True),
        (b"X-Spam: YES", True),
        (b"x-spam: Yes", True),
        (b"X-Spam-Flag: YES", True),
        (b"x-spam-flag: yes", True),
        (b"X-Spam: no", False),
        (b"X-Spam:yes", False),
        (b"X-Spam:  yes", False),
        (b"X-Spam: yes ", False),
        (b"X-Spam: yes, score=9.1", False),
        (b"X-Spam-Status: Yes", False),
        (b"X-Spam-Score: 12", False),
        (b"X-Spam:\r\n yes", False),  # folded: not OpenSMTPD's whole-line match
    ],
)
def test_junk_header_variants(tmp_path: Path, header: bytes, is_spam: bool) -> None:
    root = tmp_path / "Maildir"
    final = deliver_maildir(str(root), spam(header), junk=True)
    expected = root / ".Junk" / "new" if is_spam else root / "new"
    assert os.path.dirname(final) == str(expected)
    junk_box = read_maildir(root).get_folder("Junk")
    assert len(junk_box) == (1 if is_spam else 0)
    assert len(read_maildir(root)) == (0 if is_spam else 1)


def test_junk_off_ignores_x_spam(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    final = deliver_maildir(str(root), spam(b"X-Spam: yes"))
    assert os.path.dirname(final) == str(root / "new")
    assert not (root / ".Junk").exists()


def test_junk_folder_created_even_for_ham(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(str(root), [MESSAGE], junk=True)
    for sub in ("tmp", "new", "cur"):
        assert (root / ".Junk" / sub).is_dir()
    assert read_maildir(root).list_folders() == ["Junk"]


def test_x_spam_in_body_is_not_junk(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    final = deliver_maildir(str(root), [b"Subject: x\r\n\r\nX-Spam: yes\r\n"], junk=True)
    assert os.path.dirname(final) == str(root / "new")


def test_junk_header_split_across_chunks(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    chunks = [b"Subject: x\r\nX-Sp", b"am: y", b"es\r", b"\n\r\nbody\r\n"]
    final = deliver_maildir(str(root), chunks, junk=True)
    assert os.path.dirname(final) == str(root / ".Junk" / "new")


def test_is_junk_line() -> None:
    assert is_junk_line(b"X-SPAM: yes")
    assert not is_junk_line(b"X-Spam: yes\r")


# --- sub-address folders ------------------------------------------------------


def test_folder_used_when_it_exists(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    (root / ".lists").mkdir(parents=True)
    final = deliver_maildir(str(root), [MESSAGE], folder="lists")
    assert os.path.dirname(final) == str(root / ".lists" / "new")
    assert len(read_maildir(root).get_folder("lists")) == 1


def test_missing_folder_means_root(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    final = deliver_maildir(str(root), [MESSAGE], folder="nothere")
    assert os.path.dirname(final) == str(root / "new")
    assert not (root / ".nothere").exists()


def test_folder_name_escaping() -> None:
    assert folder_name("a/b") == ".a:b"
    assert folder_name("x!#$%&'*/?^`{|}~") == ".x" + ":" * 15
    assert folder_name(".") is None  # would be "..", the parent
    assert folder_name("") is None
    assert folder_name("..") == "..."
    assert folder_name("a\0b") is None


def test_dot_folder_does_not_escape(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    final = deliver_maildir(str(root), [MESSAGE], folder=".")
    assert os.path.dirname(final) == str(root / "new")
    assert not (tmp_path / "new").exists()


def test_junk_from_a_folder_goes_to_root_junk(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    (root / ".lists").mkdir(parents=True)
    final = deliver_maildir(str(root), spam(b"X-Spam: yes"), folder="lists", junk=True)
    assert os.path.dirname(final) == str(root / ".Junk" / "new")
    assert entries(root / ".lists" / "tmp") == []


# --- paths and symbolic links ---------------------------------------------------


@pytest.mark.parametrize("root", ["Maildir", "./Maildir", "/var/mail/../../etc/Maildir", "/"])
def test_bad_roots_are_permanent(root: str) -> None:
    with pytest.raises(PermanentFailure):
        deliver_maildir(root, [MESSAGE])


def test_name_too_long_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentFailure, match="too long"):
        deliver_maildir(str(tmp_path / ("x" * 300)), [MESSAGE])


@pytest.mark.parametrize("sub", ["tmp", "new", "cur"])
def test_symlinked_subdirectory_refused(tmp_path: Path, sub: str) -> None:
    root = tmp_path / "Maildir"
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    for s in ("tmp", "new", "cur"):
        if s == sub:
            (root / s).symlink_to(outside)
        else:
            (root / s).mkdir()
    with pytest.raises(TemporaryFailure, match="symbolic link"):
        deliver_maildir(str(root), [MESSAGE])
    assert entries(outside) == []
    for s in ("tmp", "new"):
        if s != sub:
            assert entries(root / s) == []


def test_symlinked_junk_folder_refused(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    outside = tmp_path / "outside"
    for s in ("tmp", "new", "cur"):
        (outside / s).mkdir(parents=True)
        (root / s).mkdir(parents=True)
    (root / ".Junk").symlink_to(outside)
    with pytest.raises(TemporaryFailure, match="symbolic link"):
        deliver_maildir(str(root), spam(b"X-Spam: yes"), junk=True)
    assert entries(outside / "new") == []


def test_symlinked_folder_refused(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / ".lists").symlink_to(outside)
    with pytest.raises(TemporaryFailure, match="symbolic link"):
        deliver_maildir(str(root), [MESSAGE], folder="lists")
    assert entries(outside) == []


def test_confine_refuses_links_below_it(tmp_path: Path) -> None:
    base = tmp_path / "vmail"
    outside = tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (base / "example.org").symlink_to(outside)
    root = base / "example.org" / "bob"
    with pytest.raises(TemporaryFailure, match="symbolic link"):
        deliver_maildir(str(root), [MESSAGE], confine=str(base))
    assert entries(outside) == []
    # Without confine, the links of the root's path are followed (~/Maildir may be one).
    final = deliver_maildir(str(root), [MESSAGE])
    assert os.path.realpath(final).startswith(str(outside))


def test_confine_follows_links_above_it(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "home").symlink_to(real)
    root = tmp_path / "home" / "Maildir"
    final = deliver_maildir(str(root), [MESSAGE], confine=str(tmp_path / "home"))
    assert (real / "Maildir" / "new" / os.path.basename(final)).exists()


def test_confine_is_created_when_missing(tmp_path: Path) -> None:
    # maildir "/var/vmail/%{rcpt.domain}/..." on a fresh machine: /var/vmail is made too
    base = tmp_path / "vmail" / "boxes"
    root = base / "example.org" / "bob"
    final = deliver_maildir(str(root), [MESSAGE], confine=str(base))
    assert os.path.dirname(final) == str(root / "new")
    assert stat.S_IMODE(base.stat().st_mode) == 0o700


def test_root_outside_confine_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentFailure, match="not under"):
        deliver_maildir(str(tmp_path / "a" / "M"), [MESSAGE], confine=str(tmp_path / "b"))


def test_file_where_a_directory_should_be(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    root.mkdir()
    (root / "new").write_bytes(b"")
    with pytest.raises(TemporaryFailure):
        deliver_maildir(str(root), [MESSAGE])


# --- failures -----------------------------------------------------------------


def big_message(n: int = 20_000) -> list[bytes]:
    return [b"Subject: big\r\n\r\n"] + [b"%06d " % i + b"y" * 60 + b"\r\n" for i in range(n)]


def test_disk_full_mid_message_leaves_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(str(root), [MESSAGE])  # the maildir exists
    before = entries(root / "new")
    real_write = os.write
    calls = 0

    def failing_write(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(TemporaryFailure, match="No space left"):
        deliver_maildir(str(root), big_message())
    assert calls == 3
    assert entries(root / "tmp") == []
    assert entries(root / "new") == before


@pytest.mark.parametrize("code", [errno.EROFS, errno.EDQUOT, errno.EIO, errno.EACCES])
def test_read_only_or_full_maildir_is_temporary(
    tmp_path: Path, monkeypatch: Any, code: int
) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(str(root), [MESSAGE])
    real_open = os.open

    def failing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(TemporaryFailure):
        deliver_maildir(str(root), [MESSAGE])
    assert entries(root / "tmp") == []


def test_read_only_filesystem_when_creating_the_maildir(tmp_path: Path, monkeypatch: Any) -> None:
    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(TemporaryFailure, match="Read-only"):
        deliver_maildir(str(tmp_path / "Maildir"), [MESSAGE])


def test_quota_at_fsync_leaves_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(str(root), [MESSAGE])
    before = entries(root / "new")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(TemporaryFailure, match="quota"):
        deliver_maildir(str(root), [MESSAGE])
    assert entries(root / "tmp") == []
    assert entries(root / "new") == before


def test_new_fsync_failure_removes_the_delivered_link(tmp_path: Path, monkeypatch: Any) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(str(root), [MESSAGE])
    before = entries(root / "new")
    real_fsync = os.fsync

    def failing_dir_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_dir_fsync)
    with pytest.raises(TemporaryFailure, match="Input/output"):
        deliver_maildir(str(root), [MESSAGE])
    assert entries(root / "tmp") == []
    assert entries(root / "new") == before


def test_reading_the_message_fails(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"

    def chunks() -> Iterator[bytes]:
        yield b"Subject: x\r\n"
        raise OSError(errno.EIO, "spool read error")

    with pytest.raises(TemporaryFailure, match="reading the message"):
        deliver_maildir(str(root), chunks())
    assert entries(root / "tmp") == []
    assert entries(root / "new") == []


def test_other_exceptions_propagate_after_cleanup(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"

    def chunks() -> Iterator[bytes]:
        yield b"Subject: x\r\n"
        raise KeyError("boom")

    with pytest.raises(KeyError):
        deliver_maildir(str(root), chunks())
    assert entries(root / "tmp") == []


def test_fsync_order(tmp_path: Path, monkeypatch: Any) -> None:
    root = tmp_path / "Maildir"
    deliver_maildir(str(root), [MESSAGE])
    new_ino = (root / "new").stat().st_ino
    events: list[tuple[str, Any]] = []
    real_fsync, real_link, real_unlink = os.fsync, os.link, os.unlink

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        kind = "new/" if st.st_ino == new_ino else "dir" if stat.S_ISDIR(st.st_mode) else "file"
        events.append(("fsync", kind))
        real_fsync(fd)

    def link(src: Any, dst: Any, **kwargs: Any) -> None:
        events.append(("link", None))
        real_link(src, dst, **kwargs)

    def unlink(path: Any, **kwargs: Any) -> None:
        events.append(("unlink", None))
        real_unlink(path, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "unlink", unlink)
    deliver_maildir(str(root), [MESSAGE])
    assert events == [("fsync", "file"), ("link", None), ("fsync", "new/"), ("unlink", None)]


def test_created_directories_are_fsynced_into_their_parents(
    tmp_path: Path, monkeypatch: Any
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    root = tmp_path / "Maildir"
    deliver_maildir(str(root), [MESSAGE])
    assert tmp_path.stat().st_ino in synced
    assert root.stat().st_ino in synced


# --- stale tmp/ files ----------------------------------------------------------

_DAYS_AGO = 3 * 86400


def plant(tmp: Path, name: str, age: float) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    path.write_bytes(b"left by a killed delivery")
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_sweep_cleans_every_tmp_the_delivery_opened(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for sub in ("cur", "new"):
        (root / ".lists" / sub).mkdir(parents=True)
    stale = [plant(root / d / "tmp", "1.M1P1Q1.old", _DAYS_AGO) for d in (".", ".Junk", ".lists")]
    fresh = plant(root / "tmp", "2.M2P2Q2.new", 60)
    sweep = TmpSweep(time.time())
    final = deliver_maildir(str(root), [MESSAGE], junk=True, folder="lists", sweep=sweep)
    assert os.path.dirname(final) == str(root / ".lists" / "new")
    assert not any(path.exists() for path in stale)
    assert fresh.exists()
    assert sorted(s.path for s in sweep.removed) == sorted(str(p) for p in stale)
    assert all(s.age > _DAYS_AGO - 60 for s in sweep.removed)
    assert sweep.errors == []


def test_without_a_sweep_tmp_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    stale = plant(root / "tmp", "1.M1P1Q1.old", _DAYS_AGO)
    deliver_maildir(str(root), [MESSAGE])
    assert stale.exists()


def test_sweep_after_a_failed_delivery_keeps_its_failure(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    stale = plant(root / "tmp", "1.M1P1Q1.old", _DAYS_AGO)

    def chunks() -> Iterator[bytes]:
        yield b"Subject: x\r\n"
        raise OSError(errno.EIO, "spool read error")

    sweep = TmpSweep(time.time())
    with pytest.raises(TemporaryFailure, match="reading the message"):
        deliver_maildir(str(root), chunks(), sweep=sweep)
    assert entries(root / "tmp") == []  # its own file, and the stale one
    assert [s.path for s in sweep.removed] == [str(stale)]


def test_a_failing_sweep_never_fails_the_delivery(tmp_path: Path, monkeypatch: Any) -> None:
    root = tmp_path / "Maildir"

    def broken(fd: int) -> Any:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "scandir", broken)
    sweep = TmpSweep(time.time())
    final = deliver_maildir(str(root), [MESSAGE], sweep=sweep)
    assert Path(final).exists()
    assert sweep.errors == [f"{root}/tmp: Input/output error"]


# --- the line normalizer -----------------------------------------------------------


def reference(data: bytes, *, escape_from: bool) -> tuple[bytes, bool]:
    """OpenSMTPD's line-at-a-time processing: strip one CR before LF, add a last LF."""
    if not data:
        return b"", False
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    out = []
    junk, in_headers = False, True
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        if in_headers:
            if not line:
                in_headers = False
            elif line.lower() in (b"x-spam: yes", b"x-spam-flag: yes"):
                junk = True
        if escape_from and line.startswith(b"From "):
            line = b">" + line
        out.append(line + b"\n")
    return b"".join(out), junk


_PIECES = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b"From ", b"From", b" ", b"x", b"X-Spam: yes", b"X-Spam-Flag: YES"]
)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(_PIECES, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    escape_from=st.booleans(),
    max_carry=st.sampled_from([17, 20, 64 * 1024]),
)
def test_normalizer_matches_line_at_a_time(
    pieces: list[bytes], cuts: list[int], escape_from: bool, max_carry: int
) -> None:
    data = b"".join(pieces)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(maildir, "_MAX_CARRY", max_carry)
        normalizer = LineNormalizer(escape_from=escape_from, scan_junk=True)
        out = b"".join(normalizer.feed(c) for c in chunks) + normalizer.finish()
    expected, junk = reference(data, escape_from=escape_from)
    assert out == expected
    assert normalizer.junk == junk
