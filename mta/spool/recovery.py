"""Startup recovery of a spool (blocking; run once before anything is queued).

- ``incoming/`` holds transactions that never committed (no client got a 250
  for them): purged.  ``temporary/`` and leftover ``*.tmp`` files: removed.
- Every committed message in ``queue/`` is checked: its ``message`` file must
  be present and decode (gzip CRC, GCM tag), every envelope file must parse and
  belong to its message.  A message failing any check moves whole to
  ``corrupt/``: never deleted, never delivered.  A message without envelopes
  (a crash while its last envelope was being deleted) is removed.
- Everything else is kept.  Each event is one log line on ``mta.spool``.
"""

from __future__ import annotations

import logging
import os
import stat

import attrs

from mta.errors import CorruptEnvelope, CorruptMessage
from mta.log import quote
from mta.spool.fsio import fsync_dir, remove_tree, spool_error
from mta.spool.paths import (
    MESSAGE_NAME,
    TEMP_SUFFIX,
    SpoolPaths,
    parse_bucket,
    parse_evpid,
    parse_msgid,
)
from mta.spool.store import quarantine_path, read_envelope_file, verify_message_file

__all__ = ["Quarantined", "RecoveryReport", "recover"]

log = logging.getLogger("mta.spool")


@attrs.frozen
class Quarantined:
    """Something moved to ``corrupt/``: where it was (relative to the spool root) and why."""

    path: str
    reason: str


@attrs.define
class RecoveryReport:
    """What startup recovery found."""

    kept_messages: int = 0
    kept_envelopes: int = 0
    purged: int = 0  # uncommitted transactions removed from incoming/
    removed: int = 0  # temporary files and messages left without envelopes
    quarantined: list[Quarantined] = attrs.field(factory=list)


def _entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda entry: entry.name)


def _remove(entry: os.DirEntry[str]) -> None:
    if entry.is_dir(follow_symlinks=False):
        remove_tree(entry.path)
    else:
        os.unlink(entry.path)


class _Recovery:
    def __init__(self, paths: SpoolPaths, key: bytes | None) -> None:
        self.paths = paths
        self.key = key
        self.report = RecoveryReport()

    def _rel(self, path: str) -> str:
        return quote(os.path.relpath(path, self.paths.root))

    def quarantine(self, path: str, reason: str) -> None:
        quarantine_path(self.paths, path, reason)
        self.report.quarantined.append(Quarantined(os.path.relpath(path, self.paths.root), reason))

    def purge_incoming(self) -> None:
        entries = _entries(self.paths.incoming)
        for entry in entries:
            _remove(entry)
            self.report.purged += 1
            log.info("spool: purge uncommitted transaction path=%s", self._rel(entry.path))
        if entries:
            fsync_dir(self.paths.incoming)

    def purge_temporary(self) -> None:
        for entry in _entries(self.paths.temporary):
            _remove(entry)
            self.report.removed += 1
            log.info("spool: remove temporary path=%s", self._rel(entry.path))

    def scan_queue(self) -> None:
        for entry in _entries(self.paths.queue):
            number = parse_bucket(entry.name)
            if number is not None and entry.is_dir(follow_symlinks=False):
                self.scan_bucket(entry.path, number)
            elif entry.name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False):
                self.remove_temp(entry.path)
            else:
                self.quarantine(entry.path, "unexpected entry in queue/")

    def scan_bucket(self, path: str, number: int) -> None:
        for entry in _entries(path):
            msgid = parse_msgid(entry.name)
            if msgid is None or not entry.is_dir(follow_symlinks=False):
                if entry.name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False):
                    self.remove_temp(entry.path)
                else:
                    self.quarantine(entry.path, "unexpected entry in a queue bucket")
            elif msgid >> 24 != number:
                self.quarantine(entry.path, "message in the wrong bucket")
            else:
                self.check_message(entry.path, msgid)

    def remove_temp(self, path: str) -> None:
        os.unlink(path)
        self.report.removed += 1
        log.info("spool: remove temporary path=%s", self._rel(path))

    def check_message(self, path: str, msgid: int) -> None:
        evpids: list[int] = []
        has_message = False
        for entry in _entries(path):
            mode = entry.stat(follow_symlinks=False).st_mode
            if entry.name.endswith(TEMP_SUFFIX) and stat.S_ISREG(mode):
                self.remove_temp(entry.path)
                continue
            if not stat.S_ISREG(mode):
                self.quarantine(path, f"unexpected non-file {entry.name!r}")
                return
            if entry.name == MESSAGE_NAME:
                has_message = True
                continue
            evpid = parse_evpid(entry.name)
            if evpid is None:
                self.quarantine(path, f"unexpected file {entry.name!r}")
                return
            if evpid >> 32 != msgid:
                self.quarantine(path, f"envelope {entry.name} of another message")
                return
            evpids.append(evpid)
        if not evpids:
            remove_tree(path)
            self.report.removed += 1
            log.info("spool: remove message without envelopes path=%s", self._rel(path))
            return
        if not has_message:
            self.quarantine(path, "message file missing")
            return
        try:
            verify_message_file(os.path.join(path, MESSAGE_NAME), self.key)
            for evpid in evpids:
                read_envelope_file(os.path.join(path, f"{evpid:016x}"), self.key, evpid)
        except (CorruptMessage, CorruptEnvelope) as exc:
            self.quarantine(path, str(exc))
            return
        self.report.kept_messages += 1
        self.report.kept_envelopes += len(evpids)


def recover(paths: SpoolPaths, key: bytes | None) -> RecoveryReport:
    """Purge, check and quarantine as described above; blocking.  Raises
    :class:`~mta.errors.SpoolError` if the spool cannot be read or changed."""
    recovery = _Recovery(paths, key)
    try:
        recovery.purge_incoming()
        recovery.purge_temporary()
        recovery.scan_queue()
    except OSError as exc:
        raise spool_error(exc, "recovering") from exc
    report = recovery.report
    log.info(
        "spool: recovered kept=%d envelopes=%d purged=%d removed=%d quarantined=%d",
        report.kept_messages,
        report.kept_envelopes,
        report.purged,
        report.removed,
        len(report.quarantined),
    )
    return report
