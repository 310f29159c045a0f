"""The benchmark run: fetch smtp-source, measure every peer, print the report.

Six sections (``--sections``).  Throughput: every peer's server (``mta``
and aiosmtpd) runs in a fresh process on a free loopback port: a warm-up run
each, then the timed smtp-source runs take turns (each round, each
concurrency, each peer), so both see the same machine; every run is printed
and the median of each counts (so in every section).  Memory: in another
fresh process per peer, its resident memory before and with N idle sessions
open.  Delivery: mta against OpenSMTPD, from
the first connection until every message is in the Maildir, each run in
private namespaces (:mod:`benchlib.delivery`; skipped, saying why, when not
root).  Relay: the same, but the servers relay every message to Postfix's
smtp-sink in the namespace, until it has received them all.  Filters:
acceptance throughput with filters on the listener, mta against OpenSMTPD
with Debian's filter-dkimsign, and mta with a chain of builtin filters
against none, each run in private namespaces (:mod:`benchlib.filters`;
skipped, saying why, when not root).  Startup: how soon mta.testing.MailServer
is ready, against aiosmtpd's Controller (:mod:`benchlib.startup`).  Backlog:
acceptance on a daemon whose spool already holds many queued envelopes,
against an empty spool (:mod:`benchlib.backlog`).  The runs' files (spools,
Maildirs, logs) live on a fresh journaled ext4 made for the run when it can
(:mod:`benchlib.scratch`), and the report names the file system.  Exit status: 0
when every server ran (targets missed or not), 1 when one failed to run, 2
when the harness itself could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from benchlib.backlog import RECIPIENTS, BacklogSettings, measure_backlog
from benchlib.backlog_report import BacklogPair, format_backlog
from benchlib.delivery import DeliveryFigure, DeliverySettings, measure_delivery
from benchlib.filters import CHAIN, FilterFigure, FilterSettings, measure_filters
from benchlib.filters_report import format_filters
from benchlib.idle import idle_sessions
from benchlib.peers import BENCH_USER, PEERS, Peer
from benchlib.procs import Server, ServerError, free_port, raise_nofile, remove_stale_dirs
from benchlib.report import DELIVERY, RELAY, EndToEnd, PeerResult, format_delivery, format_report
from benchlib.scratch import Scratch, image_bytes, scratch_area
from benchlib.smtpsource import LoadError, SetupError, SmtpSource, fetch, run_load
from benchlib.startup import StartupFigure, format_startup, measure_startup

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[2]
ADDRESS = f"{BENCH_USER}@localhost"
HARNESS_PID = "harness.pid"
SECTIONS = ("throughput", "memory", "delivery", "relay", "filters", "startup", "backlog")
STARTS = 20  # further servers started per startup run
END_TO_END = (DELIVERY, RELAY)
BACKLOG_SESSIONS = 4
WARM = 200  # warm-up messages per peer, at most (see _throughput)


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="smtp-source against mta and aiosmtpd (messages/s, memory) and, end to end"
        " with delivery to a Maildir or relaying to smtp-sink, against OpenSMTPD",
        epilog="scripts/bench also takes --no-setup: skip scripts/setup and the bench extra.",
    )
    p.add_argument("--quick", action="store_true", help="300 messages per run (smoke check)")
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated sections to run (default: all of " + ",".join(SECTIONS) + ")",
    )
    p.add_argument("--messages", type=int, help="messages per timed run (default 2000)")
    p.add_argument("--size", type=int, default=4096, help="message body bytes (default 4096)")
    p.add_argument(
        "--sessions",
        default="4,100",
        help="comma-separated concurrencies (default 4,100)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed rounds per concurrency (and per backlog); the median counts (3)",
    )
    p.add_argument("--idle", type=int, default=1000, help="idle sessions for memory (1000)")
    p.add_argument(
        "--delivery-sessions",
        default="4,10,50",
        help="comma-separated concurrencies of the delivery runs (default 4,10,50)",
    )
    p.add_argument(
        "--relay-sessions",
        default="4",
        help="comma-separated concurrencies of the relay runs (default 4)",
    )
    p.add_argument(
        "--backlog",
        help="comma-separated envelopes already queued, one backlog figure each"
        " (default 10000,100000; 1000,10000 with --quick)",
    )
    p.add_argument(
        "--backlog-retrying",
        type=float,
        default=0.1,
        help="share of the backlog waiting for a retry, the rest paused (default 0.1)",
    )
    p.add_argument(
        "--filter-sessions",
        default="4,20",
        help="comma-separated concurrencies of the filters runs (default 4,20)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run (300)")
    p.add_argument(
        "--peers", default=",".join(p.name for p in PEERS), help="which servers (mta,aiosmtpd)"
    )
    p.add_argument("--mta", type=Path, help="the mta executable (default: next to python)")
    p.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench", help="cache dir")
    p.add_argument(
        "--scratch",
        type=Path,
        metavar="DIR",
        help="keep the runs' files in DIR (default: as root, a fresh journaled ext4 made"
        " and mounted for the run, else the cache dir); for the root-only sections, the"
        " users deliveries and filters run as must be able to reach DIR",
    )
    p.add_argument("--keep", action="store_true", help="keep spools, maildirs and logs")
    return p


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


@dataclass
class _Run:
    """One peer's throughput server while the runs go on."""

    peer: Peer
    result: PeerResult
    server: Server
    workdir: Path
    port: int
    sent: int = 0
    dead: bool = False
    failed_at: set[int] = field(default_factory=set)


