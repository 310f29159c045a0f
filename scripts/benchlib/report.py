"""Benchmark results, their targets and the printed report.

Every section keeps every run, round by round, and the figure that counts is
the median of the rounds (not the best); a ratio is the ratio of two medians
measured side by side.  Targets: ``mta`` accepts at least 1.5 times
aiosmtpd's messages per second at every concurrency, at least 0.75 times the
``floor`` peer's, and its rate at the highest concurrency is at least its rate
at the lowest (no collapse under many sessions) (issues 3 and 17); an idle
session costs it under 8 KiB.  End to end, received and delivered to a
Maildir, it is at least as fast as OpenSMTPD with the same smtpd.conf at 4
sessions (figures at more sessions are reported, without a target, as
OpenSMTPD's listen backlog of 5 costs it most of its speed there); received
and relayed to smtp-sink, at least as fast at every concurrency (issues 5 and
17).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

__all__ = [
    "DELIVERY",
    "DELIVERY_TARGET",
    "FLOOR_TARGET",
    "IDLE_KIB_TARGET",
    "RATIO_TARGET",
    "RELAY",
    "RELAY_TARGET",
    "DeliveryResult",
    "EndToEnd",
    "Failures",
    "PeerResult",
    "Verdict",
    "delivery_verdict",
    "format_delivery",
    "format_report",
    "idle_verdict",
    "median",
    "per_idle_kib",
    "verdicts",
]

RATIO_TARGET = 1.5  # mta/aiosmtpd at least, at every concurrency
FLOOR_TARGET = 0.75  # mta/floor at least, at every concurrency
IDLE_KIB_TARGET = 8.0  # KiB of resident memory per idle session, under
DELIVERY_TARGET = 1.0
DELIVERY_SESSIONS = 4  # the concurrency the delivery target applies to
RELAY_TARGET = 1.0


def median(values: list[float]) -> float | None:
    """The median of ``values``; None when there are none."""
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class EndToEnd:
    """One end-to-end section, mta against OpenSMTPD: what it waits for and its target."""

    name: str  # the --sections name, also in progress lines
    title: str
    until: str  # when a run's clock stops
    done: str  # "delivered": what happened to every message by then
    counted: str  # "files in new/": what a run counts
    target: float  # mta/OpenSMTPD at least
    target_sessions: int | None = None  # the target's concurrency (None: every one)

    def targeted(self, concurrencies: list[int]) -> list[int]:
        """The concurrencies the target applies to, of those measured."""
        if self.target_sessions is None:
            return list(concurrencies)
        return [c for c in concurrencies if c == self.target_sessions]


DELIVERY = EndToEnd(
    "delivery",
    "End-to-end delivery",
    "until all are files in the Maildir's new/",
    "delivered",
    "files in new/",
    DELIVERY_TARGET,
    DELIVERY_SESSIONS,
)
RELAY = EndToEnd(
    "relay",
    "Relay",
    "until Postfix's smtp-sink (same namespace) has received all",
    "relayed",
    "received by smtp-sink",
    RELAY_TARGET,
)


class Failures:
    """What a server's runs did not do: ``failures`` ("phase: reason")."""

    failures: list[str]

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def fail(self, phase: str, reason: object) -> None:
        self.failures.append(f"{phase}: {reason}")


@dataclass
class PeerResult(Failures):
    """Everything measured for one server; ``failures`` says what did not run.

    ``runs`` holds every timed run's messages/s in the order they ran;
    ``rates`` and ``cpu_ms`` are the medians of those runs (:meth:`record`)."""

    name: str
    rates: dict[int, float] = field(default_factory=dict)  # sessions -> median messages/s
    cpu_ms: dict[int, float] = field(default_factory=dict)  # sessions -> median CPU ms/message
    runs: dict[int, list[float]] = field(default_factory=dict)  # sessions -> each run's msg/s
    cpu_runs: dict[int, list[float]] = field(default_factory=dict)
    rss_before_kib: int | None = None
    rss_idle_kib: int | None = None
    idle_greeted: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, sessions: int, rate: float, cpu_ms: float) -> None:
        """One timed run at ``sessions``: keep it, and the medians so far."""
        self.runs.setdefault(sessions, []).append(rate)
        self.cpu_runs.setdefault(sessions, []).append(cpu_ms)
        self.rates[sessions] = statistics.median(self.runs[sessions])
        self.cpu_ms[sessions] = statistics.median(self.cpu_runs[sessions])


@dataclass(frozen=True)
class Verdict:
    text: str
    passed: bool


def _ratio_verdicts(
    mta: PeerResult, peer: PeerResult, concurrencies: list[int], target: float
) -> list[Verdict]:
    out: list[Verdict] = []
    for c in concurrencies:
        a, b = mta.rates.get(c), peer.rates.get(c)
        what = f"{c} sessions: {mta.name}/{peer.name}"
        if a is None or b is None or b <= 0:
            out.append(Verdict(f"{what} >= {target}x: not measured", False))
            continue
        out.append(Verdict(f"{what} = {a / b:.2f}x >= {target}x", a / b >= target))
    return out


