"""The filters figure's results, targets and printed report.

Four variants take turns, run after run: mta without a filter, mta with a
chain of builtin filters, mta with Debian's ``filter-dkimsign``, and
OpenSMTPD with the same ``filter-dkimsign`` (:data:`VARIANTS`).  Each
variant keeps every run's seconds, round by round, and the medians count
(not the best run).  Targets (issue 14): with filter-dkimsign, mta accepts at
least as many messages per second as OpenSMTPD (:data:`DKIM_TARGET`), and
mta's builtin chain costs less than 10% of its throughput without a filter
(:data:`BUILTIN_COST_TARGET`), at every concurrency.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from benchlib.report import Failures, Verdict

__all__ = [
    "BUILTIN",
    "BUILTIN_COST_TARGET",
    "DKIM_MTA",
    "DKIM_OPENSMTPD",
    "DKIM_TARGET",
    "NONE",
    "VARIANTS",
    "Variant",
    "VariantResult",
    "filter_verdicts",
    "format_filters",
    "median_or_none",
]

DKIM_TARGET = 1.0  # mta/OpenSMTPD with filter-dkimsign, at least
BUILTIN_COST_TARGET = 0.10  # 1 - builtin/none for mta, under


@dataclass(frozen=True)
class Variant:
    """One server with one filter setting: ``none``, ``builtin`` or ``dkimsign``."""

    server: str  # "mta" or "opensmtpd" (benchlib.delivery_run.SERVERS)
    filters: str

    @property
    def label(self) -> str:
        return f"{self.server} {self.filters}"


NONE = Variant("mta", "none")
BUILTIN = Variant("mta", "builtin")
DKIM_MTA = Variant("mta", "dkimsign")
DKIM_OPENSMTPD = Variant("opensmtpd", "dkimsign")
VARIANTS = (NONE, BUILTIN, DKIM_MTA, DKIM_OPENSMTPD)


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class VariantResult(Failures):
    """One variant's runs by concurrency: the seconds of each round (None for a
    round that failed or did not run) and the server's CPU per message."""

    variant: Variant
    seconds: dict[int, list[float | None]] = field(default_factory=dict)
    cpu_ms: dict[int, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, sessions: int, seconds: float | None, cpu_ms: float | None = None) -> None:
        self.seconds.setdefault(sessions, []).append(seconds)
        if cpu_ms is not None:
            self.cpu_ms.setdefault(sessions, []).append(cpu_ms)

    def rates(self, sessions: int, messages: int) -> list[float | None]:
        """Messages/s of each round, in order (None where it failed)."""
        return [messages / s if s else None for s in self.seconds.get(sessions, [])]

    def median_rate(self, sessions: int, messages: int) -> float | None:
        return median_or_none([r for r in self.rates(sessions, messages) if r is not None])


def _ratio_of_medians(
    a: VariantResult, b: VariantResult, sessions: int, messages: int
) -> float | None:
    x, y = a.median_rate(sessions, messages), b.median_rate(sessions, messages)
    return x / y if x is not None and y else None


def _round_ratios(a: VariantResult, b: VariantResult, sessions: int, messages: int) -> list[str]:
    """Each round's ``a/b``, ``-`` where either failed."""
    pairs = zip(a.rates(sessions, messages), b.rates(sessions, messages), strict=False)
    return [f"{x / y:.2f}" if x is not None and y else "-" for x, y in pairs]


def filter_verdicts(
    results: dict[Variant, VariantResult], concurrencies: list[int], messages: int
) -> list[Verdict]:
    """One line per target and concurrency; PASS only when both sides were measured."""
    out: list[Verdict] = []
    for c in concurrencies:
        what = f"dkimsign at {c} sessions: mta/opensmtpd"
        r = _ratio_of_medians(results[DKIM_MTA], results[DKIM_OPENSMTPD], c, messages)
        if r is None:
            out.append(Verdict(f"{what} >= {DKIM_TARGET:.2f}x: not measured", False))
        else:
            out.append(Verdict(f"{what} = {r:.2f}x >= {DKIM_TARGET:.2f}x", r >= DKIM_TARGET))
    for c in concurrencies:
        what = f"builtin filters at {c} sessions: mta's cost"
        r = _ratio_of_medians(results[BUILTIN], results[NONE], c, messages)
        limit = f"< {BUILTIN_COST_TARGET:.0%} of its throughput without filters"
        if r is None:
            out.append(Verdict(f"{what} {limit}: not measured", False))
        else:
            cost = 1 - r
            out.append(Verdict(f"{what} = {cost:.1%} {limit}", cost < BUILTIN_COST_TARGET))
    return out


