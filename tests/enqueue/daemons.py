"""A real ``mta -d`` for local-submission tests, and ways to look at what it queued."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mta.envelope import Envelope
from mta.spool.paths import SpoolPaths
from mta.spool.store import Store
from tests.e2e.daemon import Daemon, free_port

__all__ = ["SENDMAIL", "SmtpPipe", "config", "queued", "run_sendmail", "running"]

SENDMAIL = [sys.executable, "-c", "import sys; from mta.cli.sendmail import main; sys.exit(main())"]


def config(port: int, head: str = "") -> str:
    """Local users bob and carol (alias team = both); anything else from local is relayed."""
    return f"""
table users {{ bob = "65534:65534:/nonexistent", carol = "65534:65534:/nonexistent" }}
table aliases {{ team = "bob, carol" }}
{head}
listen on 127.0.0.1 port {port}
action "local" maildir "/nonexistent/%{{user.username}}" alias <aliases> userbase <users>
action "out" relay
match from any for domain "localhost" action "local"
match from local for any action "out"
"""


@contextmanager
def running(directory: Path, head: str = "") -> Iterator[Daemon]:
    d = Daemon(directory, config(free_port(), head))
    d.start()
    try:
        yield d
    finally:
        d.stop()


def queued(d: Daemon) -> list[tuple[list[Envelope], bytes]]:
    """Each committed message: its envelopes (by recipient) and its content."""
    store = Store(SpoolPaths(str(d.spool)), compress=False, key=None)
    by_msgid: dict[int, list[Envelope]] = {}
    for envelope in store.iter_envelopes():
        by_msgid.setdefault(envelope.msgid, []).append(envelope)
    out = []
    for msgid in sorted(by_msgid):
        with store.open_message(msgid) as f:
            content = f.read()
        out.append((sorted(by_msgid[msgid], key=lambda e: str(e.rcpt)), content))
    return out


def run_sendmail(
    args: list[str],
    data: bytes,
    spool: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[bytes]:
    environment = dict(os.environ)
    environment["MTA_SPOOL"] = str(spool)
    environment.update(env or {})
    return subprocess.run(
        [*SENDMAIL, *args],
        input=data,
        capture_output=True,
        env=environment,
        timeout=timeout,
        check=False,
    )


class SmtpPipe:
    """``mta-sendmail -bs`` as a process, spoken to one command at a time."""

    def __init__(self, spool: Path) -> None:
        env = dict(os.environ, MTA_SPOOL=str(spool))
        self.proc = subprocess.Popen(
            [*SENDMAIL, "-bs"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.stdout = self.proc.stdout.fileno()
        self.pending = bytearray()

    def __enter__(self) -> SmtpPipe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.stdin.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def reply(self) -> bytes:
        """One whole reply (its last line has a space after the code), CRLFs between lines."""
        while True:
            lines = bytes(self.pending).split(b"\r\n")
            for index, line in enumerate(lines[:-1]):
                if line[3:4] == b" ":
                    del self.pending[: sum(len(x) + 2 for x in lines[: index + 1])]
                    return b"\r\n".join(lines[: index + 1])
            ready, _, _ = select.select([self.stdout], [], [], 10)
            assert ready, "no reply"
            data = os.read(self.stdout, 4096)
            assert data, f"end of output after {bytes(self.pending)!r}"
            self.pending.extend(data)

    def say(self, line: bytes) -> bytes:
        self.stdin.write(line + b"\r\n")
        self.stdin.flush()
        return self.reply()

    def finish(self) -> int:
        """Close our side; the exit status."""
        self.stdin.close()
        return self.proc.wait(10)