def _throughput(
    runs_of: list[tuple[Peer, PeerResult, Path]],
    source: SmtpSource,
    args: argparse.Namespace,
    concurrencies: list[int],
) -> None:
    """Every peer's server runs at once; the timed runs take turns (for each round,
    each concurrency, each peer), so a machine that gets slower or faster during
    the benchmark weighs on every peer alike.  The median of each one's runs counts."""
    with contextlib.ExitStack() as stack:
        runs: list[_Run] = []
        for peer, result, workdir in runs_of:
            port = free_port()
            server = stack.enter_context(peer.make(workdir, port, args.mta))
            if _started(server, result, "start"):
                runs.append(_Run(peer, result, server, workdir, port))

        def load(run: _Run, sessions: int, messages: int) -> float:
            r = run_load(
                source,
                run.port,
                sessions=sessions,
                messages=messages,
                size=args.size,
                sender=ADDRESS,
                recipient=ADDRESS,
                timeout=args.timeout,
            )
            run.sent += messages
            return r.seconds

        warm = min(args.messages, WARM)
        for run in runs:
            try:
                log(f"{run.peer.name}: warm-up, {warm} messages over 10 sessions")
                load(run, 10, warm)
            except LoadError as exc:
                run.result.fail("warm-up", _with_state(exc, run.server))
                run.dead = True
        for attempt in range(1, args.repeat + 1):
            for c in concurrencies:
                for run in runs:
                    if run.dead or c in run.failed_at:
                        continue
                    _timed(run, c, attempt, load, args)
    for run in runs:
        if run.sent and not run.result.failed:
            got = run.peer.accepted(run.workdir)
            if got != run.sent:
                run.result.fail(
                    "delivery check", f"the server recorded {got} messages, {run.sent} got a 250"
                )


def _timed(
    run: _Run,
    c: int,
    attempt: int,
    load: Callable[[_Run, int, int], float],
    args: argparse.Namespace,
) -> None:
    """One timed run of ``run``'s server at ``c`` sessions, recorded in its result."""
    result, server = run.result, run.server
    cpu0 = server.cpu_seconds()
    try:
        seconds = load(run, c, args.messages)
    except LoadError as exc:
        result.fail(f"{c} sessions", _with_state(exc, server))
        run.failed_at.add(c)
        try:
            server.check_alive()
        except ServerError:
            run.dead = True
        return
    rate = args.messages / seconds
    result.record(c, rate, (server.cpu_seconds() - cpu0) * 1000 / args.messages)
    label = f" (run {attempt} of {args.repeat})" if args.repeat > 1 else ""
    log(
        f"{run.peer.name}: {c} sessions: {args.messages} messages in {seconds:.2f} s"
        f" = {rate:.1f} msg/s{label}"
    )


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


