"""The backlog figure's results, targets and printed report.

For each backlog size, two daemons take turns round after round: one on an
empty spool, one on a copy of a spool already holding that many envelopes
(:mod:`benchlib.backlog`).  Each round of each keeps its acceptance rate, its
startup time (from exec to ``mta: ready`` in its log), its resident memory
after startup and its CPU per message; the medians count.  Targets (issue
17): with the backlog, acceptance within 10% of the empty queue's
(:data:`RATE_TARGET`), and startup on that spool under 5 s
(:data:`STARTUP_TARGET`).  The memory per queued envelope is reported, not
judged: ``(RSS with the backlog - RSS empty) / envelopes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchlib.report import Failures, Verdict, median

__all__ = [
    "RATE_TARGET",
    "STARTUP_TARGET",
    "BacklogPair",
    "BacklogRun",
    "Series",
    "backlog_verdicts",
    "format_backlog",
    "per_envelope_kib",
]

RATE_TARGET = 0.90  # acceptance with the backlog / with an empty queue, at least
STARTUP_TARGET = 5.0  # seconds from exec to "mta: ready" on the backlog's spool, under


@dataclass(frozen=True)
class BacklogRun:
    """One timed round of one daemon."""

    rate: float  # messages/s accepted
    startup: float  # seconds from exec to "mta: ready"
    rss_kib: int  # VmRSS of the daemon (tree) once ready, before the load
    cpu_ms: float  # the daemon's CPU per message during the timed load
    relay_attempts: int = 0  # relay attempts logged in its life (0: the backlog waited)


@dataclass
class Series(Failures):
    """Every round of one daemon kind: the empty spool (``envelopes`` 0) or a backlog."""

    envelopes: int
    runs: list[BacklogRun] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.envelopes} queued" if self.envelopes else "empty"

    def rate(self) -> float | None:
        return median([r.rate for r in self.runs])

    def startup(self) -> float | None:
        return median([r.startup for r in self.runs])

    def rss_kib(self) -> float | None:
        return median([float(r.rss_kib) for r in self.runs])

    def cpu_ms(self) -> float | None:
        return median([r.cpu_ms for r in self.runs])


@dataclass
class BacklogPair:
    """One backlog size: its build and the two series measured side by side."""

    envelopes: int
    retrying: int  # of them, waiting for a retry (relayed; the rest paused local deliveries)
    empty: Series
    backlog: Series
    build_seconds: float | None = None  # None: the backlog could not be built


def per_envelope_kib(rss_backlog_kib: float, rss_empty_kib: float, envelopes: int) -> float:
    """The daemon's resident memory per queued envelope, KiB."""
    if envelopes <= 0:
        raise ValueError(f"a backlog has envelopes, not {envelopes}")
    return (rss_backlog_kib - rss_empty_kib) / envelopes


def _per_envelope(pair: BacklogPair) -> float | None:
    with_backlog, empty = pair.backlog.rss_kib(), pair.empty.rss_kib()
    if with_backlog is None or empty is None:
        return None
    return per_envelope_kib(with_backlog, empty, pair.envelopes)


def backlog_verdicts(pair: BacklogPair) -> list[Verdict]:
    """Acceptance within 10% of the empty queue's, startup under 5 s; PASS only
    when measured."""
    what = f"{pair.envelopes} queued: acceptance"
    rate, empty = pair.backlog.rate(), pair.empty.rate()
    limit = f">= {RATE_TARGET:.2f}x the empty queue's"
    if rate is None or not empty:
        out = [Verdict(f"{what} {limit}: not measured", False)]
    else:
        out = [Verdict(f"{what} = {rate / empty:.2f}x {limit}", rate / empty >= RATE_TARGET)]
    startup = pair.backlog.startup()
    what = f"{pair.envelopes} queued: startup (exec to ready)"
    if startup is None:
        out.append(Verdict(f"{what} < {STARTUP_TARGET:g} s: not measured", False))
    else:
        out.append(
            Verdict(f"{what} = {startup:.2f} s < {STARTUP_TARGET:g} s", startup < STARTUP_TARGET)
        )
    return out


def _cell(v: float | None, fmt: str) -> str:
    return format(v, fmt) if v is not None else "failed"


def _runs(series: Series) -> str:
    if not series.runs:
        return "none"
    return ", ".join(
        f"{r.rate:.1f}/s ready {r.startup:.2f} s {r.rss_kib / 1024:.1f} MiB" for r in series.runs
    )


def format_backlog(
    pairs: list[BacklogPair],
    *,
    messages: int,
    size: int,
    sessions: int,
    tool: str,
    repeat: int,
    skipped: str | None = None,
) -> str:
    """The section: medians per backlog size against the empty queue, every run,
    memory per envelope, targets, notes and failures."""
    head = "Backlog"
    if skipped is not None:
        return f"{head}: skipped: {skipped}"
    lines = [
        f"{head}: acceptance of {messages} messages of {size} bytes, 1 recipient each, a new"
        f" connection per message, {sessions} sessions ({tool}), on a daemon whose spool"
        " already holds a backlog, against the same daemon on an empty spool, taking turns;"
        f" local delivery paused (-P mda); median of {repeat} run" + ("s" if repeat != 1 else ""),
        f"  {'backlog':>22}{'messages/s':>12}{'ratio':>8}{'ready, s':>10}{'RSS, MiB':>10}"
        f"{'CPU ms/msg':>12}",
    ]
    for pair in pairs:
        for series in (pair.empty, pair.backlog):
            rate, empty = series.rate(), pair.empty.rate()
            ratio = f"{rate / empty:.2f}x" if rate is not None and empty else "-"
            rss = series.rss_kib()
            lines.append(
                f"  {series.label:>22}{_cell(rate, '.1f'):>12}{ratio:>8}"
                f"{_cell(series.startup(), '.2f'):>10}"
                f"{_cell(rss / 1024 if rss is not None else None, '.1f'):>10}"
                f"{_cell(series.cpu_ms(), '.2f'):>12}"
            )
    for pair in pairs:
        kib = _per_envelope(pair)
        built = (
            f"built in {pair.build_seconds:.1f} s"
            if pair.build_seconds is not None
            else "not built"
        )
        lines.append(
            f"  {pair.envelopes} queued: {pair.envelopes - pair.retrying} paused (local, -P mda),"
            f" {pair.retrying} waiting for a retry (relayed, the first try failed); {built};"
            " daemon memory per queued envelope "
            + (f"{kib * 1024:.0f} bytes" if kib is not None else "not measured")
        )
    lines.append("  every run (in the order they ran):")
    for pair in pairs:
        for series in (pair.empty, pair.backlog):
            lines.append(f"  {pair.envelopes:>8}, {series.label:<14} {_runs(series)}")
    lines.append("Targets:")
    for pair in pairs:
        for v in backlog_verdicts(pair):
            lines.append(f"  {'PASS' if v.passed else 'FAIL'}  {v.text}")
    for pair in pairs:
        for series in (pair.empty, pair.backlog):
            for note in series.notes:
                lines.append(f"Note: backlog {pair.envelopes}, {series.label}: {note}")
    for pair in pairs:
        for series in (pair.empty, pair.backlog):
            status = "failed: " + "; ".join(series.failures) if series.failed else "ok"
            lines.append(f"backlog {pair.envelopes}, {series.label}: {status}")
    return "\n".join(lines)