def verdicts(
    mta: PeerResult,
    peer: PeerResult,
    concurrencies: list[int],
    floor: PeerResult | None = None,
) -> list[Verdict]:
    """One line per target, PASS only when both sides were measured and it holds:
    ``mta``/``peer`` (aiosmtpd) at every concurrency, ``mta``/``floor`` if it ran,
    then no collapse from the lowest concurrency to the highest."""
    out = _ratio_verdicts(mta, peer, concurrencies, RATIO_TARGET)
    if floor is not None:
        out += _ratio_verdicts(mta, floor, concurrencies, FLOOR_TARGET)
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


def per_idle_kib(r: PeerResult) -> float | None:
    """Resident memory per idle session, KiB: (with them - before) / sessions greeted."""
    if r.rss_before_kib is None or r.rss_idle_kib is None or not r.idle_greeted:
        return None
    return (r.rss_idle_kib - r.rss_before_kib) / r.idle_greeted


def idle_verdict(r: PeerResult) -> Verdict:
    kib = per_idle_kib(r)
    what = f"{r.name}: memory per idle session"
    if kib is None:
        return Verdict(f"{what} < {IDLE_KIB_TARGET:g} KiB: not measured", False)
    return Verdict(f"{what} = {kib:.1f} KiB < {IDLE_KIB_TARGET:g} KiB", kib < IDLE_KIB_TARGET)


def _rate(r: PeerResult, c: int) -> str:
    v = r.rates.get(c)
    return f"{v:.1f}" if v is not None else "failed"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def _cell(v: float | None, fmt: str) -> str:
    return format(v, fmt) if v is not None else "failed"


def _mib(kib: int | None) -> str:
    return f"{kib / 1024:.1f} MiB" if kib is not None else "failed"


def _throughput_lines(
    results: list[PeerResult],
    *,
    concurrencies: list[int],
    messages: int,
    size: int,
    tool: str,
    repeat: int,
) -> list[str]:
    """The throughput table, the floor line, CPU per message and the targets."""
    names = [r.name for r in results]
    first, others = results[0], results[1:]
    lines = [
        f"Throughput: {messages} messages of {size} bytes, 1 recipient each, "
        f"a new connection per message ({tool}); messages/s, wall clock"
        + (f", median of {repeat} runs" if repeat > 1 else ""),
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
        rs = [_ratio(floor.rates.get(c), rival.rates.get(c)) + f" at {c}" for c in concurrencies]
        lines.append(
            f"  floor/{rival.name} (the most any server this durable could reach): " + ", ".join(rs)
        )
    cpu = [
        r.name + " " + ", ".join(f"{ms:.2f} at {c}" for c, ms in sorted(r.cpu_ms.items()))
        for r in results
        if r.cpu_ms
    ]
    if cpu:
        lines.append("  server CPU ms/message (median): " + "; ".join(cpu))
    if repeat > 1:
        lines.append("  every run, messages/s (in the order they ran):")
        for c in concurrencies:
            for r in results:
                runs = ", ".join(f"{v:.1f}" for v in r.runs.get(c, [])) or "none"
                lines.append(f"  {c:>8} sessions, {r.name:<10} {runs}")
    if rival is not None:
        lines.append("Targets:")
        for v in verdicts(first, rival, concurrencies, floor):
            lines.append(f"  {'PASS' if v.passed else 'FAIL'}  {v.text}")
    return lines


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
    """The report as text: throughput table and targets (unless ``concurrencies`` is
    empty), memory table (unless ``idle`` is 0), then each server's failures."""
    names = [r.name for r in results]
    lines: list[str] = []
    if concurrencies:
        lines += _throughput_lines(
            results,
            concurrencies=concurrencies,
            messages=messages,
            size=size,
            tool=tool,
            repeat=repeat,
        )
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
        per = [f"{r.name} {kib:.1f} KiB" for r in results if (kib := per_idle_kib(r)) is not None]
        if per:
            lines.append("  per idle session: " + ", ".join(per))
        if results[0].name == "mta":
            v = idle_verdict(results[0])
            lines.append("Target:")
            lines.append(f"  {'PASS' if v.passed else 'FAIL'}  {v.text}")
    for r in results:
        for note in r.notes:
            lines.append(f"Note: {r.name}: {note}")
    for r in results:
        if r.failed:
            lines.append(f"{r.name}: failed: " + "; ".join(r.failures))
        else:
            lines.append(f"{r.name}: ok")
    return "\n".join(lines)


@dataclass
class DeliveryResult(Failures):
    """One server's end-to-end runs by concurrency, every complete run in the order they
    ran; the medians count (:meth:`record`)."""

    name: str
    runs: dict[int, list[float]] = field(default_factory=dict)  # s until all were delivered
    sent_runs: dict[int, list[float]] = field(default_factory=dict)  # s until smtp-source done
    cpu_runs: dict[int, list[float]] = field(default_factory=dict)  # server CPU ms/message
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, sessions: int, seconds: float, sent_seconds: float, cpu_ms: float) -> None:
        self.runs.setdefault(sessions, []).append(seconds)
        self.sent_runs.setdefault(sessions, []).append(sent_seconds)
        self.cpu_runs.setdefault(sessions, []).append(cpu_ms)

    def seconds(self, sessions: int) -> float | None:
        """Median seconds until all were delivered."""
        return median(self.runs.get(sessions, []))

    def sent_seconds(self, sessions: int) -> float | None:
        return median(self.sent_runs.get(sessions, []))

    def cpu_ms(self, sessions: int) -> float | None:
        return median(self.cpu_runs.get(sessions, []))

    def rate(self, sessions: int, messages: int) -> float | None:
        """Messages/s of the median run."""
        s = self.seconds(sessions)
        return messages / s if s else None


