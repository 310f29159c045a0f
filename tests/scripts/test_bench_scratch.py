"""Where the benchmark's files live (scripts/benchlib/scratch.py, main's --scratch, --keep).

The pure parts (mountinfo, the file system's description, which leftovers are
stale, the image's size) and the fallback run as any user; making, mounting and
removing a real journaled ext4 needs root and a loop device, and is skipped,
saying which, without them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import oracles

scratch = oracles.scripts_module("benchlib.scratch")
main = oracles.scripts_module("benchlib.main")

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
25 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw
31 22 0:26 / /tmp/with\\040space rw shared:20 - tmpfs tmpfs rw,size=4k
40 22 7:0 / /mnt/benchfs rw,relatime shared:30 - ext4 /dev/loop0 rw
41 40 7:1 / /mnt/benchfs rw,relatime shared:31 - ext4 /dev/loop1 rw
garbage line without a separator
"""


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_mountinfo_gives_point_type_and_device_with_escapes_decoded() -> None:
    mounts = scratch.parse_mountinfo(MOUNTINFO)
    assert [(str(m.point), m.fstype, m.source) for m in mounts] == [
        ("/", "ext4", "/dev/vda"),
        ("/proc", "proc", "proc"),
        ("/tmp/with space", "tmpfs", "tmpfs"),
        ("/mnt/benchfs", "ext4", "/dev/loop0"),
        ("/mnt/benchfs", "ext4", "/dev/loop1"),
    ]


def test_a_path_is_on_its_longest_mount_and_the_last_of_one_point_covers_the_others() -> None:
    mounts = scratch.parse_mountinfo(MOUNTINFO)
    assert scratch.mount_of(Path("/work/x"), mounts).source == "/dev/vda"
    assert scratch.mount_of(Path("/"), mounts).source == "/dev/vda"
    assert scratch.mount_of(Path("/tmp/with space/a"), mounts).fstype == "tmpfs"
    assert scratch.mount_of(Path("/mnt/benchfs/spool"), mounts).source == "/dev/loop1"
    assert scratch.mount_of(Path("/mnt/benchfsx"), mounts).source == "/dev/vda"
    assert scratch.mount_of(Path("/x"), []) is None


def test_the_description_says_whether_ext4_has_a_journal() -> None:
    mounts = scratch.parse_mountinfo(MOUNTINFO)
    vda, loop1 = mounts[0], mounts[4]
    journals = ["loop1-8", "vdb-8"]
    assert scratch.describe(loop1, journals) == "/dev/loop1 (ext4, journal: yes) on /mnt/benchfs"
    assert scratch.describe(vda, journals) == "/dev/vda (ext4, journal: no) on /"
    assert "journal: none needed" in scratch.describe(mounts[2], journals)
    assert "journal: unknown" in scratch.describe(mounts[1], journals)
    assert scratch.describe(None, journals) == "an unknown file system"


def test_only_a_gone_harness_s_images_and_mount_points_are_stale() -> None:
    names = [
        "mta-benchfs-10",
        "mta-benchfs-10.img",
        "mta-benchfs-11",  # alive
        "mta-benchfs-11.img",
        "mta-benchfs-12.img",  # a mount that failed: only the image
        "mta-bench-13",  # a delivery box: not ours
        "mta-benchfs-x",
        "mta-benchfs-14.img.bak",
        "benchfs.img",
    ]
    assert scratch.stale_names(names, lambda pid: pid == 11) == [
        "mta-benchfs-10",
        "mta-benchfs-10.img",
        "mta-benchfs-12.img",
    ]
    assert scratch.stale_names(names, lambda pid: True) == []


def test_the_image_holds_the_default_run_and_grows_with_the_messages_kept() -> None:
    assert scratch.image_bytes(37_000, 4096) == scratch.MIN_IMAGE
    big = scratch.image_bytes(1_000_000, 4096)
    assert big > scratch.MIN_IMAGE
    assert big >= 1_000_000 * 8192  # at least two blocks each
    assert scratch.image_bytes(1_000_000, 65536) > big


def test_scratch_option_is_parsed() -> None:
    args = main._parser().parse_args(["--scratch", "/srv/bench"])
    assert args.scratch == Path("/srv/bench")
    assert main._parser().parse_args([]).scratch is None


def test_a_chosen_directory_is_used_as_it_is(tmp_path: Path) -> None:
    chosen = tmp_path / "mine" / "bench"
    lines: list[str] = []
    with scratch.scratch_area(tmp_path / "cache", chosen, 1 << 20, lines.append) as area:
        assert chosen.is_dir()
        assert (area.root, area.boxes, area.mounted) == (chosen, chosen, False)
        assert area.description.startswith(f"{chosen} on ")
        assert area.description.endswith("(--scratch)")
    assert chosen.is_dir()
    assert lines == []


@pytest.fixture
def tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private temporary directory where the scratch file systems are made (and,
    should a test fail halfway, unmounted afterwards)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    for point in tmp.iterdir():
        if _mounted(point):
            subprocess.run(["umount", "-l", str(point)], check=False)


