"""Maildir ``tmp/`` orphans: what the crash trials left behind, and whether mta cleans it.

A delivery killed between creating its ``tmp/`` file and linking it into
``new/`` leaves the file behind: no MTA can avoid that.  The maildir
convention (cr.yp.to/proto/maildir.html) is that a delivering program removes
files of ``tmp/`` not accessed for 36 hours.  So the row counts the files the
crash scenarios left, then ages them past 36 hours (``os.utime``), restarts the
daemon of each Maildir, delivers one message into it and checks that every aged
file is gone and each removal is logged (``maildir: removed stale tmp file``).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from faultlib.context import Context, log
from faultlib.daemon import Daemon, DaemonError, Workspace
from faultlib.mail import connect, delivered_count, orphans, send, token
from faultlib.report import Row

__all__ = ["AGE", "orphan_row"]

SCENARIO = "Maildir tmp/ orphans"
MEASURED = "files the kills left in tmp/; removed at the next delivery once 36 h old"
PROMISE = "every file older than 36 h removed by the next delivery, each removal logged"
AGE = 37 * 3600  # seconds the orphans are made to look old: past the convention's 36 hours
REMOVED = "maildir: removed stale tmp file"
_PORT = re.compile(r"\bport (\d+)")


def _age(tmp: Path) -> int:
    """Make every file of ``tmp`` look ``AGE`` seconds old; how many there are."""
    then = time.time() - AGE
    names = os.listdir(tmp)
    for name in names:
        os.utime(tmp / name, (then, then), follow_symlinks=False)
    return len(names)


def _sweep(space: Workspace, timeout: float = 30.0) -> tuple[int, int]:
    """Deliver one message into the workspace's Maildir: (files left in tmp/,
    removals logged)."""
    match = _PORT.search(space.conf.read_text())
    if match is None:
        raise DaemonError(f"no listen port in {space.conf}")
    daemon = Daemon(space, int(match.group(1)))
    offset = daemon.log_offset()
    before = delivered_count(space.maildir)
    daemon.start()
    try:
        client = connect(daemon.port)
        try:
            reply = send(client, token("sweep", 0))
        finally:
            client.close()
        if reply.code != 250:
            raise DaemonError(f"the message that should sweep tmp/ got {reply}")
        deadline = time.monotonic() + timeout
        while delivered_count(space.maildir) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        daemon.stop()
    return orphans(space.maildir), daemon.log_since(offset).count(REMOVED)


def orphan_row(ctx: Context) -> Row:
    """Files left in ``tmp/`` of the crash scenarios' Maildirs, and their sweep."""
    if not ctx.maildirs:
        return Row.skipped(SCENARIO, MEASURED, PROMISE, "no crash scenario ran")
    left = aged = remaining = logged = 0
    parts = []
    for maildir in ctx.maildirs:
        space = Workspace(maildir.parent.parent)
        found = orphans(maildir)
        left += found
        if not found:
            parts.append(f"{space.root.name}: 0")
            continue
        aged += _age(maildir / "tmp")
        try:
            still, removed = _sweep(space)
        except (DaemonError, OSError) as exc:
            return Row.broken(SCENARIO, MEASURED, PROMISE, f"{space.root.name}: {exc}")
        remaining += still
        logged += removed
        name = space.root.name
        log(f"{SCENARIO}: {name}: {found} left, {still} after the sweep, {removed} logged")
        parts.append(f"{space.root.name}: {found}")
    result = (
        f"{left} file(s) left by the kills ({', '.join(parts)}); aged past 36 h, "
        f"{aged - remaining} removed by the next delivery, {logged} removal(s) logged, "
        f"{remaining} left"
    )
    trials = f"{len(ctx.maildirs)} Maildir(s)"
    return Row.judged(
        SCENARIO, trials, MEASURED, PROMISE, result, remaining == 0 and logged == aged
    )
