"""Re-submitting the offline drop once the daemon listens (OpenSMTPD's ``offline_scan``).

``mta-sendmail`` leaves a message in ``<spool>/offline/`` when the daemon is
down (:mod:`mta.enqueue.offline`).  About a second after the listeners are up,
:func:`run_offline_scan` goes through that directory in name (creation) order
and submits each file through the local enqueue socket
(:func:`~mta.server.resubmit.resubmit_file`), as ``mta-sendmail`` would have
for its owner.  A second pass a little later takes the files written while
the daemon was starting (after the first pass listed the directory).  The
submission side is imported only when there is a file to submit.
"""

from __future__ import annotations

import os

import trio

from mta.log import get_logger, visible
from mta.spool.paths import SpoolPaths

__all__ = ["run_offline_scan"]

log = get_logger("smtpd")


async def _scan(directory: str, socket_path: str, skip: frozenset[str]) -> set[str] | None:
    """One pass over the directory (names in ``skip`` left alone); the names seen,
    or None when the directory cannot be read."""
    try:
        names = sorted(await trio.to_thread.run_sync(os.listdir, directory))
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("offline: cannot read %s: %s", directory, exc.strerror)
        return None
    if not [name for name in names if name not in skip]:
        return set(names)
    from mta.enqueue.offline import is_offline_name
    from mta.enqueue.submit import ClientTimeouts
    from mta.server.resubmit import Resubmitted, resubmit_file

    try:
        timeouts = ClientTimeouts.from_env()
    except ValueError:
        timeouts = ClientTimeouts()
    counts = dict.fromkeys(Resubmitted, 0)
    for name in names:
        if name in skip:
            continue
        if not is_offline_name(name):
            if not name.startswith("."):
                log.warning("offline: %s: not an offline message; left alone", visible(name))
            continue
        try:
            outcome = await resubmit_file(directory, name, socket_path, timeouts=timeouts)
        except Exception:  # one bad file must never take the daemon down
            log.exception("offline: %s: re-submission failed; kept", visible(name))
            outcome = Resubmitted.KEPT
        counts[outcome] += 1
    if any(counts.values()):
        log.info(
            "offline: scan done, %d enqueued, %d partly, %d kept",
            counts[Resubmitted.DONE],
            counts[Resubmitted.NARROWED],
            counts[Resubmitted.KEPT],
        )
    return set(names)


async def run_offline_scan(
    spool_dir: str, socket_path: str, *, delay: float = 1.0, settle: float | None = 30.0
) -> None:
    """After ``delay`` seconds, re-submit every file of ``<spool_dir>/offline/``
    through the local socket at ``socket_path``; see the module docstring.

    ``settle`` seconds later, one more pass takes the files that appeared since
    (written by an ``mta-sendmail`` that found the daemon down just before it
    started listening); None: no second pass."""
    await trio.sleep(delay)
    directory = SpoolPaths(spool_dir).offline
    seen = await _scan(directory, socket_path, frozenset())
    if seen is None or settle is None:
        return
    await trio.sleep(settle)
    await _scan(directory, socket_path, frozenset(seen))