def test_an_ordinary_user_gets_the_cache_and_one_line_saying_why(
    tmp_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    cache = tmp_path / "cache"
    cache.mkdir()
    lines: list[str] = []
    with scratch.scratch_area(cache, None, 1 << 30, lines.append) as area:
        assert (area.root, area.boxes, area.mounted) == (cache, tmp_dir, False)
        assert area.description.startswith(f"{cache} on ")
        assert area.description.endswith("not a fresh file system")
    assert len(lines) == 1
    assert "not root" in lines[0]
    assert "figures may vary" in lines[0]
    assert list(tmp_dir.iterdir()) == []  # no image, no mount point left


def test_leftovers_of_a_killed_harness_are_removed_and_nothing_else(tmp_dir: Path) -> None:
    dead = _dead_pid()
    for name in (f"mta-benchfs-{dead}", f"mta-benchfs-{os.getpid()}", "mta-bench-1"):
        (tmp_dir / name).mkdir()
    for name in (f"mta-benchfs-{dead}.img", f"mta-benchfs-{os.getpid()}.img"):
        (tmp_dir / name).write_bytes(b"")
    lines: list[str] = []
    scratch.remove_stale(tmp_dir, lines.append)
    assert sorted(p.name for p in tmp_dir.iterdir()) == [
        "mta-bench-1",
        f"mta-benchfs-{os.getpid()}",
        f"mta-benchfs-{os.getpid()}.img",
    ]
    assert len(lines) == 1
    assert f"mta-benchfs-{dead}" in lines[0]


def _namespace(keep: bool, cache: Path) -> argparse.Namespace:
    return argparse.Namespace(keep=keep, cache=cache)


def _workroot(root: Path) -> Path:
    work = root / "run-x"
    (work / "spool").mkdir(parents=True)
    (work / main.HARNESS_PID).write_text("1\n")
    return work


def test_leaving_removes_the_run_s_files_unless_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    area = scratch.Scratch(cache, tmp_path, "d", mounted=False)
    work = _workroot(cache)
    main._leave(work, area, _namespace(False, cache))
    assert not work.exists()
    work = _workroot(cache)
    main._leave(work, area, _namespace(True, cache))
    assert (work / "spool").is_dir()
    assert not (work / main.HARNESS_PID).exists()


def test_kept_files_on_the_run_s_own_file_system_are_copied_to_the_cache(
    tmp_path: Path,
) -> None:
    cache, point = tmp_path / "cache", tmp_path / "mnt"
    cache.mkdir()
    (point / "lost+found").mkdir(parents=True)
    (point / "mta-bench-box" / "Maildir").mkdir(parents=True)
    work = _workroot(point)
    (work / "spool" / "m").write_text("message")
    area = scratch.Scratch(point, point, "d", mounted=True)
    main._leave(work, area, _namespace(True, cache))
    [kept] = cache.glob("kept-*")
    assert sorted(p.name for p in kept.iterdir()) == ["mta-bench-box", "run-x"]
    assert (kept / "run-x" / "spool" / "m").read_text() == "message"
    assert (kept / "mta-bench-box" / "Maildir").is_dir()


def _mounted(point: Path) -> bool:
    return any(
        m.point == point for m in scratch.parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    )


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a loop file system needs root")


SMALL = 64 << 20


@pytest.mark.usefixtures("as_root")
def test_as_root_the_run_gets_a_fresh_journaled_ext4_removed_at_the_end(tmp_dir: Path) -> None:
    lines: list[str] = []
    point = tmp_dir / f"mta-benchfs-{os.getpid()}"
    cache = tmp_dir / "cache"
    with (
        pytest.raises(RuntimeError, match="the run failed"),
        scratch.scratch_area(cache, None, SMALL, lines.append) as area,
    ):
        if not area.mounted:
            pytest.skip(f"no loop mount here: {lines}")
        assert (area.root, area.boxes) == (point, point)
        assert _mounted(point)
        assert "(ext4, journal: yes)" in area.description
        assert oct(point.stat().st_mode & 0o7777) == "0o755"
        (point / "spool").mkdir()
        (point / "spool" / "m").write_bytes(b"x" * 10000)
        raise RuntimeError("the run failed")
    assert not _mounted(point)
    assert list(tmp_dir.iterdir()) == []
    assert len(lines) == 1
    assert "fresh file system" in lines[0]


@pytest.mark.usefixtures("as_root")
def test_a_killed_harness_s_mount_is_unmounted_and_removed_at_the_next_start(
    tmp_dir: Path,
) -> None:
    dead = _dead_pid()
    point = tmp_dir / f"mta-benchfs-{dead}"
    image = tmp_dir / f"mta-benchfs-{dead}.img"
    point.mkdir()
    with image.open("xb") as f:
        f.truncate(SMALL)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    mount = subprocess.run(["mount", "-o", "loop", str(image), str(point)], capture_output=True)
    if mount.returncode != 0:
        image.unlink()
        pytest.skip(f"no loop mount here: {mount.stderr.decode(errors='replace').strip()}")
    lines: list[str] = []
    with scratch.scratch_area(tmp_dir / "cache", None, SMALL, lines.append) as area:
        assert area.mounted
        assert not _mounted(point)
        assert not point.exists()
        assert not image.exists()
    assert f"mta-benchfs-{dead}" in lines[0]
