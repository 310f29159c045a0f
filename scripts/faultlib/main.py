"""The campaign: parse the options, run the chosen scenarios, print the table.

Scenarios (``--scenarios``, in this order): ``crash-receive``,
``crash-deliver``, ``flood``, ``slowloris``, ``garbage``, ``full-disk``,
``corrupt-spool``; the Maildir ``tmp/`` orphans (left, then swept) follow whenever a crash
scenario ran.  Each one prints its trials as they end (stderr) and gives one
or more rows of the table (stdout).  A scenario that cannot run here says
why in its row; one whose harness raised is an ``error`` row, with the
traceback on stderr.  Exit status: 2 when a scenario broke (or bad options),
1 with ``--strict`` when a promise is broken, else 0.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from faultlib import corrupt, crash, flood, fulldisk, garbage, orphans, slowloris
from faultlib.context import Context, Settings, log
from faultlib.daemon import REPO
from faultlib.report import Row, exit_status, format_table

__all__ = ["SCENARIOS", "main"]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str  # the row's scenario when the run breaks
    run: Callable[[Context], list[Row]]


def _one(run: Callable[[Context], Row]) -> Callable[[Context], list[Row]]:
    return lambda ctx: [run(ctx)]


SCENARIOS = (
    Scenario("crash-receive", crash.RECEIVE, _one(crash.crash_receive)),
    Scenario("crash-deliver", crash.DELIVER, _one(crash.crash_deliver)),
    Scenario("flood", flood.SCENARIO, _one(flood.flood)),
    Scenario("slowloris", "slowloris", slowloris.slowloris),
    Scenario("garbage", garbage.SCENARIO, _one(garbage.garbage)),
    Scenario("full-disk", fulldisk.SCENARIO, _one(fulldisk.full_disk)),
    Scenario("corrupt-spool", corrupt.SCENARIO, _one(corrupt.corrupt_spool)),
)
CRASHES = {"crash-receive", "crash-deliver"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/faults",
        description="Fault campaign against the real mta daemon: crashes, floods, slow"
        " clients, garbage, a full disk and a damaged spool; prints one table of figures.",
        epilog="scripts/faults also takes --no-setup: skip scripts/setup.",
    )
    p.add_argument("--quick", action="store_true", help="a small run (about 2 minutes)")
    p.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated scenarios (default: all of them)",
    )
    p.add_argument("--trials", type=int, help="kills per crash scenario (10; --quick 2)")
    p.add_argument("--messages", type=int, help="queued per kill while delivering (400; 60)")
    p.add_argument("--garbage", type=int, help="garbage connections (500; 30)")
    p.add_argument("--corrupt", type=int, help="message files damaged (12; 4)")
    p.add_argument("--seed", type=int, help="random seed (default: from the clock, printed)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a promise is broken")
    p.add_argument("--keep", action="store_true", help="keep the spools, Maildirs and logs")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    quick = args.quick

    def pick(value: int | None, full: int, small: int) -> int:
        return value if value is not None else (small if quick else full)

    return Settings(
        trials=pick(args.trials, 10, 2),
        messages=pick(args.messages, 400, 60),
        garbage=pick(args.garbage, 500, 30),
        corrupt=pick(args.corrupt, 12, 4),
        disk_kib=4096 if quick else 8192,
        timeout_scale=0.005 if quick else 0.01,
        quick=quick,
        seed=args.seed if args.seed is not None else int(time.time()) % 100000,
    )


def _revision() -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown revision"
    return proc.stdout.strip() or "unknown revision"


def _caption(settings: Settings, seconds: float) -> str:
    who = "root" if os.geteuid() == 0 else "an ordinary user"
    kind = "quick run" if settings.quick else "full run"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Fault campaign: mta {_revision()}, {when}, {kind} as {who}, seed {settings.seed},"
        f" {os.cpu_count()} CPUs, {seconds:.0f} s"
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    del frame
    log(f"stopped by signal {signum}")
    raise SystemExit(128 + signum)


def _run(scenario: Scenario, ctx: Context) -> list[Row]:
    log(f"{scenario.title}: starting")
    started = time.monotonic()
    try:
        rows = scenario.run(ctx)
    except Exception as exc:  # the harness broke: say so in the table, carry on
        traceback.print_exc()
        rows = [Row.broken(scenario.title, "-", "-", f"{type(exc).__name__}: {exc}")]
    log(f"{scenario.title}: done in {time.monotonic() - started:.0f} s")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wanted = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    known = {s.name for s in SCENARIOS}
    if not wanted or not set(wanted) <= known:
        log(f"--scenarios must name some of {', '.join(s.name for s in SCENARIOS)}")
        return 2
    settings = _settings(args)
    numbers = (settings.trials, settings.messages, settings.garbage, settings.corrupt)
    if min(numbers) < 1:
        log("--trials, --messages, --garbage and --corrupt must be at least 1")
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    workroot = Path(tempfile.mkdtemp(prefix="mta-faults-"))
    workroot.chmod(0o755)  # deliveries as uid 65534 go through it when run as root
    ctx = Context(settings, workroot)
    log(f"seed {settings.seed}; working in {workroot}")
    started = time.monotonic()
    rows: list[Row] = []
    try:
        for scenario in SCENARIOS:
            if scenario.name in wanted:
                rows += _run(scenario, ctx)
        if CRASHES & set(wanted):
            rows.append(orphans.orphan_row(ctx))
    except KeyboardInterrupt:
        log("interrupted: no table")
        return 130
    finally:
        if args.keep:
            log(f"kept {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)
    print(format_table(rows, _caption(settings, time.monotonic() - started)), flush=True)
    return exit_status(rows, args.strict)
