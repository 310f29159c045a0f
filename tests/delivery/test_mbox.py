"""Tests of the mbox delivery: format, escaping, locking, concurrency, failures."""

from __future__ import annotations

import errno
import fcntl
import mailbox
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mta.delivery.maildir import delivery_headers
from mta.delivery.mbox import deliver_mbox, from_line, mailbox_path, spool_groups
from mta.errors import PermanentFailure, TemporaryFailure

NOW = 1_700_000_000.0
MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"From the start of a paragraph.\r\n"
    b"From the middle of one.\r\n"
    b">From already quoted.\r\n"
    b"\r\n"
    b"From again\r\n"
    b"Not From here.\r\n"
)
ESCAPED = (
    b"From: Alice <alice@example.org>\n"
    b"Subject: hello\n"
    b"\n"
    b">From the start of a paragraph.\n"
    b">From the middle of one.\n"
    b">From already quoted.\n"
    b"\n"
    b">From again\n"
    b"Not From here.\n"
)


def contents(path: Path) -> list[bytes]:
    """Every message of the mbox, as Python's mailbox reads it."""
    box = mailbox.mbox(str(path), factory=None, create=False)
    try:
        return [box.get_bytes(k) for k in box.iterkeys()]
    finally:
        box.close()


def messages(path: Path) -> list[mailbox.mboxMessage]:
    box = mailbox.mbox(str(path), factory=None, create=False)
    try:
        return [box.get_message(k) for k in box.iterkeys()]
    finally:
        box.close()


def ctime(now: float) -> str:
    return time.ctime(now)


# --- format -------------------------------------------------------------------


def test_appends_from_line_headers_message_and_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    prepend = delivery_headers("alice@example.org", "bob@example.net")
    deliver_mbox(str(path), [MESSAGE], sender="alice@example.org", prepend=prepend, now=NOW)
    expected_body = b"Return-Path: <alice@example.org>\nDelivered-To: bob@example.net\n" + ESCAPED
    assert path.read_bytes() == (
        f"From alice@example.org {ctime(NOW)}\n".encode() + expected_body + b"\n"
    )
    assert contents(path) == [expected_body]
    [msg] = messages(path)
    assert msg.get_from() == f"alice@example.org {ctime(NOW)}"
    assert msg["Return-Path"] == "<alice@example.org>"
    assert msg["Delivered-To"] == "bob@example.net"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "bob.lock").exists()


def test_null_sender_is_mailer_daemon(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="", now=NOW)
    assert [m.get_from() for m in messages(path)] == [f"MAILER-DAEMON {ctime(NOW)}"]


def test_from_line() -> None:
    assert from_line("a@b", 0.0) == f"From a@b {time.ctime(0.0)}\n".encode()
    assert from_line("a\nb@c", 0.0).startswith(b"From a_b@c ")
    # ctime(3)'s format, in local time: the day of the month padded with a space.
    march_5 = time.mktime((2024, 3, 5, 12, 0, 0, 0, 0, -1))
    assert from_line("", march_5) == b"From MAILER-DAEMON Tue Mar  5 12:00:00 2024\n"


def test_escaping_round_trips_through_mailbox(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    for _ in range(3):
        deliver_mbox(str(path), [MESSAGE], sender="a@b", now=NOW)
    assert contents(path) == [ESCAPED] * 3


def test_message_ending_with_blank_line_and_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [b"A: b\r\n\r\nbody\r\n\r\n"], sender="a@b", now=NOW)
    deliver_mbox(str(path), [b"A: b\r\n\r\nno newline"], sender="a@b", now=NOW)
    deliver_mbox(str(path), [], sender="a@b", now=NOW)
    assert contents(path) == [b"A: b\n\nbody\n\n", b"A: b\n\nno newline\n", b""]


def test_foreign_unterminated_last_line_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    path.write_bytes(b"From x Thu Jan  1 00:00:00 1970\nA: b\n\ncut short")
    os.chmod(path, 0o600)
    deliver_mbox(str(path), [MESSAGE], sender="a@b", now=NOW)
    assert contents(path) == [b"A: b\n\ncut short\n", ESCAPED]