def _numbers(text: str) -> list[int]:
    """``"4,100"`` -> ``[4, 100]``, sorted, without duplicates."""
    return sorted({int(c) for c in text.split(",") if c.strip()})


def _end_to_end(
    kind: EndToEnd,
    source: SmtpSource,
    workroot: Path,
    args: argparse.Namespace,
    concurrencies: list[int],
) -> DeliveryFigure:
    settings = DeliverySettings(
        messages=args.messages,
        concurrencies=concurrencies,
        size=args.size,
        repeat=args.repeat,
        timeout=args.timeout,
        address=ADDRESS,
        mta=args.mta,
        keep=args.keep,
        kind=kind,
        boxes=args.boxes,
    )
    return measure_delivery(source, workroot, settings, log)


def _filters(
    source: SmtpSource, workroot: Path, args: argparse.Namespace, concurrencies: list[int]
) -> FilterFigure:
    settings = FilterSettings(
        messages=args.messages,
        concurrencies=concurrencies,
        size=args.size,
        repeat=args.repeat,
        timeout=args.timeout,
        address=ADDRESS,
        mta=args.mta,
        keep=args.keep,
        boxes=args.boxes,
    )
    return measure_filters(source, workroot, settings, log)


def _backlog(
    source: SmtpSource, workroot: Path, args: argparse.Namespace, sizes: list[int]
) -> list[BacklogPair]:
    settings = BacklogSettings(
        sizes=sizes,
        messages=args.messages,
        size=args.size,
        sessions=BACKLOG_SESSIONS,
        repeat=args.repeat,
        timeout=args.timeout,
        mta=args.mta,
        retrying=args.backlog_retrying,
        address=ADDRESS,
    )
    return measure_backlog(source, workroot, settings, log)


