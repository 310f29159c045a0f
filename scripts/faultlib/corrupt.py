"""Corrupt spool: damaged message files must be quarantined, never delivered damaged, never lost.

Twice ``corrupt`` messages are queued with deliveries paused, the daemon
stops, and ``corrupt`` of the message files get three letters of their
body flipped (XOR 0x20: the lines stay lines, the body changes), in the
content section that :mod:`mta.spool.msgfile` frames (content, envelopes,
trailer; the trailer gives the content's length).  Then the daemon starts
delivering.  For each damaged message: quarantined (in ``corrupt/``),
delivered damaged, delivered intact (the damage went unseen and did no
harm: impossible here, since the body changed), or lost.  The untouched ones
must all be delivered intact.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchlib.procs import free_port

from faultlib.clients import send_all, settle
from faultlib.context import Context, log
from faultlib.daemon import Daemon, DaemonError, queued_messages
from faultlib.mail import scan, token, tokens_in
from faultlib.report import Row
from mta.spool.msgfile import read_tail

__all__ = ["corrupt_spool", "damage"]

SCENARIO = "corrupt spool"
MEASURED = "damaged message files: quarantined / delivered damaged / lost"
PROMISE = "all quarantined to corrupt/, 0 delivered damaged, 0 lost"
FLIPS = 3


def damage(path: Path, offsets: list[float]) -> str | None:
    """Flip the case of letters in the body of the message file ``path``, at the
    given fractions of the body; returns the token it holds (None: not ours)."""
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        length = read_tail(f, size).content_length
        f.seek(0)
        content = f.read(length)
        found = tokens_in(content)
        start = content.find(b"\r\n\r\n") + 4
        if len(found) != 1 or start < 4 or start >= length:
            return None
        for fraction in offsets:
            at = start + int(fraction * (length - start - 1))
            while at < length and not content[at : at + 1].isalpha():
                at += 1
            if at < length:
                f.seek(at)
                f.write(bytes([content[at] ^ 0x20]))
        f.flush()
        os.fsync(f.fileno())
    return found.pop()


def _quarantined(spool: Path) -> set[str]:
    """The tokens in the files under ``spool/corrupt/``."""
    found: set[str] = set()
    for root, _, names in os.walk(spool / "corrupt"):
        for name in names:
            try:
                found |= tokens_in((Path(root) / name).read_bytes())
            except OSError:
                continue
    return found


def corrupt_spool(ctx: Context) -> Row:
    k = ctx.settings.corrupt
    space = ctx.workspace("corrupt-spool")
    daemon = Daemon(space, free_port())
    try:
        daemon.start(paused=("mda",))
    except DaemonError as exc:
        return Row.broken(SCENARIO, MEASURED, PROMISE, str(exc))
    with daemon:
        acked = send_all(daemon.port, [token("c", i) for i in range(2 * k)]).acked
        daemon.stop()
        files = queued_messages(space.spool)
        damaged: set[str] = set()
        for path in ctx.rng.sample(files, min(k, len(files))):
            tok = damage(path, sorted(ctx.rng.random() for _ in range(FLIPS)))
            if tok is not None:
                damaged.add(tok)
        try:
            daemon.start()
        except DaemonError as exc:
            return Row.judged(
                SCENARIO, f"{len(damaged)} files", MEASURED, PROMISE, f"no restart: {exc}", False
            )
        settled = settle(space.spool, space.maildir, 60.0)
    found = scan(space.maildir)
    quarantined = _quarantined(space.spool) & damaged
    shown = {t for t in damaged if found.damaged[t]}
    lost = {t for t in acked if not found.copies[t] and t not in quarantined}
    spoiled = {t for t in acked - damaged if found.damaged[t]}
    for n, tok in enumerate(sorted(damaged), 1):
        fate = (
            "quarantined"
            if tok in quarantined
            else "delivered damaged"
            if tok in shown
            else "lost"
            if tok in lost
            else "delivered intact"
        )
        log(f"{SCENARIO} {n}/{len(damaged)}: {tok}: {fate}")
    result = (
        f"of {len(damaged)}: {len(quarantined)} quarantined, {len(shown)} delivered damaged,"
        f" {len(lost & damaged)} lost; of {len(acked - damaged)} untouched:"
        f" {len(lost - damaged)} lost, {len(spoiled)} damaged"
    )
    if not settled:
        result += f"; {daemon.queued()} still queued after 60 s"
    ok = settled and len(quarantined) == len(damaged) == k and not shown and not (lost | spoiled)
    return Row.judged(SCENARIO, f"{len(damaged)} files", MEASURED, PROMISE, result, ok)
