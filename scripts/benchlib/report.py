"""Benchmark results, the targets of issue 3 and the printed report.

Targets: ``mta`` sends at least 1.5 times aiosmtpd's messages per second at
every concurrency, and its rate at the highest concurrency is at least its
rate at the lowest (no collapse under many sessions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RATIO_TARGET", "PeerResult", "Verdict", "format_report", "verdicts"]

RATIO_TARGET = 1.5


@dataclass
class PeerResult:
    """Everything measured for one server; ``failures`` says what did not run."""

    name: str
    rates: dict[int, float] = field(default_factory=dict)  # sessions -> messages/s
    cpu_ms: dict[int, float] = field(default_factory=dict)  # sessions -> server CPU ms/message
    rss_before_kib: int | None = None
    rss_idle_kib: int | None = None
    idle_greeted: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def fail(self, phase: str, reason: object) -> None:
        self.failures.append(f"{phase}: {reason}")


@dataclass(frozen=True)
class Verdict:
    text: str
    passed: bool


def verdicts(mta: PeerResult, peer: PeerResult, concurrencies: list[int]) -> list[Verdict]:
    """One line per target, PASS only when both sides were measured and it holds."""
    out: list[Verdict] = []
    for c in concurrencies:
        a, b = mta.rates.get(c), peer.rates.get(c)
        if a is None or b is None or b <= 0:
            out.append(
                Verdict(
                    f"{c} sessions: {mta.name}/{peer.name} >= {RATIO_TARGET}x: not measured", False
                )
            )
            continue
        ok = a / b >= RATIO_TARGET
        out.append(
            Verdict(f"{c} sessions: {mta.name}/{peer.name} = {a / b:.2f}x >= {RATIO_TARGET}x", ok)
        )
    if len(concurrencies) >= 2:
        lo, hi = min(concurrencies), max(concurrencies)
        a, b = mta.rates.get(hi), mta.rates.get(lo)
        if a is None or b is None:
            out.append(Verdict(f"no collapse: {mta.name} at {hi} >= at {lo}: not measured", False))
        else:
            out.append(
                Verdict(
                    f"no collapse: {mta.name} at {hi} sessions ({a:.1f}/s) >= at {lo} ({b:.1f}/s)",
                    a >= b,
                )
            )
    return out


def _rate(r: PeerResult, c: int) -> str:
    v = r.rates.get(c)
    return f"{v:.1f}" if v is not None else "failed"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def _mib(kib: int | None) -> str:
    return f"{kib / 1024:.1f} MiB" if kib is not None else "failed"


def format_report(
    results: list[PeerResult],
    *,
    concurrencies: list[int],
    messages: int,
    size: int,
    idle: int,
    tool: str,
    repeat: int = 1,
) -> str:
    """The report as text: throughput table, targets, memory table, failures."""
    names = [r.name for r in results]
    first, others = results[0], results[1:]
    lines = [
        f"Throughput: {messages} messages of {size} bytes, 1 recipient each, "
        f"a new connection per message ({tool}); messages/s, wall clock"
        + (f", best of {repeat} runs" if repeat > 1 else ""),
        "  sessions"
        + "".join(f"{n:>12}" for n in names)
        + "".join(f"{first.name + '/' + r.name:>16}" for r in others),
    ]
    for c in concurrencies:
        row = f"  {c:>8}" + "".join(f"{_rate(r, c):>12}" for r in results)
        row += "".join(f"{_ratio(first.rates.get(c), r.rates.get(c)):>16}" for r in others)
        lines.append(row)
    floor = next((r for r in others if r.name == "floor"), None)
    rival = next((r for r in others if r.name != "floor"), None)
    if floor is not None and rival is not None:
        best = [_ratio(floor.rates.get(c), rival.rates.get(c)) + f" at {c}" for c in concurrencies]
        lines.append(
            f"  floor/{rival.name} (the most any server this durable could reach): "
            + ", ".join(best)
        )
    cpu = [
        r.name + " " + ", ".join(f"{ms:.2f} at {c}" for c, ms in sorted(r.cpu_ms.items()))
        for r in results
        if r.cpu_ms
    ]
    if cpu:
        lines.append("  server CPU ms/message: " + "; ".join(cpu))
    if rival is not None:
        lines.append("Targets:")
        for v in verdicts(first, rival, concurrencies):
            lines.append(f"  {'PASS' if v.passed else 'FAIL'}  {v.text}")
    if idle > 0:
        lines.append(f"Memory: VmRSS of the server process (tree), {idle} idle sessions")
        lines.append(
            "  "
            + " " * 20
            + "".join(f"{n:>12}" for n in names)
            + ("   " + "/".join(names[:2]) if len(results) >= 2 else "")
        )
        rows = [
            ("before sessions", [r.rss_before_kib for r in results]),
            (f"{idle} idle", [r.rss_idle_kib for r in results]),
        ]
        for label, vals in rows:
            row = f"  {label:<20}" + "".join(f"{_mib(v):>12}" for v in vals)
            if len(results) >= 2:
                row += f"   {_ratio(vals[0], vals[1]):>8}"
            lines.append(row)
        per = []
        for r in results:
            if r.rss_before_kib is not None and r.rss_idle_kib is not None and r.idle_greeted:
                kib = (r.rss_idle_kib - r.rss_before_kib) / r.idle_greeted
                per.append(f"{r.name} {kib:.1f} KiB")
        if per:
            lines.append("  per idle session: " + ", ".join(per))
    for r in results:
        for note in r.notes:
            lines.append(f"Note: {r.name}: {note}")
    for r in results:
        if r.failed:
            lines.append(f"{r.name}: failed: " + "; ".join(r.failures))
        else:
            lines.append(f"{r.name}: ok")
    return "\n".join(lines)
