"""Run the real ``mta -d`` as a child process for end-to-end tests.

Each daemon gets its own spool and configuration in a temporary directory and
its own loopback port, so tests never collide and can kill it with SIGKILL.
Name lookups are switched off (``MTA_DNS=none``, ``MTA_HOSTS=none``): these
tests must not depend on the machine's resolver or its /etc/hosts (a test
that wants names passes its own DNS server or hosts file in ``env``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mta.spool.paths import SpoolPaths
from mta.spool.store import Store

__all__ = ["Daemon", "free_port", "has_mail", "start", "wait_for"]

MTA = [sys.executable, "-m", "mta"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """``mta -d -f DIR/smtpd.conf --spool DIR/spool`` with a readiness wait.

    Deliveries and relaying are paused by default (``-P mda -P mta``): the tests
    of the receiving side look at what is queued; delivery tests pass ``paused=()``.
    ``prefix`` is a command put before ``mta`` (e.g. ``nsenter --net=PATH --`` to
    run it in a network namespace); it must exec ``mta``, not fork it, so that
    signals reach the daemon."""

    def __init__(
        self,
        directory: Path,
        config: str,
        *,
        env: dict[str, str] | None = None,
        paused: tuple[str, ...] = ("mda", "mta"),
        prefix: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.spool = directory / "spool"
        self.config_path = directory / "smtpd.conf"
        self.config_path.write_text(config)
        self.log_path = directory / "mta.log"
        self.env = dict(os.environ)
        self.env.setdefault("MTA_DNS", "none")
        self.env.setdefault("MTA_HOSTS", "none")
        self.env.update(env or {})
        self.paused = paused
        self.prefix = tuple(prefix)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0, stdin: bytes | None = None) -> None:
        offset = len(self.log())
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the child's exit
        self.process = subprocess.Popen(
            [
                *self.prefix,
                *MTA,
                "-d",
                "-f",
                str(self.config_path),
                "--spool",
                str(self.spool),
                *(arg for name in self.paused for arg in ("-P", name)),
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            env=self.env,
            cwd=self.directory,
        )
        log.close()
        if stdin is not None:
            assert self.process.stdin is not None
            self.process.stdin.write(stdin)
            self.process.stdin.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mta exited with {self.process.returncode}:\n{self.log()}")
            if "mta: ready" in self.log()[offset:]:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mta did not become ready:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def queued(self) -> list[Path]:
        """The committed message files in the spool (named by their msgid)."""
        queue = self.spool / "queue"
        if not queue.is_dir():
            return []
        return sorted(p for bucket in queue.iterdir() for p in bucket.iterdir() if len(p.name) == 8)

    def store(self, key: bytes | None = None) -> Store:
        """The spool read the way the daemon reads it (while it is stopped or idle)."""
        return Store(SpoolPaths(str(self.spool)), compress=False, key=key)

    def contents(self, key: bytes | None = None) -> list[bytes]:
        """The content of every committed message, in msgid order."""
        store = self.store(key)
        result = []
        for msgid in store.message_ids():
            with store.open_message(msgid) as stream:
                result.append(stream.read())
        return result


def start(directory: Path, config: str, **env: str) -> tuple[Daemon, int]:
    """A started daemon that delivers (nothing paused), listening on the port that
    replaces ``PORT`` in ``config``; ``env`` is added to its environment."""
    port = free_port()
    daemon = Daemon(directory, config.replace("PORT", str(port)), env=env, paused=())
    daemon.start()
    return daemon, port


def has_mail(maildir: Path) -> bool:
    """Whether a maildir has a message in ``new/``."""
    new = maildir / "new"
    return new.is_dir() and any(new.iterdir())


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``check`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)
