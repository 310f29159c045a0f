"""Full disk: the spool on a small tmpfs fills up; refusals must be temporary, nothing lost.

The run needs root: it mounts the tmpfs in a private mount namespace
(``unshare -m``), so the machine's mounts are never touched, and happens in
a driver process there (:mod:`faultlib.fulldisk_run`), which reports in
JSON.  Without root, or without ``unshare``, the row says so.  The promise:
while the spool is full, every message is refused with a 4xx (never a 5xx,
a dropped session or a dead daemon); no message that got a 250 is lost; once
space is freed, a new message is accepted again without a restart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from faultlib.context import Context
from faultlib.daemon import REPO
from faultlib.fulldisk_run import Outcome
from faultlib.report import Row

__all__ = ["full_disk", "judge", "unavailable"]

SCENARIO = "full disk"
MEASURED = "replies while full; accepted messages lost; accepted after freeing"
PROMISE = "4xx while full; 0 lost; accepts again once space is freed"
_TEMPORARY = re.compile(r"^(mail|rcpt|data) 4\d\d\b")


def unavailable() -> str | None:
    """Why the scenario cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (a tmpfs spool in a private mount namespace)"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"unshare -m does not work here: {probe.stderr.strip()[-120:]}"
    return None


def _counted(replies: list[str]) -> str:
    """``3x data 452 4.3.1 ...``: the same reply once, with how often it came."""
    seen: dict[str, int] = {}
    for reply in replies:
        seen[reply] = seen.get(reply, 0) + 1
    return ", ".join(f"{n}x {r}" if n > 1 else r for r, n in seen.items()) or "-"


def judge(out: Outcome, kib: int) -> Row:
    """The row for a driver's outcome."""
    if out.error and not out.acked and not out.first_refusal:
        return Row.broken(SCENARIO, MEASURED, PROMISE, out.error)
    refusals = [out.first_refusal, *out.full_replies]
    temporary = all(_TEMPORARY.match(r) for r in refusals)
    recovered = out.recovered.startswith("data 250")
    parts = [
        f"after {out.filled} accepted: {out.first_refusal or '-'}",
        f"with no space left: {_counted(out.full_replies)}",
        f"{len(out.lost)} lost of {len(out.acked)}",
        f"after freeing: {out.recovered or '-'}",
    ]
    if out.died:
        parts.append(f"the daemon died ({out.died})")
    if out.error:
        parts.append(out.error)
    ok = temporary and recovered and not out.lost and not out.died and not out.error
    return Row.judged(SCENARIO, f"1 spool of {kib} KiB", MEASURED, PROMISE, "; ".join(parts), ok)


def full_disk(ctx: Context) -> Row:
    why = unavailable()
    if why is not None:
        return Row.skipped(SCENARIO, MEASURED, PROMISE, why)
    kib = ctx.settings.disk_kib
    space = ctx.workspace("full-disk")
    env = dict(os.environ)
    scripts = str(REPO / "scripts")
    env["PYTHONPATH"] = os.pathsep.join([scripts, str(REPO), env.get("PYTHONPATH", "")])
    argv = ["unshare", "-m", "--propagation", "private", "--", sys.executable]
    argv += ["-m", "faultlib.fulldisk_run", "--workdir", str(space.root), "--kib", str(kib)]
    try:
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, env=env, timeout=900, check=False, text=True
        )
    except subprocess.TimeoutExpired:
        return Row.broken(SCENARIO, MEASURED, PROMISE, "the run did not end within 900 s")
    lines = proc.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
        out = Outcome(**data)
    except (IndexError, ValueError, TypeError):
        return Row.broken(
            SCENARIO, MEASURED, PROMISE, f"the driver said no result (exit {proc.returncode})"
        )
    return judge(out, kib)