def delivery_verdict(
    mta: DeliveryResult,
    peer: DeliveryResult,
    sessions: int,
    messages: int,
    kind: EndToEnd = DELIVERY,
) -> Verdict:
    a, b = mta.rate(sessions, messages), peer.rate(sessions, messages)
    what = f"{kind.name} at {sessions} sessions: {mta.name}/{peer.name}"
    if a is None or b is None:
        return Verdict(f"{what} >= {kind.target}x: not measured", False)
    return Verdict(f"{what} = {a / b:.2f}x >= {kind.target}x", a / b >= kind.target)


def _seconds(r: DeliveryResult, c: int) -> str:
    s, sent = r.seconds(c), r.sent_seconds(c)
    return f"{s:.2f} ({sent:.2f})" if s is not None and sent is not None else "failed"


def format_delivery(
    results: list[DeliveryResult],
    *,
    concurrencies: list[int],
    messages: int,
    size: int,
    tool: str,
    reference: str,
    repeat: int = 1,
    skipped: str | None = None,
    kind: EndToEnd = DELIVERY,
    mta_dns: str | None = None,
) -> str:
    """An end-to-end section: rate and times per server and concurrency, ratios, targets.

    ``mta_dns`` is the ``MTA_DNS`` mta ran with (None: unset)."""
    head = kind.title
    if skipped is not None:
        return f"{head}: skipped: {skipped}"
    first, others = results[0], results[1:]
    dns = "unset" if mta_dns is None else repr(mta_dns)
    lines = [
        f"{head}: {messages} messages of {size} bytes ({tool}), from the first connection"
        f" {kind.until}; {reference}, same smtpd.conf, private network namespace,"
        f" mta's MTA_DNS {dns}" + (f"; median of {repeat} runs" if repeat > 1 else ""),
        "  messages/s: sessions"
        + "".join(f"{r.name:>12}" for r in results)
        + "".join(f"{first.name + '/' + r.name:>18}" for r in others),
    ]
    for c in concurrencies:
        row = f"  {c:>20}" + "".join(f"{_cell(r.rate(c, messages), '.1f'):>12}" for r in results)
        row += "".join(
            f"{_ratio(first.rate(c, messages), r.rate(c, messages)):>18}" for r in others
        )
        lines.append(row)
    lines.append(f"  seconds until all {kind.done} (until all accepted), median:")
    for c in concurrencies:
        cells = ", ".join(f"{r.name} {_seconds(r, c)}" for r in results)
        lines.append(f"  {c:>20}  {cells}")
    cpu = [
        r.name
        + " "
        + ", ".join(f"{ms:.2f} at {c}" for c in concurrencies if (ms := r.cpu_ms(c)) is not None)
        for r in results
        if any(r.cpu_runs.get(c) for c in concurrencies)
    ]
    if cpu:
        lines.append("  server CPU ms/message (median): " + "; ".join(cpu))
    runs = [
        f"{r.name} at {c}: " + ", ".join(f"{s:.2f}" for s in r.runs[c])
        for c in concurrencies
        for r in results
        if r.runs.get(c)
    ]
    if runs and repeat > 1:
        lines.append("  every run, s: " + "; ".join(runs))
    if others:
        lines.append("Targets:")
        for c in kind.targeted(concurrencies):
            v = delivery_verdict(first, others[0], c, messages, kind)
            lines.append(f"  {'PASS' if v.passed else 'FAIL'}  {v.text}")
        if not kind.targeted(concurrencies):
            lines.append(f"  -     {kind.name}: the target is at {kind.target_sessions} sessions")
    for r in results:
        for note in r.notes:
            lines.append(f"Note: {r.name} {kind.name}: {note}")
    for r in results:
        status = "failed: " + "; ".join(r.failures) if r.failed else "ok"
        lines.append(f"{r.name} {kind.name}: {status}")
    return "\n".join(lines)
