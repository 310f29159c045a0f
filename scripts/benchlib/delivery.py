"""The end-to-end figures, mta against OpenSMTPD: messages received and delivered to a
Maildir (``delivery``), or received and relayed to Postfix's smtp-sink (``relay``).

Both servers get the same smtpd.conf and must pass each other's ``-n`` check
first.  Delivery's is the receive benchmark's (``bench`` in a static
userbase, as uid 65534, one Maildir); relay's sends everything to
``relay host "smtp://127.0.0.1:2526"``, an IP, so no DNS lookup is needed.
Every run is one fresh driver process (:mod:`benchlib.delivery_run`) under
``unshare -m -n`` with a fresh spool and an empty Maildir (or a fresh
smtp-sink in the same namespace); the servers take turns, round after round,
and the median of each one's complete runs counts.  The Maildir lives in a sticky
world-writable directory under ``boxes`` (the run's scratch file system, or
/tmp) so that uid 65534 may create it whatever the repository's permissions.
Needs root; otherwise the section says why it was skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import opensmtpd
from benchlib.delivery_run import SERVERS, RunOutcome
from benchlib.peers import SCRIPTS_DIR, mta_config, relay_config
from benchlib.procs import remove_stale_dirs, run_driver
from benchlib.report import DELIVERY, RELAY, DeliveryResult, EndToEnd
from benchlib.smtpsource import SmtpSource

__all__ = ["PORT", "SINK_PORT", "DeliveryFigure", "DeliverySettings", "measure_delivery"]

PORT = 25  # each run has a network namespace of its own
SINK_PORT = 2526  # relay: smtp-sink's, in the same namespace
TMP_PREFIX = "mta-bench-"
PID_FILE = "harness.pid"

Log = Callable[[str], None]


@dataclass(frozen=True)
class DeliverySettings:
    messages: int
    concurrencies: list[int]
    size: int
    repeat: int
    timeout: float  # seconds per run
    address: str
    mta: Path
    keep: bool
    kind: EndToEnd = DELIVERY
    boxes: Path = Path(tempfile.gettempdir())  # where the Maildir's directory goes


@dataclass
class DeliveryFigure:
    """The section's outcome: each server's result, or why nothing ran."""

    results: list[DeliveryResult] = field(default_factory=list)
    reference: str = "OpenSMTPD"
    skipped: str | None = None

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.results)


def _check_configs(conf: Path, settings: DeliverySettings) -> dict[str, str | None]:
    return {
        "mta": opensmtpd.check_config([str(settings.mta), "-n", "-f", str(conf)]),
        "opensmtpd": opensmtpd.check_config([str(opensmtpd.SMTPD), "-n", "-f", str(conf)]),
    }


def _driver_argv(
    server: str,
    conf: Path,
    workdir: Path,
    maildir: Path,
    source: SmtpSource,
    settings: DeliverySettings,
    sessions: int,
) -> list[str]:
    argv = ["unshare", "-m", "-n", "--", sys.executable, "-m", "benchlib.delivery_run"]
    argv += ["--server", server, "--conf", str(conf), "--workdir", str(workdir)]
    argv += ["--maildir", str(maildir), "--port", str(PORT)]
    argv += ["--messages", str(settings.messages), "--sessions", str(sessions)]
    argv += ["--size", str(settings.size), "--address", settings.address]
    argv += ["--timeout", str(settings.timeout), "--mta", str(settings.mta)]
    argv += ["--smtp-source", str(source.binary)]
    if source.libdir is not None:
        argv += ["--smtp-source-libdir", str(source.libdir)]
    if settings.kind is RELAY:
        argv += ["--sink", "--sink-port", str(SINK_PORT)]
    return argv


def _drive(argv: list[str], timeout: float) -> RunOutcome:
    """Run one driver to its end (SIGTERM, then SIGKILL, if it overstays or we are stopped)."""
    try:
        line, status = run_driver(argv, timeout, SCRIPTS_DIR)
    except TimeoutError as exc:
        return RunOutcome(error=str(exc))
    try:
        return RunOutcome.from_json(line)
    except (ValueError, TypeError):
        return RunOutcome(error=f"the driver exited with status {status}, no outcome")


def _record(
    result: DeliveryResult,
    outcome: RunOutcome,
    n: int,
    sessions: int,
    label: str,
    counted: str = DELIVERY.counted,
) -> bool:
    """Fold one run of ``n`` messages at ``sessions`` into ``result``; False when it failed."""
    problems = {k: v for k, v in outcome.results.items() if k != "Ok"}
    if problems:
        result.notes.append(f"{label}: log results other than Ok: {problems}")
    if outcome.error is not None or outcome.seconds is None:
        result.fail(
            label, f"{outcome.error} ({outcome.delivered} {counted}, log {outcome.results})"
        )
        return False
    if outcome.delivered != n:
        result.fail(label, f"{outcome.delivered} {counted} for {n} messages sent")
        return False
    if outcome.results.get("Ok", 0) != n:
        result.notes.append(f"{label}: {outcome.results.get('Ok', 0)} result=Ok log lines for {n}")
    result.record(
        sessions, outcome.seconds, outcome.sent_seconds or 0.0, outcome.cpu_seconds * 1000 / n
    )
    return True


def _rounds(
    results: dict[str, DeliveryResult],
    conf: Path,
    maildir: Path,
    workroot: Path,
    source: SmtpSource,
    settings: DeliverySettings,
    log: Log,
) -> None:
    """Each round, each concurrency, each server: one run; a failure ends its concurrency."""
    dead: set[tuple[str, int]] = {
        (name, c) for name, r in results.items() if r.failed for c in settings.concurrencies
    }
    n, kind = settings.messages, settings.kind.name
    for attempt in range(1, settings.repeat + 1):
        for c in settings.concurrencies:
            for name in SERVERS:
                if (name, c) in dead:
                    continue
                workdir = workroot / f"{name}-{c}-{attempt}"
                workdir.mkdir()
                shutil.rmtree(maildir, ignore_errors=True)
                label = f"{c} sessions, run {attempt} of {settings.repeat}"
                argv = _driver_argv(name, conf, workdir, maildir, source, settings, c)
                outcome = _drive(argv, settings.timeout + 60)
                if settings.keep and maildir.exists():
                    shutil.move(maildir, workdir / "Maildir")
                if not _record(results[name], outcome, n, c, label, settings.kind.counted):
                    log(f"{name}: {kind}: failed: {results[name].failures[-1]}")
                    dead.add((name, c))
                    continue
                s, sent = outcome.seconds or 0.0, outcome.sent_seconds or 0.0
                log(
                    f"{name}: {kind}: {n} messages {settings.kind.done} in {s:.2f} s"
                    f" = {n / s:.1f} msg/s"
                    f" (all accepted at {sent:.2f} s; {label})"
                )


def measure_delivery(
    source: SmtpSource, workroot: Path, settings: DeliverySettings, log: Log
) -> DeliveryFigure:
    """Run the section (``workroot`` holds the conf, spools and logs); see the module doc."""
    why = opensmtpd.unavailable(log)
    if why is None and settings.kind is RELAY and not source.sink.exists():
        why = f"no smtp-sink next to smtp-source ({source.sink})"
    if why is not None:
        log(f"{settings.kind.name}: skipped: {why}")
        return DeliveryFigure(skipped=why)
    figure = DeliveryFigure(reference=opensmtpd.version())
    results = {name: DeliveryResult(name) for name in SERVERS}
    figure.results = [results[name] for name in SERVERS]
    remove_stale_dirs(settings.boxes, TMP_PREFIX + "*", PID_FILE)
    boxroot = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=settings.boxes))
    try:
        (boxroot / PID_FILE).write_text(f"{os.getpid()}\n")
        os.chmod(boxroot, 0o1777)  # deliveries run as uid 65534
        maildir = boxroot / "Maildir"
        workroot.mkdir(parents=True, exist_ok=True)
        conf = workroot / "smtpd.conf"
        if settings.kind is RELAY:
            conf.write_text(relay_config(PORT, SINK_PORT))
        else:
            conf.write_text(mta_config(PORT, maildir))
        for name, problem in _check_configs(conf, settings).items():
            if problem is not None:
                results[name].fail("configuration", problem)
        _rounds(results, conf, maildir, workroot, source, settings, log)
    finally:
        with contextlib.suppress(OSError):
            (boxroot / PID_FILE).unlink()
        shutil.rmtree(boxroot, ignore_errors=True)
    return figure
