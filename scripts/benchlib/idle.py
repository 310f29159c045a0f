"""Many idle SMTP sessions held open at once, to measure a server's memory per session.

Sockets connect a few dozen at a time (so a short listen backlog never turns
into SYN retransmission delays), each reads the greeting and then stays
silent until the context exits.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["IdleResult", "idle_sessions"]


@dataclass
class IdleResult:
    """How the sessions went: greeted with 220, refused (other reply or closed), failed."""

    wanted: int
    greeted: int = 0
    refused: int = 0
    failed: int = 0
    first_problem: str = ""
    sockets: list[socket.socket] = field(default_factory=list, repr=False)

    def note(self, problem: str) -> None:
        if not self.first_problem:
            self.first_problem = problem


def _pump(sel: selectors.BaseSelector, result: IdleResult, wait: float) -> None:
    for key, _ in sel.select(timeout=max(wait, 0.0)):
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        buf: bytearray = key.data
        try:
            chunk = sock.recv(4096)
        except BlockingIOError:
            continue
        except OSError as exc:
            sel.unregister(sock)
            result.failed += 1
            result.note(f"recv: {exc}")
            continue
        if not chunk:
            sel.unregister(sock)
            result.refused += 1
            result.note(f"closed after {bytes(buf)!r}")
            continue
        buf += chunk
        for line in bytes(buf).split(b"\r\n")[:-1]:
            if len(line) >= 4 and line[3:4] == b"-":
                continue
            sel.unregister(sock)
            if line.startswith(b"220"):
                result.greeted += 1
            else:
                result.refused += 1
                result.note(line.decode(errors="replace"))
            break


@contextlib.contextmanager
def idle_sessions(
    port: int,
    count: int,
    *,
    host: str = "127.0.0.1",
    timeout: float = 120.0,
    in_flight: int = 64,
) -> Iterator[IdleResult]:
    """Open ``count`` sessions, wait for their greetings, hold them while the block runs."""
    result = IdleResult(wanted=count)
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            for _ in range(count):
                while len(sel.get_map()) >= in_flight and time.monotonic() < deadline:
                    _pump(sel, result, deadline - time.monotonic())
                if time.monotonic() >= deadline:
                    break
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                result.sockets.append(sock)
                try:
                    sock.settimeout(max(deadline - time.monotonic(), 0.1))
                    sock.connect((host, port))
                except OSError as exc:
                    result.failed += 1
                    result.note(f"connect: {exc}")
                    continue
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ, bytearray())
            while sel.get_map() and time.monotonic() < deadline:
                _pump(sel, result, deadline - time.monotonic())
            missing = len(sel.get_map())
            if missing:
                result.failed += missing
                result.note(f"{missing} session(s) got no greeting within {timeout:g} s")
        yield result
    finally:
        for sock in result.sockets:
            sock.close()