def _cell(v: float | None) -> str:
    return f"{v:.1f}" if v is not None else "failed"


def _runs(values: list[float | None]) -> str:
    return ", ".join(f"{v:.1f}" if v is not None else "failed" for v in values) or "none"


def format_filters(
    results: dict[Variant, VariantResult],
    *,
    concurrencies: list[int],
    messages: int,
    size: int,
    tool: str,
    reference: str,
    repeat: int,
    chain: str,
    skipped: str | None = None,
    mta_dns: str | None = None,
) -> str:
    """The section: medians, every run, ratios, CPU, targets, notes and failures.

    ``chain`` says in a few words what the builtin chain tests."""
    head = "Filters"
    if skipped is not None:
        return f"{head}: skipped: {skipped}"
    dns = "unset" if mta_dns is None else repr(mta_dns)
    ordered = [results[v] for v in VARIANTS]
    lines = [
        f"{head}: {messages} messages of {size} bytes ({tool}), acceptance: messages/s from"
        " the first connection until every message has its 250 (received, through the"
        " filters, queued; local delivery paused with -P mda on both servers); "
        f"{reference}, same smtpd.conf per filter setting, private network namespace,"
        f" mta's MTA_DNS {dns}; median of {repeat} run" + ("s" if repeat != 1 else ""),
        "  none: no filter; builtin: " + chain + "; dkimsign: Debian's filter-dkimsign"
        " (rsa-sha256, 2048-bit key) as _dkimsign",
        "  messages/s, median: sessions" + "".join(f"{r.variant.label:>20}" for r in ordered),
    ]
    for c in concurrencies:
        cells = "".join(f"{_cell(r.median_rate(c, messages)):>20}" for r in ordered)
        lines.append(f"  {c:>28}{cells}")
    lines.append("  every run, messages/s (in the order they ran):")
    for c in concurrencies:
        for r in ordered:
            lines.append(f"  {c:>6} sessions, {r.variant.label:<18} {_runs(r.rates(c, messages))}")
    lines.append("  ratios of the medians [each round's]:")
    dkim, builtin = (results[DKIM_MTA], results[DKIM_OPENSMTPD]), (results[BUILTIN], results[NONE])
    for c in concurrencies:
        d = _ratio_of_medians(*dkim, c, messages)
        b = _ratio_of_medians(*builtin, c, messages)
        d_text = f"{d:.2f}x" if d is not None else "-"
        b_text = f"{b:.3f}x, cost {1 - b:.1%}" if b is not None else "-"
        lines.append(
            f"  {c:>6} sessions: dkimsign mta/opensmtpd {d_text}"
            f" [{', '.join(_round_ratios(*dkim, c, messages))}];"
            f" mta builtin/none {b_text} [{', '.join(_round_ratios(*builtin, c, messages))}]"
        )
    cpu = []
    for r in ordered:
        per = [
            f"{m:.2f} at {c}"
            for c in concurrencies
            if (m := median_or_none(r.cpu_ms.get(c, []))) is not None
        ]
        if per:
            cpu.append(f"{r.variant.label} " + ", ".join(per))
    if cpu:
        lines.append(
            "  server CPU ms/message during the load (median; filter processes included): "
            + "; ".join(cpu)
        )
    lines.append("Targets:")
    for v in filter_verdicts(results, concurrencies, messages):
        lines.append(f"  {'PASS' if v.passed else 'FAIL'}  {v.text}")
    for r in ordered:
        for note in r.notes:
            lines.append(f"Note: {r.variant.label}: {note}")
    for r in ordered:
        status = "failed: " + "; ".join(r.failures) if r.failed else "ok"
        lines.append(f"{r.variant.label} filters: {status}")
    return "\n".join(lines)
