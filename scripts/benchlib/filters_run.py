"""One acceptance run of the filters figure, inside private network and mount namespaces.

``scripts/bench`` starts it as ``unshare -m -n python -m benchlib.filters_run
...``: it brings ``lo`` up, starts the server (``mta`` or OpenSMTPD, the
latter on a private spool, see :mod:`benchlib.opensmtpd`) with local
delivery paused (``-P mda``, both servers), waits for its banner, then times
smtp-source from its start (the first connection) until it exits: every
message got its 250, so it is received, through the filters, and queued; the
server's CPU time over that time is read from /proc for its whole process
tree (OpenSMTPD's processes, the filter processes of both).
The server is stopped, and the messages in its queue counted: how many, how
many carry a ``DKIM-Signature`` header and how many the ``X-Spam: Yes`` of a
junked session (:func:`count_queue`).  The outcome is one JSON object on
stdout; progress goes to stderr.

``mta`` runs as ``mta -d -f conf --spool DIR -P mda`` with the caller's
environment (``MTA_DNS`` normally unset, as in the delivery figure);
OpenSMTPD as ``smtpd -d -f conf -P mda``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from benchlib.delivery_run import SERVERS, loopback_up
from benchlib.opensmtpd import NamespaceError, opensmtpd_server, private_paths
from benchlib.procs import Server, ServerError
from benchlib.smtpsource import LoadError, SmtpSource, run_load

__all__ = ["AcceptOutcome", "QueueCount", "count_queue", "main", "queue_messages"]

PAUSE = ["-P", "mda"]  # both servers: receive and queue, deliver nothing
HEAD_BYTES = 16384  # where the headers a filter adds are looked for
SIGNATURE = b"DKIM-Signature:"
JUNK = b"X-Spam: Yes"


@dataclass(frozen=True)
class QueueCount:
    """Messages in a stopped server's queue, and those with a given header."""

    messages: int = 0
    signed: int = 0  # with a DKIM-Signature header
    junk: int = 0  # with X-Spam: Yes


@dataclass
class AcceptOutcome:
    """What one run measured; ``error`` says why it stopped early (None: it did not)."""

    seconds: float | None = None  # first connection until smtp-source exited (all got 250)
    cpu_seconds: float = 0.0  # the server's process tree, filters included, during the load
    queued: QueueCount = field(default_factory=QueueCount)
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AcceptOutcome:
        data = json.loads(text)
        data["queued"] = QueueCount(**data.get("queued") or {})
        return cls(**data)


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _hex(name: str, width: int) -> bool:
    return len(name) == width and all(c in "0123456789abcdef" for c in name)


def queue_messages(server: str, spool: Path) -> list[Path]:
    """The committed messages' files under ``spool``: mta's ``queue/BB/MSGID``
    (one file, the content first: :mod:`mta.spool.msgfile`), OpenSMTPD's
    ``queue/BB/MSGID/message``."""
    found: list[Path] = []
    queue = spool / "queue"
    if not queue.is_dir():
        return found
    for bucket in sorted(queue.iterdir()):
        if not _hex(bucket.name, 2) or not bucket.is_dir():
            continue
        for entry in sorted(bucket.iterdir()):
            if not _hex(entry.name, 8):
                continue
            if server == "opensmtpd":
                if (entry / "message").is_file():
                    found.append(entry / "message")
            elif entry.is_file():
                found.append(entry)
    return found


def count_queue(server: str, spool: Path) -> QueueCount:
    """Count the queued messages and the headers filters add (see the module doc)."""
    messages = signed = junk = 0
    for path in queue_messages(server, spool):
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES).partition(b"\r\n\r\n")[0].partition(b"\n\n")[0]
        messages += 1
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        signed += any(line.startswith(SIGNATURE) for line in lines)
        junk += any(line == JUNK for line in lines)
    return QueueCount(messages, signed, junk)


def spool_of(server: str, workdir: Path) -> Path:
    """Where a run's server keeps its queue (on the host too, after the run)."""
    return workdir / ("smtpd-spool" if server == "opensmtpd" else "spool")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchlib.filters_run")
    p.add_argument("--server", choices=SERVERS, required=True)
    p.add_argument("--conf", type=Path, required=True, help="the smtpd.conf of this run")
    p.add_argument("--workdir", type=Path, required=True, help="spool and log of this run")
    p.add_argument("--port", type=int, required=True, help="the conf's listen port")
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--address", required=True, help="sender and recipient")
    p.add_argument("--timeout", type=float, required=True, help="seconds for the load")
    p.add_argument("--mta", type=Path, required=True, help="the mta executable")
    p.add_argument("--smtp-source", type=Path, required=True)
    p.add_argument("--smtp-source-libdir", type=Path, help="its shared libraries")
    return p


def _server(args: argparse.Namespace) -> Server:
    spool = spool_of(args.server, args.workdir)
    if args.server == "opensmtpd":
        private_paths(spool)
        return opensmtpd_server(args.workdir, args.conf, args.port, extra=PAUSE)
    argv = [str(args.mta), "-d", "-f", str(args.conf), "--spool", str(spool), *PAUSE]
    return Server(
        "mta", argv, port=args.port, log_path=args.workdir / "server.log", cwd=args.workdir
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    del frame
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    source = SmtpSource(args.smtp_source, args.smtp_source_libdir, "")
    out = AcceptOutcome()
    server: Server | None = None
    try:
        loopback_up()
        with _server(args) as server:
            banner = server.start()
            log(f"{args.server}: pid {server.pid} on 127.0.0.1:{args.port}: {banner}")
            cpu0 = server.cpu_seconds()
            start = time.monotonic()
            run_load(
                source,
                args.port,
                sessions=args.sessions,
                messages=args.messages,
                size=args.size,
                sender=args.address,
                recipient=args.address,
                timeout=args.timeout,
            )
            out.seconds = time.monotonic() - start
            out.cpu_seconds = server.cpu_seconds() - cpu0
            server.check_alive()
    except (NamespaceError, ServerError, LoadError, OSError, subprocess.SubprocessError) as exc:
        out.seconds = None
        out.error = str(exc)
        if server is not None:
            out.error += f" (server log: {server.log_tail(2)})"
    try:
        out.queued = count_queue(args.server, spool_of(args.server, args.workdir))
    except OSError as exc:
        out.error = out.error or f"cannot read the queue: {exc}"
    print(out.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
