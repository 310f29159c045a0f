"""The full-disk run, inside a private mount namespace (``unshare -m``), as root.

``python -m faultlib.fulldisk_run --workdir DIR --kib N`` mounts a tmpfs of
N KiB on ``DIR/spool`` (seen by this namespace only), starts the daemon on
it with deliveries paused, and:

1. sends 64 KiB messages (50 a session) until one is refused (or the session
   breaks): the space runs out while receiving;
2. fills what space is left with a file, and tries three more small
   messages, each on a session of its own: the spool is completely full;
3. removes the file, resumes deliveries (``mtactl resume mda``), waits for the
   queue to empty and sends one more message: it must be accepted.

Every message that got a 250 must then be in the Maildir (on the ordinary
disk).  It prints one JSON object on stdout (:class:`Outcome`); progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import smtplib
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchlib.procs import free_port

from faultlib.clients import settle
from faultlib.context import log
from faultlib.daemon import Daemon, DaemonError, Workspace
from faultlib.mail import Reply, connect, scan, send, token

__all__ = ["Outcome", "main"]

BIG = 64 * 1024
SMALL = 2048
PER_SESSION = 50  # a session may send 100 messages at most (OpenSMTPD's limit too)


@dataclass
class Outcome:
    acked: list[str] = field(default_factory=list)  # every token that got a 250
    filled: int = 0  # accepted in phase 1, before the first refusal
    first_refusal: str = ""  # "data 452 4.3.1 ...", or how the session broke
    full_replies: list[str] = field(default_factory=list)  # phase 2, one per attempt
    died: str = ""  # how the daemon ended, if it did
    lost: list[str] = field(default_factory=list)
    recovered: str = ""  # the reply to the message after space was freed
    error: str = ""  # the run itself could not go on


def _describe(reply: Reply) -> str:
    return f"{reply.stage} {reply.code} {reply.text}".strip()


def _fill(daemon: Daemon, out: Outcome, limit: int) -> None:
    """Phase 1: 64 KiB messages, :data:`PER_SESSION` a session, until one is not accepted."""
    n = 0
    while n < limit:
        client = connect(daemon.port)
        try:
            for _ in range(PER_SESSION):
                tok = token("disk", n, BIG)
                n += 1
                try:
                    reply = send(client, tok)
                except (OSError, smtplib.SMTPException) as exc:
                    out.first_refusal = f"session broke: {type(exc).__name__} {exc}"
                    return
                if not reply.accepted:
                    out.first_refusal = _describe(reply)
                    return
                out.acked.append(tok)
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()
            client.close()
    out.first_refusal = f"none: {limit} messages accepted"


def _fill_rest(path: Path) -> int:
    """Write ``path`` until the filesystem is full; the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for size in (65536, 4096, 512):
            try:
                while True:
                    written += f.write(b"\0" * size) or 0
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
    return written


def _attempt(daemon: Daemon, tok: str) -> tuple[str, bool]:
    """One message on a session of its own: (what happened, accepted)."""
    try:
        client = connect(daemon.port)
    except (OSError, smtplib.SMTPException) as exc:
        return f"no session: {type(exc).__name__} {exc}", False
    try:
        reply = send(client, tok)
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.quit()
    except (OSError, smtplib.SMTPException) as exc:
        return f"session broke: {type(exc).__name__} {exc}", False
    finally:
        client.close()
    return _describe(reply), reply.accepted


def _resume(daemon: Daemon) -> None:
    """``mtactl --spool SPOOL resume mda`` (its ``main``, with this interpreter)."""
    code = "import sys; from mta.cli.ctl import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "--spool", str(daemon.space.spool), "resume", "mda"]
    subprocess.run(argv, env=daemon.env, capture_output=True, timeout=60, check=True)


def run(space: Workspace, kib: int, out: Outcome) -> None:
    """The three phases; what they found goes into ``out`` as they go."""
    space.spool.mkdir(mode=0o700)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0700", "tmpfs", str(space.spool)],
        check=True,
        capture_output=True,
    )
    daemon = Daemon(space, free_port())
    daemon.start(paused=("mda",))
    with daemon:
        _fill(daemon, out, limit=2 * kib * 1024 // BIG + 20)
        out.filled = len(out.acked)
        log(f"full disk: {out.filled} accepted, then: {out.first_refusal}")
        filler = space.spool / "filler"
        log(f"full disk: {_fill_rest(filler)} more bytes fill the spool")
        for n in range(3):
            what, accepted = _attempt(daemon, token("full", n, SMALL))
            out.full_replies.append(what)
            if accepted:
                out.acked.append(token("full", n, SMALL))
        log(f"full disk: with no space left: {'; '.join(out.full_replies)}")
        if not daemon.alive():
            out.died = daemon.exit_text()
            daemon.start()
        filler.unlink()
        _resume(daemon)
        if not settle(space.spool, space.maildir, 120.0):
            out.error = f"{daemon.queued()} message(s) still queued 120 s after resume mda"
        what, accepted = _attempt(daemon, token("after", 0, SMALL))
        out.recovered = what
        if accepted:
            out.acked.append(token("after", 0, SMALL))
        settle(space.spool, space.maildir, 60.0)
        if not daemon.alive() and not out.died:
            out.died = daemon.exit_text()
    delivered = scan(space.maildir)
    out.lost = sorted(delivered.lost(set(out.acked)))
    log(f"full disk: after freeing space: {out.recovered}; {len(out.lost)} lost")


def _private() -> bool:
    """Whether this process's mount namespace differs from its parent's."""
    try:
        return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m faultlib.fulldisk_run")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--kib", type=int, required=True)
    args = p.parse_args(argv)
    out = Outcome()
    if not _private():
        out.error = "not in a private mount namespace (run it under unshare -m)"
    else:
        try:
            run(Workspace(args.workdir), args.kib, out)
        except (OSError, subprocess.SubprocessError, DaemonError, smtplib.SMTPException) as exc:
            out.error = f"{type(exc).__name__}: {exc}"
    print(json.dumps(asdict(out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
