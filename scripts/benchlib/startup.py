"""The startup figure: how soon mta's test server is ready, against aiosmtpd's Controller.

Each run is a fresh interpreter (:mod:`benchlib.startup_run`); mta and aiosmtpd
take turns, round after round.  Per server: the import, the first start, their
sum (what a test suite pays once), and the median of the further starts (what
each test pays).  The medians over the rounds and the ratios mta/aiosmtpd are
printed, then every run.  Targets (issue 16): import plus first start under
0.3 s, a further start under 10 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["StartupRun", "format_startup", "measure_startup"]

SCRIPTS_DIR = Path(__file__).resolve().parents[1]
SERVERS = ("mta", "aiosmtpd")
TARGET_FIRST = 0.3  # seconds: import plus the first server ready
TARGET_FURTHER = 0.010  # seconds: each further server ready


@dataclass(frozen=True)
class StartupRun:
    """One fresh interpreter's figures, in seconds."""

    imported: float
    first: float
    further: float  # median of the further starts

    @property
    def ready(self) -> float:
        return self.imported + self.first


@dataclass
class StartupFigure:
    runs: dict[str, list[StartupRun]] = field(default_factory=lambda: {s: [] for s in SERVERS})
    errors: list[str] = field(default_factory=list)


def _one(server: str, starts: int, timeout: float) -> StartupRun:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SCRIPTS_DIR), str(SCRIPTS_DIR.parent), env.get("PYTHONPATH", "")) if p
    )
    argv = [sys.executable, "-m", "benchlib.startup_run", "--server", server]
    argv += ["--starts", str(starts)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{server}: exit status {proc.returncode}: {tail}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return StartupRun(out["import"], out["first"], statistics.median(out["further"]))


def measure_startup(
    rounds: int, starts: int, log: Callable[[str], None], timeout: float = 120.0
) -> StartupFigure:
    """``rounds`` rounds, each a fresh mta run then a fresh aiosmtpd run."""
    figure = StartupFigure()
    for round_no in range(1, rounds + 1):
        for server in SERVERS:
            try:
                run = _one(server, starts, timeout)
            except (RuntimeError, OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
                figure.errors.append(str(exc))
                log(f"startup: {exc}")
                continue
            figure.runs[server].append(run)
            log(
                f"startup: {server}: import {run.imported * 1e3:.0f} ms, first start"
                f" {run.first * 1e3:.1f} ms, ready {run.ready * 1e3:.0f} ms, further start"
                f" {run.further * 1e3:.2f} ms (median of {starts}; round {round_no} of {rounds})"
            )
    return figure


def _median(runs: list[StartupRun], what: Callable[[StartupRun], float]) -> float | None:
    return statistics.median(what(r) for r in runs) if runs else None


def format_startup(figure: StartupFigure, starts: int) -> str:
    """The figure's report: medians, ratios, targets."""
    rows = {
        "import": lambda r: r.imported,
        "first start": lambda r: r.first,
        "import + first": lambda r: r.ready,
        f"further start (median of {starts})": lambda r: r.further,
    }
    lines = [
        "Startup: a test server ready from a fresh interpreter (mta.testing.MailServer"
        " against aiosmtpd's Controller); medians over the rounds, milliseconds"
    ]
    lines.append(f"  {'':38}{'mta':>10}{'aiosmtpd':>10}{'ratio':>8}")
    for name, what in rows.items():
        mta = _median(figure.runs["mta"], what)
        aio = _median(figure.runs["aiosmtpd"], what)
        ratio = f"{mta / aio:.1f}x" if mta and aio else "-"
        cells = [f"{v * 1e3:10.2f}" if v is not None else f"{'-':>10}" for v in (mta, aio)]
        lines.append(f"  {name:38}{''.join(cells)}{ratio:>8}")
    lines.append("  every run, import + first / further start, ms (in the order they ran):")
    for server in SERVERS:
        runs = ", ".join(
            f"{r.ready * 1e3:.0f} / {r.further * 1e3:.2f}" for r in figure.runs[server]
        )
        lines.append(f"  {server:<10}{runs or 'none'}")
    ready = _median(figure.runs["mta"], lambda r: r.ready)
    further = _median(figure.runs["mta"], lambda r: r.further)
    lines.append("Targets:")
    for label, value, target in (
        ("import + first server ready", ready, TARGET_FIRST),
        ("a further server ready", further, TARGET_FURTHER),
    ):
        if value is None:
            lines.append(f"  -     {label}: no mta run")
            continue
        verdict = "PASS" if value < target else "FAIL"
        lines.append(f"  {verdict}  {label}: {value * 1e3:.1f} ms < {target * 1e3:g} ms")
    for error in figure.errors:
        lines.append(f"  error: {error}")
    return "\n".join(lines)
