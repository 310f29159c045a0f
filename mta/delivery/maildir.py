"""Local delivery into a maildir (``action ... maildir [pathname] [junk]``), done durably.

This is OpenSMTPD's ``mail.maildir`` (``usr.sbin/smtpd/mail.maildir.c``) as a
blocking function for a worker thread, plus the pieces that the mbox delivery
(:mod:`mta.delivery.mbox`) shares with it: the lines OpenSMTPD's ``mda.c``
writes before every local delivery (:func:`delivery_headers`) and the
line-ending conversion (:class:`LineNormalizer`).  The directories are opened
by :mod:`mta.delivery.dirwalk`, which also holds the errno classification
(``failure_from_oserror``) tabulated below.

What is written
    ``prepend`` (the caller passes :func:`delivery_headers`: ``mda.c`` writes
    ``Return-Path: <sender>`` when the sender is not empty, then
    ``Delivered-To: rcpt``, for every local method) and then the message.
    OpenSMTPD's queue holds LF lines (``smtp_session.c`` strips one trailing
    CR of each line) and ``mail.maildir`` writes ``"%s\\n"`` for each line, so
    the maildir file has LF line endings: one CR before each LF is removed,
    any other CR is kept, and a last line without a newline gets one.  NUL
    bytes are kept (the C tools would truncate the line there).

Where
    ``root`` (the expanded pathname, or ``~/Maildir``) must be absolute and
    have no ``..`` component (:class:`PermanentFailure` otherwise).  Missing
    directories are created mode 0700, parents too (``mkdirs``), then
    ``cur/``, ``tmp/`` and ``new/``.  With ``junk``, the Maildir++ folder
    ``root/.Junk`` and its three directories are always created (as
    ``mail.maildir -j`` does, whether the message is junk or not); a message
    whose headers hold a line that is, compared case-insensitively and as a
    whole, ``X-Spam: yes`` or ``X-Spam-Flag: yes`` is delivered into
    ``.Junk/new/``.  Only unfolded lines before the first empty line count:
    ``X-Spam: yes, score=9``, ``X-Spam:yes`` or a folded value do not.  With
    ``folder`` (the recipient's sub-address, ``EXTENSION`` in OpenSMTPD), the
    message goes to ``root/.<folder>`` if that folder exists, with each of
    ``!#$%&'*/?^`{|}~`` replaced by ``:``; a folder that would be ``..``
    (sub-address ``.``) is ignored instead of escaping ``root``.

How
    The file is created in ``tmp/`` (``O_CREAT|O_EXCL|O_NOFOLLOW``, 0600)
    under a unique name (``<sec>.M<usec>P<pid>Q<counter>R<random>.<host>``,
    the maildir specification's fields, with ``/`` and ``:`` of the host name
    written ``\\057`` and ``\\072``), written, fsynced, closed, hard-linked
    into ``new/`` (``link()`` never replaces an existing name; another name
    is tried on a collision; where the filesystem has no hard links, a
    ``rename()`` after checking the name is free), then ``new/`` is fsynced
    and the ``tmp/`` name removed.  Directories created are fsynced into their
    parents.  On any failure, the ``tmp/`` file and any ``new/`` link are
    removed: nothing half-written is left, and a failure never leaves a
    delivered copy that a retry would duplicate (only a process killed
    meanwhile leaves a ``tmp/`` file: with ``sweep``, the ``tmp/`` directories
    opened are then cleaned of files untouched for 36 hours, as the maildir
    convention asks; :mod:`mta.delivery.tmpsweep`).  ``fsync`` failing with
    EINVAL (a filesystem that cannot sync) is ignored, as ``mail.mboxfile``
    does.

Symbolic links
    Every directory is opened once and used through its descriptor
    (``openat``/``mkdirat``/``linkat``), so nothing can be swapped between a
    check and its use.  ``tmp/``, ``new/``, ``cur/``, ``.Junk`` and its
    directories, the sub-address folder, and the message file are opened with
    ``O_NOFOLLOW``: a symbolic link there is refused (temporary failure), so
    the owner of the maildir cannot redirect the write.  ``root`` and its
    parents are followed (``~/Maildir`` may legitimately be a link), unless
    ``confine`` is given: then ``root`` must lie under ``confine`` (the
    configured directory before expansion, or the user's home), ``confine``
    itself is trusted and followed (and created when missing, like the rest of
    the path), and every component below it is opened
    with ``O_NOFOLLOW``, so no address and no link planted by a user leads
    out of it.  Not protected: links in ``confine`` (or, without it, in
    ``root``) and above, which belong to the administrator; and the content
    of the delivered files, which the user owns anyway.

Errors (:func:`failure_from_oserror`; OpenSMTPD's MDA exit statuses: 71
EX_OSERR and 75 EX_TEMPFAIL are temporary, any other non-zero is permanent)

    ============================  ===========  ======================================
    errno / condition             class        why
    ============================  ===========  ======================================
    ENAMETOOLONG                  permanent    ``mail.maildir``: ``errc(1, ...)``
    EINVAL                        permanent    ``mail.maildir``: ``err(1)`` (mkdirs)
    relative path, ``..``         permanent    ``mkdirs`` EINVAL; escapes the root
    root not under ``confine``    permanent    can never work as configured
    ENOSPC, EDQUOT, EFBIG         temporary    full or over quota: retried, not
                                               bounced (the issue; ``mail.local``
                                               EX_OSERR on write errors)
    EROFS                         temporary    read-only filesystem (the issue)
    EIO, ESTALE, EAGAIN, EINTR    temporary    ``mail.maildir``: ``err(EX_TEMPFAIL)``
    EACCES, EPERM                 temporary    an administrator can fix permissions
    ELOOP, ENOTDIR, EEXIST,       temporary    a symbolic link or a file where a
    ENOENT, EISDIR, EXDEV                      directory should be: fixable, and
                                               ``mail.maildir``/``mail.local`` give
                                               EX_TEMPFAIL/EX_OSERR there
    ENFILE, EMFILE, ENOMEM, ...   temporary    everything else: ``mail.maildir``'s
                                               default ``err(EX_TEMPFAIL, NULL)``
    ============================  ===========  ======================================

Where this differs from ``mail.maildir``: it ``chmod``\\ s an existing root
back to 0700 at every delivery (here only the directories created are 0700;
an administrator's deliberate mode is kept); it ``rename()``\\ s into
``new/``, which would replace an existing name, and names files
``<time>.<arc4random>.<host>`` with the host name unescaped; it fsyncs neither
``new/`` nor the directories it creates; it follows every symbolic link; and
its EINVAL/ENAMETOOLONG test of ``mkdirs`` never fires (``mkdirs`` returns 0,
not -1, on failure), whereas here they are permanent as intended.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator

from mta.delivery.dirwalk import (
    failure_from_oserror,
    fsync_quietly,
    open_directory,
    open_root,
    split_absolute,
)
from mta.delivery.tmpsweep import TmpSweep
from mta.errors import TemporaryFailure

__all__ = [
    "JUNK_FOLDER",
    "BlockWriter",
    "LineNormalizer",
    "deliver_maildir",
    "delivery_headers",
    "folder_name",
    "is_junk_line",
    "read_chunks",
]

JUNK_FOLDER = ".Junk"  # mail.maildir.c: snprintf(junkpath, ..., "%s/.Junk", dirname)
_SUBDIRS = ("cur", "tmp", "new")  # mail.maildir.c's maildir_mkdirs order
_FILE_MODE = 0o600
_MAILADDR_ESCAPE = "!#$%&'*/?^`{|}~"  # mail.maildir.c: MAILADDR_ESCAPE, each becomes ':'
_JUNK_LINES = (b"x-spam: yes", b"x-spam-flag: yes")
_WRITE_SIZE = 64 * 1024  # bytes gathered before each os.write
# An unfinished line longer than this is written out in parts; it must stay longer than
# the longest junk line (16) so that such a line is never a junk candidate.
_MAX_CARRY = 64 * 1024
_LINK_ATTEMPTS = 5
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})

_counter = itertools.count(1)
_counter_lock = threading.Lock()


def delivery_headers(sender: str, recipient: str) -> bytes:
    """The lines ``mda.c`` writes before the message of every local delivery.

    ``Return-Path: <sender>`` (only when the sender is not empty) and
    ``Delivered-To: recipient`` (the envelope's ``rcpt``, else its ``dest``).
    """
    sender = _one_line(sender)
    recipient = _one_line(recipient)
    lines = f"Return-Path: <{sender}>\n" if sender else ""
    lines += f"Delivered-To: {recipient}\n"
    return lines.encode("utf-8", "surrogateescape")


def _one_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", "")


def is_junk_line(line: bytes) -> bool:
    """Whether a header line (without its line ending) marks the message as junk.

    ``mail.maildir.c``: ``strcasecmp(line, "x-spam: yes") == 0 ||
    strcasecmp(line, "x-spam-flag: yes") == 0``.
    """
    return len(line) <= 16 and line.lower() in _JUNK_LINES


def folder_name(subaddress: str) -> str | None:
    """The Maildir++ folder (``.name``) for a sub-address, or None when there is none.

    As ``maildir_subdir``: each of ``!#$%&'*/?^`{|}~`` becomes ``:``.  A result
    that is empty, or that would make the folder ``..``, is no folder.
    """
    if "\0" in subaddress:
        return None
    name = "".join(":" if c in _MAILADDR_ESCAPE else c for c in subaddress)
    if name in ("", "."):
        return None
    return "." + name


class LineNormalizer:
    """Streaming CRLF to LF conversion, with ``From `` escaping and the junk scan.

    Feed byte chunks (lines may be split anywhere); each call returns what can
    be written so far; :meth:`finish` returns the rest.  Memory stays bounded
    by the chunk size plus ``_MAX_CARRY`` whatever the line lengths.

    ``escape_from``: every line starting with ``From `` gets a ``>`` (mboxo).
    ``scan_junk``: :attr:`junk` tells whether a header line was :func:`is_junk_line`.
    """

    def __init__(self, *, escape_from: bool = False, scan_junk: bool = False) -> None:
        self._escape = escape_from
        self._in_headers = scan_junk
        self._carry = b""  # an unfinished line (or its end)
        self._bol = True  # the carry starts a line
        self.junk = False

    def feed(self, data: bytes) -> bytes:
        if self._carry:
            data = self._carry + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            self._carry = data
            return self._flush_partial() if len(data) > _MAX_CARRY else b""
        block, self._carry = data[:cut], data[cut:]
        out = self._lines(block)
        if len(self._carry) > _MAX_CARRY:
            out += self._flush_partial()
        return out

    def finish(self) -> bytes:
        rest, self._carry = self._carry, b""
        if not rest and self._bol:
            return b""
        return self._lines(rest + b"\n")  # a last CR is taken as half a CRLF

    def _lines(self, block: bytes) -> bytes:
        """Convert whole lines (``block`` ends with LF; it starts a line if ``_bol``)."""
        block = block.replace(b"\r\n", b"\n")
        if self._in_headers:
            self._scan_headers(block)
        if self._escape:
            if self._bol and block.startswith(b"From "):
                block = b">" + block
            block = block.replace(b"\nFrom ", b"\n>From ")
        self._bol = True
        return block

    def _scan_headers(self, block: bytes) -> None:
        pos = 0
        if not self._bol:  # the end of a long line already written: no candidate
            pos = block.index(b"\n") + 1
        while self._in_headers and pos < len(block):
            end = block.index(b"\n", pos)
            line = block[pos:end]
            if not line:
                self._in_headers = False
            elif is_junk_line(line):
                self.junk = True
            pos = end + 1

    def _flush_partial(self) -> bytes:
        """Write out most of a long unfinished line, keeping a final CR back."""
        data = self._carry
        keep = b"\r" if data.endswith(b"\r") else b""
        if keep:
            data = data[:-1]
        if self._escape and self._bol and data.startswith(b"From "):
            data = b">" + data
        self._carry = keep
        self._bol = False
        return data


class BlockWriter:
    """Gathers output and writes it with ``os.write`` (all of it, partial writes resumed)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pieces: list[bytes] = []
        self._size = 0
        self.written = 0

    def write(self, data: bytes) -> None:
        if data:
            self._pieces.append(data)
            self._size += len(data)
            if self._size >= _WRITE_SIZE:
                self.flush()

    def flush(self) -> None:
        if not self._pieces:
            return
        data = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces.clear()
        self._size = 0
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            if n <= 0:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            view = view[n:]
            self.written += n


def read_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The message's chunks, an ``OSError`` in reading them made a delivery failure."""
    it = iter(chunks)
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            return
        except OSError as exc:
            raise failure_from_oserror(exc, "reading the message") from exc
        yield chunk


class _Maildir:
    """One maildir (or Maildir++ folder) opened: the descriptors of its ``tmp/`` and ``new/``."""

    def __init__(self, fd: int, path: str, owner: tuple[int, int] | None) -> None:
        self.path = path
        self.tmp = -1
        self.new = -1
        try:
            for sub in _SUBDIRS:
                sub_fd = open_directory(
                    fd, sub, f"{path}/{sub}", create=True, nofollow=True, owner=owner, readable=True
                )
                if sub == "tmp":
                    self.tmp = sub_fd
                elif sub == "new":
                    self.new = sub_fd
                else:
                    os.close(sub_fd)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in (self.tmp, self.new):
            if fd >= 0:
                os.close(fd)
        self.tmp = self.new = -1


def _host_part(hostname: str | None) -> str:
    host = hostname if hostname is not None else socket.gethostname()
    host = host or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072")


def _unique_name(host: str) -> str:
    ns = time.time_ns()
    sec, rest = divmod(ns, 1_000_000_000)
    with _counter_lock:
        n = next(_counter)
    return f"{sec}.M{rest // 1000}P{os.getpid()}Q{n}R{secrets.token_hex(8)}.{host}"


def deliver_maildir(
    root: str,
    chunks: Iterable[bytes],
    *,
    prepend: bytes = b"",
    junk: bool = False,
    folder: str | None = None,
    hostname: str | None = None,
    confine: str | None = None,
    owner: tuple[int, int] | None = None,
    sweep: TmpSweep | None = None,
) -> str:
    """Deliver one message into the maildir ``root``; return the path of the file in ``new/``.

    ``chunks``: the message, CRLF lines, streamed.  ``prepend``: written
    first (:func:`delivery_headers`).  ``junk``: route ``X-Spam: yes`` mail to
    ``.Junk``.  ``folder``: the sub-address (its folder is used if it exists).
    ``hostname``: for the unique name (default: this host's).  ``confine``:
    no symbolic link is followed below this directory.  ``owner``: (uid, gid)
    given to the directories and the file created (when delivering as root).
    ``sweep``: run on each ``tmp/`` opened, after the delivery, whatever its
    outcome (it never raises).

    Raises :class:`TemporaryFailure` or :class:`PermanentFailure` (see the
    module's table); errors of ``chunks`` itself propagate (an ``OSError``
    classified) after the cleanup.
    """
    host = _host_part(hostname)
    root_fd = open_root(root, confine, owner)
    root_path = "/" + "/".join(split_absolute(root))
    dirs: list[_Maildir] = []
    try:
        main = _Maildir(root_fd, root_path, owner)
        dirs.append(main)
        junk_dir: _Maildir | None = None
        if junk:
            junk_path = f"{root_path}/{JUNK_FOLDER}"
            junk_fd = open_directory(
                root_fd, JUNK_FOLDER, junk_path, create=True, nofollow=True, owner=owner
            )
            try:
                junk_dir = _Maildir(junk_fd, junk_path, owner)
            finally:
                os.close(junk_fd)
            dirs.append(junk_dir)
        dest = main
        sub = folder_name(folder) if folder else None
        if sub is not None:
            sub_path = f"{root_path}/{sub}"
            try:
                sub_fd = open_directory(root_fd, sub, sub_path, create=False, nofollow=True)
            except TemporaryFailure as exc:
                if not isinstance(exc.__cause__, FileNotFoundError):
                    raise
            else:
                try:
                    dest = _Maildir(sub_fd, sub_path, owner)
                finally:
                    os.close(sub_fd)
                dirs.append(dest)
        return _write_and_link(dest, junk_dir, chunks, prepend, junk, host, owner)
    finally:
        for d in dirs:
            if sweep is not None:
                sweep.run(d.tmp, f"{d.path}/tmp")
            d.close()
        os.close(root_fd)


def _write_and_link(
    dest: _Maildir,
    junk_dir: _Maildir | None,
    chunks: Iterable[bytes],
    prepend: bytes,
    junk: bool,
    host: str,
    owner: tuple[int, int] | None,
) -> str:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    normalizer = LineNormalizer(scan_junk=junk)  # nothing may fail between create and try
    for _attempt in range(_LINK_ATTEMPTS):
        name = _unique_name(host)
        tmp_path = f"{dest.path}/tmp/{name}"
        try:
            fd = os.open(name, flags, _FILE_MODE, dir_fd=dest.tmp)
        except FileExistsError:
            continue  # never reuse, nor follow, what is there
        except OSError as exc:
            raise failure_from_oserror(exc, tmp_path) from exc
        break
    else:
        raise TemporaryFailure(f"{dest.path}/tmp: no free unique name")
    try:
        try:
            if owner is not None:
                os.fchown(fd, owner[0], owner[1])
            writer = BlockWriter(fd)
            writer.write(normalizer.feed(prepend))
            for chunk in read_chunks(chunks):
                writer.write(normalizer.feed(chunk))
            writer.write(normalizer.finish())
            writer.flush()
            fsync_quietly(fd)
        finally:
            os.close(fd)
    except BaseException as exc:
        _unlink_quietly(dest.tmp, name)
        if isinstance(exc, OSError):
            raise failure_from_oserror(exc, tmp_path) from exc
        raise
    target = junk_dir if junk_dir is not None and normalizer.junk else dest
    try:
        final = _link_into_new(dest, target, name, host)
    except BaseException:
        _unlink_quietly(dest.tmp, name)
        raise
    _unlink_quietly(dest.tmp, name)
    return f"{target.path}/new/{final}"


def _link_into_new(dest: _Maildir, target: _Maildir, name: str, host: str) -> str:
    """Link ``tmp/name`` into ``target``'s ``new/`` under a free name, fsync ``new/``."""
    final = name
    new_path = f"{target.path}/new"
    for _attempt in range(_LINK_ATTEMPTS):
        try:
            try:
                os.link(name, final, src_dir_fd=dest.tmp, dst_dir_fd=target.new)
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                _rename_no_replace(dest.tmp, name, target.new, final)
        except FileExistsError:
            final = _unique_name(host)
            continue
        except OSError as exc:
            raise failure_from_oserror(exc, f"{new_path}/{final}") from exc
        break
    else:
        raise TemporaryFailure(f"{new_path}: no free unique name")
    try:
        os.fsync(target.new)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            _unlink_quietly(target.new, final)
            raise failure_from_oserror(exc, new_path) from exc
    except BaseException:
        _unlink_quietly(target.new, final)
        raise
    return final


def _rename_no_replace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """``rename()`` for filesystems without hard links, refusing an existing name."""
    try:
        os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


def _unlink_quietly(dir_fd: int, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)