def test_large_message_streamed(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    lines = [b"Subject: big\r\n", b"\r\n"]
    for i in range(50_000):
        lines.append(
            b"From line %d\r\n" % i if i % 1000 == 0 else b"%07d " % i + b"z" * 70 + b"\r\n"
        )
    message = b"".join(lines)

    def chunks() -> Iterator[bytes]:
        for pos in range(0, len(message), 777):
            yield message[pos : pos + 777]

    deliver_mbox(str(path), chunks(), sender="a@b", now=NOW)
    expected = message.replace(b"\r\n", b"\n").replace(b"\nFrom line", b"\n>From line")
    assert contents(path) == [expected]


# --- paths --------------------------------------------------------------------


def test_mailbox_path() -> None:
    assert mailbox_path("bob") == "/var/mail/bob"
    assert mailbox_path("bob", "/srv/spool/") == "/srv/spool/bob"
    for bad in ("", ".", "..", "a/b", "../etc/passwd", "a\0b", "a\nb", "bob.lock"):
        with pytest.raises(PermanentFailure):
            mailbox_path(bad)


@pytest.mark.parametrize("path", ["bob", "./bob", "/var/mail/../../etc/bob", "/"])
def test_bad_paths_are_permanent(path: str) -> None:
    with pytest.raises(PermanentFailure):
        deliver_mbox(path, [MESSAGE], sender="a@b")


def test_missing_directory_is_temporary(tmp_path: Path) -> None:
    with pytest.raises(TemporaryFailure, match="No such file"):
        deliver_mbox(str(tmp_path / "nope" / "bob"), [MESSAGE], sender="a@b")


def test_owner_of_a_new_mailbox(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b", owner=(4321, 8765))
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 8765)
    os.chown(path, 0, 0)
    deliver_mbox(str(path), [MESSAGE], sender="a@b", owner=(4321, 8765))
    assert path.stat().st_uid == 0  # only a mailbox created here is given away


def test_symlinked_mailbox_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    path = tmp_path / "bob"
    path.symlink_to(target)
    with pytest.raises(TemporaryFailure, match="linked or special"):
        deliver_mbox(str(path), [MESSAGE], sender="a@b")
    assert target.read_bytes() == b"precious"
    assert not (tmp_path / "bob.lock").exists()


def test_dangling_symlink_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    path.symlink_to(tmp_path / "created-elsewhere")
    with pytest.raises(TemporaryFailure):
        deliver_mbox(str(path), [MESSAGE], sender="a@b")
    assert not (tmp_path / "created-elsewhere").exists()


def test_hard_linked_mailbox_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_bytes(b"")
    os.link(other, tmp_path / "bob")
    with pytest.raises(TemporaryFailure, match="linked or special"):
        deliver_mbox(str(tmp_path / "bob"), [MESSAGE], sender="a@b")
    assert other.read_bytes() == b""


def test_fifo_and_directory_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name in ("fifo", "dir"):
        with pytest.raises(TemporaryFailure, match="linked or special"):
            deliver_mbox(str(tmp_path / name), [MESSAGE], sender="a@b")


def test_world_writable_directory(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    os.chmod(spool, 0o777)
    with pytest.raises(TemporaryFailure, match="world-writable"):
        deliver_mbox(str(spool / "bob"), [MESSAGE], sender="a@b")
    os.chmod(spool, 0o1777)
    deliver_mbox(str(spool / "bob"), [MESSAGE], sender="a@b")
    assert contents(spool / "bob") == [ESCAPED]


# --- locking ------------------------------------------------------------------


def test_dotlock_taken_during_delivery(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    seen: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        seen.append((tmp_path / "bob.lock").read_bytes())
        yield MESSAGE

    deliver_mbox(str(path), chunks(), sender="a@b")
    assert seen == [f"{os.getpid()}\n".encode()]
    assert not (tmp_path / "bob.lock").exists()


def test_no_dotlock_when_disabled(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    seen: list[bool] = []

    def chunks() -> Iterator[bytes]:
        seen.append((tmp_path / "bob.lock").exists())
        yield MESSAGE

    deliver_mbox(str(path), chunks(), sender="a@b", dotlock=False)
    assert seen == [False]


def test_fresh_dotlock_times_out(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    lock = tmp_path / "bob.lock"
    lock.write_bytes(b"someone else")
    started = time.monotonic()
    with pytest.raises(TemporaryFailure, match="within"):
        deliver_mbox(str(path), [MESSAGE], sender="a@b", lock_timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert lock.read_bytes() == b"someone else"  # not ours: left alone
    assert not path.exists()


def test_stale_dotlock_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    lock = tmp_path / "bob.lock"
    lock.write_bytes(b"12345\n")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    deliver_mbox(str(path), [MESSAGE], sender="a@b", lock_timeout=1.0)
    assert contents(path) == [ESCAPED]
    assert sorted(os.listdir(tmp_path)) == ["bob"]


def test_lock_becoming_stale_while_waiting_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    (tmp_path / "bob.lock").write_bytes(b"")
    deliver_mbox(str(path), [MESSAGE], sender="a@b", lock_timeout=5.0, stale_lock_age=0.3)
    assert contents(path) == [ESCAPED]


def test_stale_symlink_dotlock_is_removed_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    lock = tmp_path / "bob.lock"
    lock.symlink_to(target)
    old = time.time() - 3600
    os.utime(lock, (old, old), follow_symlinks=False)
    deliver_mbox(str(tmp_path / "bob"), [MESSAGE], sender="a@b", lock_timeout=1.0)
    assert target.read_bytes() == b"precious"
    assert not lock.exists() and not lock.is_symlink()


HOLD_FCNTL = """
import fcntl, sys
f = open(sys.argv[1], "r+")
fcntl.lockf(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def hold_fcntl_lock(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_FCNTL, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()


def test_held_fcntl_lock_times_out(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    before = path.read_bytes()
    proc = hold_fcntl_lock(path)
    try:
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match="within"):
            deliver_mbox(str(path), [MESSAGE], sender="a@b", lock_timeout=0.4)
        assert time.monotonic() - started >= 0.4
    finally:
        release(proc)
    assert path.read_bytes() == before
    assert not (tmp_path / "bob.lock").exists()


def test_held_fcntl_lock_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    proc = hold_fcntl_lock(path)
    timer = threading.Timer(0.4, release, args=(proc,))
    timer.start()
    try:
        started = time.monotonic()
        deliver_mbox(str(path), [MESSAGE], sender="a@b", lock_timeout=20.0)
        assert time.monotonic() - started >= 0.3
    finally:
        timer.join()
    assert contents(path) == [ESCAPED, ESCAPED]


def test_held_flock_times_out(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    before = path.read_bytes()
    with open(path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(TemporaryFailure, match="within"):
            deliver_mbox(str(path), [MESSAGE], sender="a@b", lock_timeout=0.3)
    assert path.read_bytes() == before
    assert not (tmp_path / "bob.lock").exists()


TRY_LOCKS = """
import fcntl, sys
f = open(sys.argv[1], "r+")
for name, take in (("lockf", fcntl.lockf), ("flock", fcntl.flock)):
    try:
        take(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(name, "busy")
    else:
        print(name, "free")
"""


def test_other_mail_tools_see_the_locks(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    seen: list[str] = []

    def chunks() -> Iterator[bytes]:
        probe = subprocess.run(
            [sys.executable, "-c", TRY_LOCKS, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        seen.append(probe.stdout)
        yield MESSAGE

    deliver_mbox(str(path), chunks(), sender="a@b")
    assert seen == ["lockf busy\nflock busy\n"]
    probe = subprocess.run(
        [sys.executable, "-c", TRY_LOCKS, str(path)], capture_output=True, text=True, check=True
    )
    assert probe.stdout == "lockf free\nflock free\n"


def test_kernel_locks_exclude_other_threads_of_this_process(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    entered = threading.Event()
    leave = threading.Event()

    def slow() -> Iterator[bytes]:
        entered.set()
        leave.wait(10)
        yield MESSAGE

    first = threading.Thread(
        target=deliver_mbox, args=(str(path), slow()), kwargs={"sender": "a@b", "dotlock": False}
    )
    first.start()
    try:
        assert entered.wait(10)
        with pytest.raises(TemporaryFailure, match="within"):
            deliver_mbox(str(path), [MESSAGE], sender="b@c", dotlock=False, lock_timeout=0.3)
    finally:
        leave.set()
        first.join()
    assert contents(path) == [ESCAPED, ESCAPED]


def test_ofd_lock_alone_excludes_other_threads(tmp_path: Path, monkeypatch: Any) -> None:
    # Classic fcntl locks belong to the process; the open file description lock does not.
    from mta.delivery import mbox

    monkeypatch.setattr(mbox, "_try_flock", lambda fd: True)
    test_kernel_locks_exclude_other_threads_of_this_process(tmp_path)


def test_concurrent_deliveries_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    errors: list[BaseException] = []
    expected: set[bytes] = set()

    def message(n: int, i: int) -> list[bytes]:
        head = [b"Message-Id: <%d.%d@test>\r\n" % (n, i), b"\r\n"]
        return head + [b"%d.%d line %05d " % (n, i, j) + b"w" * 90 + b"\r\n" for j in range(3000)]

    for n in range(6):
        for i in range(4):
            expected.add(b"".join(message(n, i)).replace(b"\r\n", b"\n"))

    def work(n: int) -> None:
        try:
            for i in range(4):
                deliver_mbox(str(path), iter(message(n, i)), sender=f"t{n}@test")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = contents(path)
    assert len(got) == 24
    assert set(got) == expected
    assert not (tmp_path / "bob.lock").exists()


# --- failures -----------------------------------------------------------------


def big_message() -> list[bytes]:
    return [b"Subject: big\r\n\r\n"] + [b"%06d " % i + b"q" * 70 + b"\r\n" for i in range(20_000)]


def test_disk_full_mid_message_truncates_back(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    before = path.read_bytes()
    ino = path.stat().st_ino
    real_write = os.write
    calls = 0

    def failing_write(fd: int, data: Any) -> int:
        nonlocal calls
        if os.fstat(fd).st_ino == ino:
            calls += 1
            if calls == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(TemporaryFailure, match="No space left"):
        deliver_mbox(str(path), big_message(), sender="a@b")
    assert calls == 3
    assert path.read_bytes() == before
    assert not (tmp_path / "bob.lock").exists()
    monkeypatch.undo()
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    assert contents(path) == [ESCAPED, ESCAPED]


def test_fsync_failure_truncates_back(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    before = path.read_bytes()
    real_fsync = os.fsync
    failed = False

    def failing_fsync(fd: int) -> None:
        nonlocal failed
        if not failed:
            failed = True
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(TemporaryFailure, match="Input/output"):
        deliver_mbox(str(path), [MESSAGE], sender="a@b")
    assert path.read_bytes() == before


def test_reading_the_message_fails(tmp_path: Path) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    before = path.read_bytes()

    def chunks() -> Iterator[bytes]:
        yield b"Subject: x\r\n" * 10_000
        raise OSError(errno.EIO, "spool read error")

    with pytest.raises(TemporaryFailure, match="reading the message"):
        deliver_mbox(str(path), chunks(), sender="a@b")
    assert path.read_bytes() == before
    assert not (tmp_path / "bob.lock").exists()


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES])
def test_cannot_create_is_temporary(tmp_path: Path, monkeypatch: Any, code: int) -> None:
    # mail.local exits EX_CANTCREAT (permanent) here; a full or read-only spool is retried.
    real_open = os.open

    def failing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(TemporaryFailure, match=os.strerror(code)):
        deliver_mbox(str(tmp_path / "bob"), [MESSAGE], sender="a@b")
    with pytest.raises(TemporaryFailure, match=os.strerror(code)):
        deliver_mbox(str(tmp_path / "bob"), [MESSAGE], sender="a@b", dotlock=False)
    assert os.listdir(tmp_path) == []


def test_name_too_long_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentFailure, match="too long"):
        deliver_mbox(str(tmp_path / ("x" * 300)), [MESSAGE], sender="a@b", dotlock=False)


def test_fsync_before_the_locks_are_released(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "bob"
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    ino = path.stat().st_ino
    events: list[str] = []
    real_fsync, real_unlink, real_close = os.fsync, os.unlink, os.close

    def fsync(fd: int) -> None:
        events.append("fsync mbox" if os.fstat(fd).st_ino == ino else "fsync other")
        real_fsync(fd)

    def close(fd: int) -> None:
        if os.fstat(fd).st_ino == ino:
            events.append("close mbox")
        real_close(fd)

    def unlink(name: Any, **kwargs: Any) -> None:
        events.append(f"unlink {name}")
        real_unlink(name, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "close", close)
    monkeypatch.setattr(os, "unlink", unlink)
    deliver_mbox(str(path), [MESSAGE], sender="a@b")
    assert events == ["fsync mbox", "close mbox", "unlink bob.lock"]


def test_fresh_lock_taken_while_breaking_a_stale_one_is_put_back(
    tmp_path: Path, monkeypatch: Any
) -> None:
    lock = tmp_path / "bob.lock"
    lock.write_bytes(b"stale")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    real_rename = os.rename
    raced = False

    def racing_rename(src: Any, dst: Any, **kwargs: Any) -> None:
        nonlocal raced
        if src == "bob.lock" and not raced:
            # Another deliverer breaks the stale lock and takes a fresh one first.
            raced = True
            lock.unlink()
            lock.write_bytes(b"fresh")
        real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", racing_rename)
    with pytest.raises(TemporaryFailure, match="within"):
        deliver_mbox(str(tmp_path / "bob"), [MESSAGE], sender="a@b", lock_timeout=0.3)
    assert raced
    assert lock.read_bytes() == b"fresh"
    assert sorted(os.listdir(tmp_path)) == ["bob.lock"]


def test_dotlock_refreshed_while_writing(tmp_path: Path, monkeypatch: Any) -> None:
    from mta.delivery import mbox

    monkeypatch.setattr(mbox, "_TOUCH_INTERVAL", 0.0)
    lock = tmp_path / "bob.lock"
    mtimes: list[float] = []

    def chunks() -> Iterator[bytes]:
        yield b"Subject: x\r\n\r\n"
        old = time.time() - 3600
        os.utime(lock, (old, old))
        yield b"body\r\n"
        mtimes.append(lock.stat().st_mtime)
        yield b"more\r\n"

    deliver_mbox(str(tmp_path / "bob"), chunks(), sender="a@b")
    assert len(mtimes) == 1
    assert mtimes[0] > time.time() - 60


def test_spool_groups_is_the_group_of_a_group_writable_spool(tmp_path: Path) -> None:
    spool = tmp_path / "mail"
    spool.mkdir()
    group = 8 if os.geteuid() == 0 else os.getgid()  # Debian's "mail"; else our own
    os.chown(spool, -1, group)
    spool.chmod(0o2775)  # /var/mail on Debian: root:mail 2775
    expected = () if group == 0 else (group,)
    assert spool_groups(str(spool / "bob")) == expected
    spool.chmod(0o755)  # only its owner may create the lock: no group helps
    assert spool_groups(str(spool / "bob")) == ()
    assert spool_groups(str(tmp_path / "missing" / "bob")) == ()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to group 0 needs root")
def test_spool_groups_never_gives_group_root(tmp_path: Path) -> None:
    os.chown(tmp_path, -1, 0)
    tmp_path.chmod(0o775)
    assert spool_groups(str(tmp_path / "bob")) == ()
