"""Where things live under a spool root, and creating / checking that layout.

::

    <root>/incoming/<msgid %08x>                  a message being received
    <root>/queue/<msgid >> 24 %02x>/               a bucket of committed messages:
        <msgid %08x>                              a message: its content and its
                                                  envelopes (:mod:`mta.spool.msgfile`)
        <evpid %016x>                             an envelope changed since the commit
                                                  (empty: delivered, gone)
    <root>/corrupt/                               quarantined messages (never deleted)
    <root>/temporary/                             scratch space, purged at startup
    <root>/offline/                               mta-sendmail's drop while the daemon is down

The root also holds the daemon's sockets, so only these subdirectories are
created in it.  Everything must be one filesystem: commits are ``rename(2)``.
(Before format 2, a committed message was a directory ``<msgid>/`` holding
``message`` and one file per envelope; recovery converts those.)
"""

from __future__ import annotations

import os
import stat

import attrs

from mta.errors import SpoolError
from mta.spool.fsio import fsync_dir

__all__ = [
    "TEMP_SUFFIX",
    "SpoolPaths",
    "bucket_of",
    "parse_bucket",
    "parse_evpid",
    "parse_msgid",
]

TEMP_SUFFIX = ".tmp"

_DIR_MODES = {
    "incoming": 0o700,
    "queue": 0o700,
    "corrupt": 0o700,
    "temporary": 0o700,
    "offline": 0o770,
}
_HEX = frozenset("0123456789abcdef")


def bucket_of(msgid: int) -> str:
    """The queue bucket of a message: its top byte in hex (as OpenSMTPD)."""
    return f"{msgid >> 24:02x}"


def _parse_hex(name: str, width: int) -> int | None:
    if len(name) != width or not set(name) <= _HEX:
        return None
    return int(name, 16)


def parse_bucket(name: str) -> int | None:
    """The bucket number named by ``name`` (two lowercase hex digits), else None."""
    return _parse_hex(name, 2)


def parse_msgid(name: str) -> int | None:
    """The message id named by ``name`` (eight lowercase hex digits, not 0), else None."""
    value = _parse_hex(name, 8)
    return value if value else None


def parse_evpid(name: str) -> int | None:
    """The envelope id named by ``name`` (sixteen lowercase hex digits, both halves not 0)."""
    value = _parse_hex(name, 16)
    if value is None or value >> 32 == 0 or value & 0xFFFFFFFF == 0:
        return None
    return value


def _make_dir(path: str, mode: int) -> bool:
    """Make ``path`` unless it exists; whether it was made."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return False
    return True


def _absolute(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path))


@attrs.frozen
class SpoolPaths:
    """The paths of one spool."""

    root: str = attrs.field(converter=_absolute)

    @property
    def incoming(self) -> str:
        return os.path.join(self.root, "incoming")

    @property
    def queue(self) -> str:
        return os.path.join(self.root, "queue")

    @property
    def corrupt(self) -> str:
        return os.path.join(self.root, "corrupt")

    @property
    def temporary(self) -> str:
        return os.path.join(self.root, "temporary")

    @property
    def offline(self) -> str:
        return os.path.join(self.root, "offline")

    def incoming_file(self, msgid: int) -> str:
        """Where a message is written until it is committed."""
        return os.path.join(self.incoming, f"{msgid:08x}")

    def bucket_dir(self, msgid: int) -> str:
        return os.path.join(self.queue, bucket_of(msgid))

    def message_file(self, msgid: int) -> str:
        """The committed message (content and envelopes)."""
        return os.path.join(self.queue, bucket_of(msgid), f"{msgid:08x}")

    def envelope_file(self, evpid: int) -> str:
        """The changed copy of an envelope (it supersedes the one in its message file)."""
        return os.path.join(self.queue, bucket_of(evpid >> 32), f"{evpid:016x}")

    def create(self) -> None:
        """Create the root (if missing), every subdirectory and all 256 queue
        buckets, make what was created durable, then check the layout.

        The buckets always exist, so a commit never makes one (nor has to fsync
        ``queue/`` for it).  Raises :class:`SpoolError` if a directory cannot be
        made or the spool spans several filesystems.
        """
        try:
            made_root = not os.path.isdir(self.root)
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            made = False
            for name, mode in _DIR_MODES.items():
                path = os.path.join(self.root, name)
                made |= _make_dir(path, mode)
                info = os.lstat(path)
                if not stat.S_ISDIR(info.st_mode):
                    raise SpoolError(f"spool: {path} exists and is not a directory")
                if stat.S_IMODE(info.st_mode) != mode:
                    os.chmod(path, mode)
            buckets = False
            for number in range(256):
                buckets |= _make_dir(os.path.join(self.queue, f"{number:02x}"), 0o700)
            if buckets:
                fsync_dir(self.queue)
            if made:
                fsync_dir(self.root)
            if made_root:
                fsync_dir(os.path.dirname(self.root))
        except OSError as exc:
            raise SpoolError(
                f"spool: cannot create {exc.filename or self.root}: {exc.strerror or exc}"
            ) from exc
        self.check_one_filesystem()

    def check_one_filesystem(self) -> None:
        """Raise :class:`SpoolError` unless every spool directory is on the root's filesystem."""
        try:
            root_dev = os.stat(self.root).st_dev
            others = [
                name
                for name in _DIR_MODES
                if os.stat(os.path.join(self.root, name)).st_dev != root_dev
            ]
        except OSError as exc:
            raise SpoolError(f"spool: cannot stat {exc.filename}: {exc.strerror}") from exc
        if others:
            raise SpoolError(
                f"spool: {', '.join(others)} under {self.root} on another filesystem than the "
                "spool itself; commits rename(2) between them, so the whole spool must be one "
                "filesystem"
            )
