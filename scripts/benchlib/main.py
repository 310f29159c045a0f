"""The benchmark run: fetch smtp-source, measure every peer, print the report.

For each peer (``mta`` first, then aiosmtpd), in a fresh server process on a
free loopback port: a warm-up run, then one timed smtp-source run per
concurrency.  Then, in another fresh process, its resident memory before and
with N idle sessions open.  Exit status: 0 when every peer ran (targets missed
or not), 1 when a peer failed to run, 2 when the harness itself could not run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from benchlib.idle import idle_sessions
from benchlib.peers import BENCH_USER, PEERS, Peer
from benchlib.procs import Server, ServerError, free_port, raise_nofile
from benchlib.report import PeerResult, format_report
from benchlib.smtpsource import LoadError, SetupError, SmtpSource, fetch, run_load

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[2]
ADDRESS = f"{BENCH_USER}@localhost"
HARNESS_PID = "harness.pid"


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="smtp-source against mta and aiosmtpd: messages/s and memory",
        epilog="scripts/bench also takes --no-setup: skip scripts/setup and the bench extra.",
    )
    p.add_argument("--quick", action="store_true", help="300 messages per run (smoke check)")
    p.add_argument("--messages", type=int, help="messages per timed run (default 2000)")
    p.add_argument("--size", type=int, default=4096, help="message body bytes (default 4096)")
    p.add_argument(
        "--sessions",
        default="4,100",
        help="comma-separated concurrencies (default 4,100)",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="timed runs per concurrency; the best counts (1)"
    )
    p.add_argument("--idle", type=int, default=1000, help="idle sessions for memory (1000)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run (300)")
    p.add_argument(
        "--peers", default=",".join(p.name for p in PEERS), help="which servers (mta,aiosmtpd)"
    )
    p.add_argument("--mta", type=Path, help="the mta executable (default: next to python)")
    p.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench", help="cache dir")
    p.add_argument("--keep", action="store_true", help="keep spools, maildirs and logs")
    return p


def _remove_stale_runs(cache: Path) -> None:
    """Remove work directories left by a harness that was killed (kept ones have no pid file)."""
    for run in cache.glob("run-*"):
        try:
            pid = int((run / HARNESS_PID).read_text())
        except (OSError, ValueError):
            continue
        if not Path(f"/proc/{pid}").exists():
            shutil.rmtree(run, ignore_errors=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    del frame
    log(f"stopped by signal {signum}; stopping the servers")
    raise SystemExit(128 + signum)


def _started(server: Server, result: PeerResult, phase: str) -> bool:
    try:
        banner = server.start()
    except ServerError as exc:
        result.fail(phase, f"did not start: {exc}")
        return False
    log(f"{server.name}: pid {server.pid} on 127.0.0.1:{server.port}: {banner}")
    return True


def _throughput(
    peer: Peer,
    result: PeerResult,
    source: SmtpSource,
    workdir: Path,
    args: argparse.Namespace,
    concurrencies: list[int],
) -> None:
    port = free_port()
    sent = 0
    with peer.make(workdir, port, args.mta) as server:
        if not _started(server, result, "start"):
            return

        def load(sessions: int, messages: int) -> float:
            nonlocal sent
            r = run_load(
                source,
                port,
                sessions=sessions,
                messages=messages,
                size=args.size,
                sender=ADDRESS,
                recipient=ADDRESS,
                timeout=args.timeout,
            )
            sent += messages
            return r.seconds

        warm = min(args.messages, 200)
        try:
            log(f"{peer.name}: warm-up, {warm} messages over 10 sessions")
            load(10, warm)
        except LoadError as exc:
            result.fail("warm-up", _with_state(exc, server))
            return
        for c in concurrencies:
            for attempt in range(1, args.repeat + 1):
                cpu0 = server.cpu_seconds()
                try:
                    seconds = load(c, args.messages)
                except LoadError as exc:
                    result.fail(f"{c} sessions", _with_state(exc, server))
                    try:
                        server.check_alive()
                    except ServerError:
                        return
                    break
                rate = args.messages / seconds
                if rate > result.rates.get(c, 0.0):
                    result.rates[c] = rate
                    result.cpu_ms[c] = (server.cpu_seconds() - cpu0) * 1000 / args.messages
                run = f" (run {attempt} of {args.repeat})" if args.repeat > 1 else ""
                log(
                    f"{peer.name}: {c} sessions: {args.messages} messages in {seconds:.2f} s"
                    f" = {rate:.1f} msg/s{run}"
                )
    if sent and not result.failed:
        got = peer.accepted(workdir)
        if got != sent:
            result.fail("delivery check", f"the server recorded {got} messages, {sent} got a 250")


def _with_state(exc: Exception, server: Server) -> str:
    try:
        server.check_alive()
    except ServerError as dead:
        return f"{exc} (server {dead})"
    return f"{exc} (server log: {server.log_tail(2)})"


def _memory(peer: Peer, result: PeerResult, workdir: Path, args: argparse.Namespace) -> None:
    port = free_port()
    with peer.make(workdir, port, args.mta) as server:
        if not _started(server, result, "memory: start"):
            return
        time.sleep(1.0)
        result.rss_before_kib = server.rss_kib()
        log(f"{peer.name}: opening {args.idle} idle sessions")
        with idle_sessions(port, args.idle, timeout=min(args.timeout, 120.0)) as idle:
            time.sleep(1.0)
            try:
                server.check_alive()
            except ServerError as exc:
                result.fail("memory", exc)
                return
            result.rss_idle_kib = server.rss_kib()
            result.idle_greeted = idle.greeted
        if idle.greeted < idle.wanted:
            result.notes.append(
                f"only {idle.greeted} of {idle.wanted} idle sessions were greeted with 220"
                f" ({idle.refused} refused, {idle.failed} failed; first: {idle.first_problem})"
            )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.messages is None:
        args.messages = 300 if args.quick else 2000
    try:
        concurrencies = sorted({int(c) for c in args.sessions.split(",") if c.strip()})
    except ValueError:
        log(f"--sessions wants numbers separated by commas, not {args.sessions!r}")
        return 2
    wanted = [n.strip() for n in args.peers.split(",") if n.strip()]
    peers = [p for p in PEERS if p.name in wanted]
    if not peers or len(peers) != len(wanted) or min(concurrencies, default=0) < 1:
        log(f"--peers must name some of {', '.join(p.name for p in PEERS)}; sessions >= 1")
        return 2
    if args.repeat < 1 or args.messages < 1 or args.idle < 0:
        log("--repeat and --messages must be at least 1, --idle at least 0")
        return 2
    if args.mta is None:
        args.mta = Path(sys.executable).parent / "mta"
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)

    limit = raise_nofile()
    if limit < args.idle + 100:
        log(f"warning: file descriptor limit {limit} is below {args.idle} idle sessions")
    args.cache.mkdir(parents=True, exist_ok=True)
    try:
        source = fetch(args.cache, log)
    except SetupError as exc:
        log(f"cannot get smtp-source: {exc}")
        return 2
    log(f"smtp-source {source.version}: {source.binary}")

    _remove_stale_runs(args.cache)
    workroot = Path(tempfile.mkdtemp(prefix="run-", dir=args.cache))
    (workroot / HARNESS_PID).write_text(f"{os.getpid()}\n")
    results = [PeerResult(p.name) for p in peers]
    try:
        for peer, result in zip(peers, results, strict=True):
            tput = workroot / f"{peer.name}-throughput"
            mem = workroot / f"{peer.name}-memory"
            tput.mkdir()
            mem.mkdir()
            _throughput(peer, result, source, tput, args, concurrencies)
            if args.idle > 0:
                _memory(peer, result, mem, args)
    finally:
        if args.keep:
            (workroot / HARNESS_PID).unlink()
            log(f"kept {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)

    print(
        format_report(
            results,
            concurrencies=concurrencies,
            messages=args.messages,
            size=args.size,
            idle=args.idle,
            tool=f"smtp-source {source.version}",
            repeat=args.repeat,
        ),
        flush=True,
    )
    if any(r.failed for r in results):
        if not args.keep:
            log("a server failed; rerun with --keep to keep its logs")
        return 1
    return 0