def _leave(workroot: Path, scratch: Scratch, args: argparse.Namespace) -> None:
    """Remove the run's files, or with ``--keep`` keep them (copied to the cache first
    when they are on the run's own file system, which goes next)."""
    if not args.keep:
        if not scratch.mounted:  # else the whole file system goes
            shutil.rmtree(workroot, ignore_errors=True)
        return
    (workroot / HARNESS_PID).unlink()
    if not scratch.mounted:
        log(f"kept {workroot}")
        return
    dest = Path(tempfile.mkdtemp(prefix="kept-", dir=args.cache))
    names = [p for p in scratch.root.iterdir() if p.name != "lost+found"]
    subprocess.run(["cp", "-a", *map(str, names), str(dest)], check=False)
    log(f"kept {dest} (copied from {scratch.root}, which is removed)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.messages is None:
        args.messages = 300 if args.quick else 2000
    if args.backlog is None:
        args.backlog = "1000,10000" if args.quick else "10000,100000"
    try:
        concurrencies = _numbers(args.sessions)
        delivery_at = _numbers(args.delivery_sessions)
        end_at = {DELIVERY.name: delivery_at, RELAY.name: _numbers(args.relay_sessions)}
        filters_at = _numbers(args.filter_sessions)
        backlogs = _numbers(args.backlog)
    except ValueError as exc:
        log(
            "--sessions, --delivery-sessions, --relay-sessions, --filter-sessions, --backlog"
            f" want numbers separated by commas: {exc}"
        )
        return 2
    sections = {n.strip() for n in args.sections.split(",") if n.strip()}
    if not sections or not sections <= set(SECTIONS):
        log(f"--sections must name some of {', '.join(SECTIONS)}")
        return 2
    wanted = [n.strip() for n in args.peers.split(",") if n.strip()]
    peers = [p for p in PEERS if p.name in wanted]
    if (
        not peers
        or len(peers) != len(wanted)
        or min(concurrencies + delivery_at + end_at[RELAY.name] + filters_at, default=0) < 1
    ):
        log(f"--peers must name some of {', '.join(p.name for p in PEERS)}; sessions >= 1")
        return 2
    if (
        args.repeat < 1
        or args.messages < 1
        or args.idle < 0
        or not all(end_at.values())
        or not filters_at
    ):
        log(
            "--repeat, --messages, --delivery-sessions, --relay-sessions, --filter-sessions"
            " must be at least 1, --idle at least 0"
        )
        return 2
    if (
        not backlogs
        or any(n <= 0 or n % RECIPIENTS for n in backlogs)
        or not 0 <= args.backlog_retrying <= 1
    ):
        log(
            f"--backlog wants positive multiples of {RECIPIENTS} envelopes,"
            " --backlog-retrying a share from 0 to 1"
        )
        return 2
    if "throughput" not in sections:
        concurrencies = []
    if "memory" not in sections:
        args.idle = 0
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

    results = [PeerResult(p.name) for p in peers]
    figures: list[tuple[EndToEnd, DeliveryFigure]] = []
    filter_figure: FilterFigure | None = None
    startup: StartupFigure | None = None
    backlog: list[BacklogPair] | None = None
    kept = len(peers) * (WARM + args.repeat * len(concurrencies) * args.messages)
    files = kept + 2 * args.messages + max(backlogs) // 10
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(
            scratch_area(args.cache, args.scratch, image_bytes(files, args.size), log)
        )
        args.boxes = scratch.boxes
        remove_stale_dirs(scratch.root, "run-*", HARNESS_PID)  # left by a harness killed
        workroot = Path(tempfile.mkdtemp(prefix="run-", dir=scratch.root))
        (workroot / HARNESS_PID).write_text(f"{os.getpid()}\n")
        stack.callback(_leave, workroot, scratch, args)
        if concurrencies:
            runs_of = []
            for peer, result in zip(peers, results, strict=True):
                tput = workroot / f"{peer.name}-throughput"
                tput.mkdir()
                runs_of.append((peer, result, tput))
            _throughput(runs_of, source, args, concurrencies)
        if args.idle > 0:
            for peer, result in zip(peers, results, strict=True):
                mem = workroot / f"{peer.name}-memory"
                mem.mkdir()
                _memory(peer, result, mem, args)
        for kind in END_TO_END:
            if kind.name in sections:
                at = end_at[kind.name]
                figure = _end_to_end(kind, source, workroot / kind.name, args, at)
                figures.append((kind, figure))
        if "filters" in sections:
            filter_figure = _filters(source, workroot / "filters", args, filters_at)
        if "startup" in sections:
            startup = measure_startup(args.repeat, STARTS, log)
        if "backlog" in sections:
            backlog = _backlog(source, workroot / "backlog", args, backlogs)

    tool = f"smtp-source {source.version}"
    report = [f"Files: {scratch.description}"]
    if concurrencies or args.idle > 0:
        report.append(
            format_report(
                results,
                concurrencies=concurrencies,
                messages=args.messages,
                size=args.size,
                idle=args.idle,
                tool=tool,
                repeat=args.repeat,
            )
        )
    else:
        results = []  # the peers did not run
    for kind, figure in figures:
        report.append(
            format_delivery(
                figure.results,
                messages=args.messages,
                size=args.size,
                concurrencies=end_at[kind.name],
                tool=tool,
                reference=figure.reference,
                repeat=args.repeat,
                skipped=figure.skipped,
                kind=kind,
                mta_dns=os.environ.get("MTA_DNS"),
            )
        )
    if filter_figure is not None:
        report.append(
            format_filters(
                filter_figure.results,
                concurrencies=filters_at,
                messages=args.messages,
                size=args.size,
                tool=tool,
                reference=filter_figure.reference,
                repeat=args.repeat,
                chain=CHAIN,
                skipped=filter_figure.skipped,
                mta_dns=os.environ.get("MTA_DNS"),
            )
        )
    if startup is not None:
        report.append(format_startup(startup, STARTS))
    if backlog is not None:
        report.append(
            format_backlog(
                backlog,
                messages=args.messages,
                size=args.size,
                sessions=BACKLOG_SESSIONS,
                tool=tool,
                repeat=args.repeat,
            )
        )
    print("\n".join(report), flush=True)
    failed = filter_figure is not None and filter_figure.failed
    failed = failed or any(p.empty.failed or p.backlog.failed for p in backlog or [])
    failed = failed or (startup is not None and bool(startup.errors))
    if failed or any(r.failed for r in results) or any(f.failed for _, f in figures):
        if not args.keep:
            log("a server failed; rerun with --keep to keep its logs")
        return 1
    return 0
