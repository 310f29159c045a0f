"""One end-to-end run (delivery or relay), inside private network and mount namespaces.

``scripts/bench`` starts it as ``unshare -m -n python -m benchlib.delivery_run
...``: it brings ``lo`` up (the namespace has no other interface, so DNS
lookups fail at once), starts the server (``mta`` or OpenSMTPD, the latter on a
private spool, see :mod:`benchlib.opensmtpd`), waits for its banner, then runs
smtp-source in the same namespace and times from its start (the first
connection) until every message is a file in the Maildir's ``new/`` or, with
``--sink``, until Postfix's smtp-sink, started first in the same namespace,
has counted every message.  A short wait afterwards catches late duplicates;
the server is stopped and its log counted (``delivery ...
result=Ok|TempFail|PermFail``, both servers' format, mda and mta alike).
The outcome is one JSON object on stdout; progress goes to stderr.

``mta`` runs as ``mta -d -f conf --spool DIR`` (deliveries not paused) with the
caller's environment: ``MTA_DNS`` is normally unset, so its resolver tries the
nameservers of /etc/resolv.conf, unreachable here, as OpenSMTPD's does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from benchlib.opensmtpd import NamespaceError, opensmtpd_server, private_paths
from benchlib.procs import Server, ServerError
from benchlib.smtpsource import LoadError, SmtpSource, run_load, sink_count, sink_server

__all__ = ["SERVERS", "RunOutcome", "count_maildir", "loopback_up", "main"]

SERVERS = ("mta", "opensmtpd")
POLL = 0.01  # seconds between two looks at new/
SETTLE = 1.0  # seconds to wait for duplicates once all are there
_RESULT = re.compile(r" delivery .*\bresult=\"?(\w+)")  # mta_log quotes it, mda_log not


@dataclass
class RunOutcome:
    """What one run measured; ``error`` says why it stopped early (None: it did not)."""

    delivered: int = 0  # files in new/ (or received by the sink) at the end, after the settle
    seconds: float | None = None  # first connection until all were in new/ (at the sink)
    sent_seconds: float | None = None  # first connection until smtp-source exited
    cpu_seconds: float = 0.0  # the server's process tree (reaped processes only)
    results: dict[str, int] = field(default_factory=dict)  # log: result=X -> count
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunOutcome:
        data = json.loads(text)
        return cls(**data)


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def count_maildir(maildir: Path) -> int:
    """Files in ``maildir/new`` (0 before the first delivery created it)."""
    try:
        with os.scandir(maildir / "new") as it:
            return sum(1 for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchlib.delivery_run")
    p.add_argument("--server", choices=SERVERS, required=True)
    p.add_argument("--conf", type=Path, required=True, help="the smtpd.conf of both servers")
    p.add_argument("--workdir", type=Path, required=True, help="spool and log of this run")
    p.add_argument("--maildir", type=Path, required=True, help="where the conf delivers")
    p.add_argument("--port", type=int, required=True, help="the conf's listen port")
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--address", required=True, help="sender and recipient")
    p.add_argument("--timeout", type=float, required=True, help="seconds for the whole run")
    p.add_argument("--mta", type=Path, required=True, help="the mta executable")
    p.add_argument("--smtp-source", type=Path, required=True)
    p.add_argument("--smtp-source-libdir", type=Path, help="its shared libraries")
    p.add_argument(
        "--sink", action="store_true", help="count what smtp-sink (next to smtp-source) receives"
    )
    p.add_argument("--sink-port", type=int, default=2526, help="where the conf relays")
    return p


def loopback_up() -> None:
    proc = subprocess.run(
        ["ip", "link", "set", "lo", "up"], capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise NamespaceError(f"ip link set lo up: {proc.stderr.strip()}")


def _server(args: argparse.Namespace) -> Server:
    if args.server == "opensmtpd":
        private_paths(args.workdir / "smtpd-spool")
        return opensmtpd_server(args.workdir, args.conf, args.port)
    return Server(
        "mta",
        [str(args.mta), "-d", "-f", str(args.conf), "--spool", str(args.workdir / "spool")],
        port=args.port,
        log_path=args.workdir / "server.log",
        cwd=args.workdir,
    )


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _log_results(server: Server) -> dict[str, int]:
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return {}
    counts: dict[str, int] = {}
    for m in _RESULT.finditer(text):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def _measure(
    servers: list[Server],
    source: SmtpSource,
    args: argparse.Namespace,
    count: Callable[[], int],
    out: RunOutcome,
) -> None:
    """Send, then wait until ``count()`` reaches all (or the time is up, or one of
    ``servers`` died); fills ``out``."""
    start = time.monotonic()
    deadline = start + args.timeout
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
    out.sent_seconds = time.monotonic() - start
    while (n := count()) < args.messages:
        if time.monotonic() > deadline:
            out.error = f"{n} of {args.messages} delivered within {args.timeout:g} s"
            break
        for server in servers:
            server.check_alive()
        time.sleep(POLL)
    else:
        out.seconds = time.monotonic() - start
        time.sleep(SETTLE)


def _terminate(signum: int, frame: FrameType | None) -> None:
    del frame
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    source = SmtpSource(args.smtp_source, args.smtp_source_libdir, "")
    out = RunOutcome()
    server: Server | None = None
    sink = sink_server(source, args.workdir, args.sink_port) if args.sink else None

    def count() -> int:
        if sink is not None:
            return sink_count(sink.log_path)
        return count_maildir(args.maildir)

    try:
        with ExitStack() as stack:  # the sink stops last, after the server's CPU is read
            loopback_up()
            if sink is not None:
                stack.enter_context(sink)
                banner = sink.start()
                log(f"smtp-sink: pid {sink.pid} on 127.0.0.1:{args.sink_port}: {banner}")
            server = stack.enter_context(_server(args))
            banner = server.start()
            log(f"{args.server}: pid {server.pid} on 127.0.0.1:{args.port}: {banner}")
            try:
                watched = [server] if sink is None else [server, sink]
                _measure(watched, source, args, count, out)
            finally:
                cpu1 = _children_cpu()  # smtp-source was reaped: the rest is the server's
                server.stop()
                out.cpu_seconds = _children_cpu() - cpu1
    except (NamespaceError, ServerError, LoadError, OSError, subprocess.SubprocessError) as exc:
        out.error = str(exc)
        if server is not None:
            out.error += f" (server log: {server.log_tail(2)})"
    out.delivered = count()
    if server is not None:
        out.results = _log_results(server)
    print(out.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
