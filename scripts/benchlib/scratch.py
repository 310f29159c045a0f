"""Where a benchmark run keeps its files: a fresh journaled ext4 made for the run, if it can.

Why: ext4 without a journal (the development VM's root file system) makes its
inode allocator skip every inode deleted in the last 60 s (360 s while its
inode table block is dirty: ``recently_deleted`` in fs/ext4/ialloc.c, checked
only when there is no journal).  Each run creates thousands of files and the
harness removes them, so the next runs' ``open(O_CREAT)`` scan ever more
deleted inodes: the same code measured 1950 messages/s, then 830 minutes later.
A fresh ext4 with a journal, what a mail server's spool lives on, has no such
memory, and removing a run's files costs the next run nothing: on a 1 GiB loop
ext4, creating 10,000 files of 4 KiB took 0.24 s, and 5.1 s once 10,000 files
had been removed there more than a second before; with a journal, 0.25 and 0.19 s.

:func:`scratch_area` gives the run its :class:`Scratch`:

* ``--scratch DIR``: that directory, as it is (no mount);
* as root, when ``mkfs.ext4``, ``losetup`` and ``mount -o loop`` work: a sparse
  image ``/tmp/mta-benchfs-<pid>.img`` made with mkfs.ext4's defaults (journal
  on), loop-mounted on ``/tmp/mta-benchfs-<pid>`` (mode 0755, so the users the
  deliveries and filters run as can reach their directories), unmounted and
  removed when the run ends, however it ends; one left by a harness that was
  killed is found by that name (:func:`stale_names`) and removed at the next
  start;
* otherwise: the cache directory, as before, and one line saying why the
  figures may vary.

Either way :attr:`Scratch.description` names the file system (device, type,
journal or not when known) for the report.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PREFIX",
    "Mount",
    "Scratch",
    "describe",
    "image_bytes",
    "mount_of",
    "parse_mountinfo",
    "scratch_area",
    "stale_names",
]

PREFIX = "mta-benchfs-"  # not "mta-bench-": the delivery and filters boxes' own prefix
IMAGE = ".img"
MIN_IMAGE = 8 << 30  # sparse: 524,288 inodes at mkfs.ext4's defaults, blocks as written
JBD2 = Path("/proc/fs/jbd2")  # a directory <device>-<journal inode> per mounted journal
TOOLS = ("mkfs.ext4", "mount", "umount", "losetup")
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)(" + re.escape(IMAGE) + r")?")
_ESCAPE = re.compile(r"\\([0-7]{3})")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo: where, what type, from which device."""

    point: Path
    fstype: str
    source: str


@dataclass(frozen=True)
class Scratch:
    """Where the run's files go, and what the report says about it."""

    root: Path  # the run's work directories
    boxes: Path  # directories other users must reach (Maildirs, the DKIM key)
    description: str  # the file system: device, type, journal
    mounted: bool  # a fresh file system of this run's own


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a /proc/<pid>/mountinfo text, in its order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 5 or len(fields) < sep + 3:
            continue
        point = _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        mounts.append(Mount(Path(point), fields[sep + 1], fields[sep + 2]))
    return mounts


def mount_of(path: Path, mounts: Iterable[Mount]) -> Mount | None:
    """The mount ``path`` (absolute, resolved) lives on: the last of the longest prefix."""
    best: Mount | None = None
    for m in mounts:
        if (path == m.point or m.point in path.parents) and (
            best is None or len(m.point.parts) >= len(best.point.parts)
        ):
            best = m
    return best


def describe(mount: Mount | None, journals: Iterable[str]) -> str:
    """``/dev/loop1 (ext4, journal: yes) on /tmp/mta-benchfs-7``; ``journals`` are
    the names under /proc/fs/jbd2 (``loop1-8``)."""
    if mount is None:
        return "an unknown file system"
    journal = "unknown"
    if mount.fstype in ("ext3", "ext4"):
        dev = Path(mount.source).name
        journal = "yes" if any(j.rsplit("-", 1)[0] == dev for j in journals) else "no"
    elif mount.fstype in ("tmpfs", "ramfs"):
        journal = "none needed, in memory"
    return f"{mount.source} ({mount.fstype}, journal: {journal}) on {mount.point}"


def stale_names(names: Iterable[str], alive: Callable[[int], bool]) -> list[str]:
    """Which of ``names`` (entries of /tmp) are a scratch image or mount point of a
    harness that is gone: ``mta-benchfs-<pid>`` or ``mta-benchfs-<pid>.img``."""
    stale = []
    for name in names:
        m = _NAME.fullmatch(name)
        if m is not None and not alive(int(m.group(1))):
            stale.append(name)
    return sorted(stale)


