"""Tests for mta.delivery.tmpsweep: which maildirs are due, which tmp/ files a
sweep removes (stale regular files only, nothing followed) and what is logged."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.delivery.tmpsweep import (
    STALE_AGE,
    SWEEP_INTERVAL,
    StaleFile,
    SweepSchedule,
    TmpSweep,
    describe_age,
    log_sweep,
)

NOW = 1_700_000_000.0
HOUR = 3600.0


def touch(path: Path, *, atime_ago: float, mtime_ago: float) -> None:
    os.utime(path, (NOW - atime_ago, NOW - mtime_ago), follow_symlinks=False)


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    tmp = tmp_path / "Maildir" / "tmp"
    tmp.mkdir(parents=True)
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield tmp, fd
    finally:
        os.close(fd)


def test_schedule_takes_one_turn_per_interval() -> None:
    schedule = SweepSchedule()
    assert schedule.due("/home/bob/Maildir", 100.0)
    assert not schedule.due("/home/bob/Maildir", 100.0 + SWEEP_INTERVAL - 1)
    assert schedule.due("/home/carol/Maildir", 200.0)  # each maildir its own turn
    assert schedule.due("/home/bob/Maildir", 100.0 + SWEEP_INTERVAL)
    assert not schedule.due("/home/bob/Maildir", 100.0 + SWEEP_INTERVAL + 1)


def test_schedule_is_bounded_and_forgets_the_oldest() -> None:
    schedule = SweepSchedule(limit=3)
    for n in range(5):
        assert schedule.due(f"/m{n}", float(n))
    assert len(schedule) == 3
    assert schedule.due("/m0", 10.0)  # forgotten: due again
    assert not schedule.due("/m4", 10.0)  # remembered


def test_schedule_start_gives_a_sweep_only_when_due() -> None:
    schedule = SweepSchedule()
    sweep = schedule.start("/home/bob/Maildir")
    assert sweep is not None
    assert abs(sweep.now - time.time()) < 60
    assert schedule.start("/home/bob/Maildir") is None


def test_removes_stale_regular_files_only(tmp_dir: tuple[Path, int], tmp_path: Path) -> None:
    tmp, fd = tmp_dir
    stale = tmp / "1.M1P1Q1.host"
    stale.write_bytes(b"orphan")
    touch(stale, atime_ago=40 * HOUR, mtime_ago=50 * HOUR)
    read_lately = tmp / "2.M2P2Q2.host"  # accessed recently: kept
    read_lately.write_bytes(b"x")
    touch(read_lately, atime_ago=HOUR, mtime_ago=50 * HOUR)
    fresh = tmp / "3.M3P3Q3.host"  # being written
    fresh.write_bytes(b"x")
    touch(fresh, atime_ago=0, mtime_ago=0)
    outside = tmp_path / "precious"
    outside.write_bytes(b"not in tmp/")
    touch(outside, atime_ago=50 * HOUR, mtime_ago=50 * HOUR)
    link = tmp / "link"
    link.symlink_to(outside)
    touch(link, atime_ago=50 * HOUR, mtime_ago=50 * HOUR)
    directory = tmp / "dir"
    directory.mkdir()
    (directory / "inner").write_bytes(b"x")
    touch(directory / "inner", atime_ago=50 * HOUR, mtime_ago=50 * HOUR)
    touch(directory, atime_ago=50 * HOUR, mtime_ago=50 * HOUR)

    sweep = TmpSweep(NOW)
    sweep.run(fd, "/m/tmp")
    assert sweep.removed == [StaleFile("/m/tmp/1.M1P1Q1.host", 40 * HOUR)]
    assert sweep.errors == []
    assert sorted(os.listdir(tmp)) == ["2.M2P2Q2.host", "3.M3P3Q3.host", "dir", "link"]
    assert outside.read_bytes() == b"not in tmp/"
    assert (directory / "inner").exists()


def test_age_limit_is_36_hours(tmp_dir: tuple[Path, int]) -> None:
    tmp, fd = tmp_dir
    for name, ago in (("young", STALE_AGE - 60), ("old", STALE_AGE + 60)):
        (tmp / name).write_bytes(b"x")
        touch(tmp / name, atime_ago=ago, mtime_ago=ago)
    sweep = TmpSweep(NOW)
    sweep.run(fd, "/m/tmp")
    assert [s.path for s in sweep.removed] == ["/m/tmp/old"]
    assert os.listdir(tmp) == ["young"]


def test_scan_is_bounded(tmp_dir: tuple[Path, int]) -> None:
    tmp, fd = tmp_dir
    for n in range(10):
        (tmp / f"f{n}").write_bytes(b"x")
        touch(tmp / f"f{n}", atime_ago=50 * HOUR, mtime_ago=50 * HOUR)
    sweep = TmpSweep(NOW, max_scanned=4)
    sweep.run(fd, "/m/tmp")
    assert len(sweep.removed) == 4
    assert len(os.listdir(tmp)) == 6
    again = TmpSweep(NOW)  # the next sweep (a fresh descriptor: from the start)
    again.run(fd, "/m/tmp")
    assert len(again.removed) == 6


def test_problems_are_collected_never_raised(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_bytes(b"x")
    fd = os.open(not_a_directory, os.O_RDONLY)
    try:
        sweep = TmpSweep(NOW)
        sweep.run(fd, "/m/tmp")
    finally:
        os.close(fd)
    assert sweep.removed == []
    assert sweep.errors == ["/m/tmp: Not a directory"]


def test_unlink_refused_is_an_error(tmp_dir: tuple[Path, int]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may unlink in a directory without write permission")
    tmp, fd = tmp_dir
    (tmp / "old").write_bytes(b"x")
    touch(tmp / "old", atime_ago=50 * HOUR, mtime_ago=50 * HOUR)
    tmp.chmod(0o500)
    try:
        sweep = TmpSweep(NOW)
        sweep.run(fd, "/m/tmp")
    finally:
        tmp.chmod(0o700)
    assert sweep.removed == []
    assert sweep.errors == ["/m/tmp/old: Permission denied"]


def test_describe_age() -> None:
    assert describe_age(36 * HOUR + 5 * 60 + 59) == "36h05m"
    assert describe_age(95 * HOUR) == "95h00m"
    assert describe_age(4 * 24 * HOUR + 3 * HOUR) == "4d03h"


def test_log_sweep(caplog: pytest.LogCaptureFixture) -> None:
    sweep = TmpSweep(NOW)
    sweep.removed.append(StaleFile("/home/bob/Maildir/tmp/1.M1P1.host", 40 * HOUR))
    sweep.errors.append("/home/bob/Maildir/tmp/2: Permission denied")
    with caplog.at_level(logging.INFO, logger="mta.mda"):
        log_sweep(sweep)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "maildir: removed stale tmp file /home/bob/Maildir/tmp/1.M1P1.host (age 40h00m)"),
        ("WARNING", "maildir: cannot clean tmp: /home/bob/Maildir/tmp/2: Permission denied"),
    ]
