"""Postfix's ``smtp-source`` load generator: fetching it and timing one run.

Postfix is not installed as a mail server: ``apt-get download postfix`` fetches
the package and ``dpkg -x`` unpacks it into the cache directory.  The program
needs Postfix's own shared libraries (``usr/lib/postfix/*.so``), which come
from the same package, so every run sets ``LD_LIBRARY_PATH`` to them.  The
package's ``smtp-sink``, which accepts and discards every message, is the
relay benchmark's destination (:func:`sink_server`, :func:`sink_count`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchlib.procs import Server, die_with_parent

__all__ = [
    "LoadError",
    "LoadResult",
    "SetupError",
    "SmtpSource",
    "cached",
    "fetch",
    "numbered_recipients",
    "run_load",
    "sink_count",
    "sink_server",
]

Log = Callable[[str], None]


class SetupError(Exception):
    """smtp-source could not be fetched, unpacked or run."""


class LoadError(Exception):
    """One smtp-source run failed (non-zero exit, timeout); the text says why."""


@dataclass(frozen=True)
class SmtpSource:
    """An unpacked smtp-source and the directory holding its shared libraries."""

    binary: Path
    libdir: Path | None
    version: str

    @property
    def sink(self) -> Path:
        """The package's smtp-sink, next to smtp-source."""
        return self.binary.with_name("smtp-sink")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.libdir is not None:
            old = env.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = str(self.libdir) + (f":{old}" if old else "")
        return env

    def command(
        self,
        port: int,
        *,
        sessions: int,
        messages: int,
        size: int,
        sender: str,
        recipient: str,
        host: str = "127.0.0.1",
        recipients: int = 1,
    ) -> list[str]:
        """The command line: one recipient per message (``-r 1``), a new connection each.

        With ``recipients`` N > 1 each message goes to N recipients: smtp-source
        sends ``N<recipient>``, ``N-1<recipient>`` ... ``2<recipient>``, then
        ``<recipient>`` (:func:`numbered_recipients`)."""
        return [
            str(self.binary),
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            str(size),
            "-r",
            str(recipients),
            "-f",
            sender,
            "-t",
            recipient,
            "-M",
            "bench.localhost",
            f"{host}:{port}",
        ]


def numbered_recipients(local: str, count: int) -> list[str]:
    """The local parts smtp-source gives ``count`` recipients of ``local``."""
    return [f"{n}{local}" for n in range(count, 1, -1)] + [local]


@dataclass(frozen=True)
class LoadResult:
    messages: int
    sessions: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def _check(source: SmtpSource) -> SmtpSource:
    """Run it without arguments: it must print its usage, not a loader error."""
    try:
        proc = subprocess.run(
            [str(source.binary)],
            env=source.env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"{source.binary} does not run: {exc}") from exc
    out = (proc.stdout + proc.stderr).strip()
    if "usage:" not in out:
        raise SetupError(f"{source.binary} does not run: {out[-500:] or proc.returncode}")
    return source