def image_bytes(files: int, size: int) -> int:
    """The image for a run that keeps up to ``files`` messages of ``size`` bytes at once
    (each in at most 2 files of whole 4 KiB blocks, twice over for room), at least
    :data:`MIN_IMAGE` (which holds the default run: 37,000 throughput messages kept
    to its end, the 100,000-envelope backlog's 1,000 messages and 10,000 envelope
    files with one copy, 2,000 messages per delivery run)."""
    blocks = (size + 2048 + 4095) // 4096 + 1
    return max(MIN_IMAGE, 2 * files * blocks * 4096)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _run(argv: list[str], timeout: float = 120.0) -> str | None:
    """Run ``argv``; None when it worked, else why not (its last words)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{argv[0]}: {exc}"
    if proc.returncode == 0:
        return None
    words = (proc.stderr or proc.stdout).strip().splitlines()
    return f"{argv[0]}: {words[-1] if words else f'exit status {proc.returncode}'}"


def _mounts() -> list[Mount]:
    try:
        return parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return []


def _journals() -> list[str]:
    try:
        return os.listdir(JBD2)
    except OSError:
        return []


def describe_path(path: Path) -> str:
    """The file system ``path`` lives on, as :func:`describe` puts it."""
    return describe(mount_of(path.resolve(), _mounts()), _journals())


def _unmount(point: Path) -> None:
    """Unmount ``point`` (the loop device goes with it: ``mount -o loop`` sets autoclear);
    lazily when it stays busy (a process that outlived its run still holds it)."""
    for _ in range(10):
        if not any(m.point == point for m in _mounts()) or _run(["umount", str(point)]) is None:
            return
        time.sleep(0.3)
    _run(["umount", "-l", str(point)])


def _detach(image: Path) -> None:
    """Detach loop devices still backed by ``image`` (a mount that failed halfway)."""
    try:
        out = subprocess.run(
            ["losetup", "-j", str(image)], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return
    for line in out.splitlines():
        device = line.split(":", 1)[0].strip()
        if device.startswith("/dev/loop"):
            _run(["losetup", "-d", device])


def _remove(point: Path, image: Path) -> None:
    _unmount(point)
    if image.exists():
        _detach(image)
    with contextlib.suppress(OSError):
        image.unlink()
    with contextlib.suppress(OSError):
        point.rmdir()


def remove_stale(tmp: Path, log: Log) -> None:
    """Remove the scratch file systems (mount point and image) of harnesses that are gone."""
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    stale = stale_names(names, _alive)
    for base in sorted({name.removesuffix(IMAGE) for name in stale}):
        log(f"removing {tmp / base} (a scratch file system left by a harness that was killed)")
        _remove(tmp / base, tmp / (base + IMAGE))


def _make(point: Path, image: Path, size: int) -> str | None:
    """Make and mount the file system; None when it is mounted, else why not."""
    if os.geteuid() != 0:
        return "not root, so no file system can be mounted for it"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} missing"
    try:
        point.mkdir(mode=0o755)
        with image.open("xb") as f:
            f.truncate(size)
    except OSError as exc:
        return f"cannot make {image}: {exc}"
    why = _run(["mkfs.ext4", "-q", "-F", str(image)]) or _run(
        ["mount", "-o", "loop", str(image), str(point)]
    )
    if why is None:
        os.chmod(point, 0o755)
    return why


@contextlib.contextmanager
def scratch_area(cache: Path, chosen: Path | None, size: int, log: Log) -> Iterator[Scratch]:
    """The run's :class:`Scratch` (see the module doc); a mount is gone when this ends."""
    if chosen is not None:
        chosen.mkdir(parents=True, exist_ok=True)
        fs = describe_path(chosen)
        yield Scratch(chosen, chosen, f"{chosen} on {fs} (--scratch)", mounted=False)
        return
    tmp = Path(tempfile.gettempdir()).resolve()  # as /proc/self/mountinfo has it
    remove_stale(tmp, log)
    point = tmp / f"{PREFIX}{os.getpid()}"
    image = tmp / f"{PREFIX}{os.getpid()}{IMAGE}"
    try:
        why = _make(point, image, size)
    except BaseException:
        _remove(point, image)
        raise
    if why is not None:
        _remove(point, image)
        here = describe_path(cache)
        log(
            f"files under {cache} on {here}, not on a fresh journaled ext4 ({why}): the"
            " figures may vary with what ran on this disk before (README: Benchmarks)"
        )
        yield Scratch(cache, tmp, f"{cache} on {here}, not a fresh file system", mounted=False)
        return
    try:
        fs = describe_path(point)
        log(f"files on a fresh file system for this run: {fs} (image {image})")
        yield Scratch(point, point, f"{fs}, a fresh ext4 made for this run", mounted=True)
    finally:
        _remove(point, image)