def _apt_download(debdir: Path, log: Log) -> Path:
    if shutil.which("apt-get") is None:
        raise SetupError("apt-get is missing: cannot download the postfix package")
    debdir.mkdir(parents=True, exist_ok=True)
    for old in debdir.glob("postfix_*.deb"):
        old.unlink()

    def download() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "download", "postfix"],
            cwd=debdir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    log("fetching smtp-source: apt-get download postfix")
    proc = download()
    if proc.returncode != 0 and os.geteuid() == 0:
        log("apt-get download failed; running apt-get update and retrying")
        subprocess.run(
            ["apt-get", "update", "-q"],
            capture_output=True,
            timeout=600,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        proc = download()
    debs = sorted(debdir.glob("postfix_*.deb"))
    if proc.returncode != 0 or not debs:
        detail = (proc.stderr or proc.stdout).strip()[-500:]
        raise SetupError(f"apt-get download postfix failed: {detail}")
    return debs[-1]


def _deb_version(deb: Path) -> str:
    # postfix_3.7.11-0+deb12u1_amd64.deb -> 3.7.11-0+deb12u1
    parts = deb.name.split("_")
    return parts[1] if len(parts) >= 3 else "unknown"


def cached(cache: Path) -> SmtpSource | None:
    """The smtp-source unpacked in ``cache`` by :func:`fetch`; None when there is none."""
    root = cache / "postfix"
    binary = root / "usr" / "sbin" / "smtp-source"
    try:
        version = (root / "VERSION").read_text().strip()
    except OSError:
        return None
    return (
        SmtpSource(binary, root / "usr" / "lib" / "postfix", version) if binary.exists() else None
    )


def fetch(cache: Path, log: Log) -> SmtpSource:
    """An smtp-source that runs: the cached one, else downloaded, else the system's."""
    root = cache / "postfix"
    binary = root / "usr" / "sbin" / "smtp-source"
    libdir = root / "usr" / "lib" / "postfix"
    found = cached(cache)
    if found is not None:
        try:
            return _check(found)
        except SetupError as exc:
            log(f"cached smtp-source unusable ({exc}); fetching it again")
    try:
        deb = _apt_download(cache / "deb", log)
        staging = cache / "postfix.new"
        shutil.rmtree(staging, ignore_errors=True)
        proc = subprocess.run(
            ["dpkg", "-x", str(deb), str(staging)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise SetupError(f"dpkg -x {deb.name} failed: {proc.stderr.strip()[-500:]}")
        (staging / "VERSION").write_text(_deb_version(deb) + "\n")
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
        return _check(SmtpSource(binary, libdir, _deb_version(deb)))
    except (SetupError, OSError, subprocess.TimeoutExpired) as exc:
        system = shutil.which("smtp-source") or shutil.which("smtp-source", path="/usr/sbin")
        if system is None:
            raise SetupError(str(exc)) from exc
        log(f"{exc}; using the system's {system}")
        return _check(SmtpSource(Path(system), None, "system"))


def run_load(
    source: SmtpSource,
    port: int,
    *,
    sessions: int,
    messages: int,
    size: int,
    sender: str,
    recipient: str,
    timeout: float,
    recipients: int = 1,
) -> LoadResult:
    """Send ``messages`` messages over ``sessions`` parallel sessions; wall-clock timed.

    smtp-source stops with a non-zero exit at the first reply that is not the
    expected success, so a zero exit means every message got its 250.
    """
    argv = source.command(
        port,
        sessions=sessions,
        messages=messages,
        size=size,
        sender=sender,
        recipient=recipient,
        recipients=recipients,
    )
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=source.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,  # the harness runs no threads
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise LoadError(f"smtp-source did not finish within {timeout:g} s") from None
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    elapsed = time.monotonic() - start
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        last = text.splitlines()[-1] if text else f"exit status {proc.returncode}"
        raise LoadError(f"smtp-source: {last}")
    return LoadResult(messages=messages, sessions=sessions, seconds=elapsed)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()  # reaps it and closes the pipe


_SINK_COUNTER = re.compile(rb"mesg=(\d+)\r")  # a whole counter line


def sink_server(source: SmtpSource, workdir: Path, port: int, host: str = "127.0.0.1") -> Server:
    """``smtp-sink -c`` on ``host:port``, as ``nobody`` (it must drop root).

    ``-c`` makes it write a counter line, ``sess=N quit=N mesg=N`` ended by a
    carriage return, to its stdout (``workdir/sink.out``) whenever a session
    ends or a message's final ``.`` arrives; :func:`sink_count` reads it.
    """
    argv = [str(source.sink), "-c", "-u", "nobody", f"{host}:{port}", "256"]
    return Server(
        "smtp-sink",
        argv,
        port=port,
        log_path=workdir / "sink.out",
        env=source.env(),
        cwd=workdir,
        host=host,
    )


def sink_count(out: Path) -> int:
    """Messages the sink has received: the last ``mesg=N`` of its counter output."""
    try:
        with open(out, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 256))
            tail = f.read()
    except OSError:
        return 0
    counts = _SINK_COUNTER.findall(tail)
    return int(counts[-1]) if counts else 0
