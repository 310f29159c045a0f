"""SMTP client dialogues and delivery waits shared by both sides of the filter oracle.

Standard library only: the OpenSMTPD side imports it inside ``unshare -m -n``
(``namespace_driver.py``), the mta side in it or in the test process.

A dialogue is a list of steps, each a string sent with ``\\r\\n`` appended, after
which one whole reply is read (``EHLO x``; a message is one step whose last
line is ``.``: ``"Subject: x\\r\\n\\r\\nbody\\r\\n."``).  The transcript is a
flat list of lines: the server's lines as received (without CRLF), each step
as ``>>> step``, and ``<<< closed`` / ``<<< timeout`` when the server closed the
connection or said nothing in time (the dialogue stops there).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "CLOSED",
    "SENT",
    "TIMEOUT",
    "accepted",
    "converse",
    "cut_short",
    "delivered",
    "expected_deliveries",
    "final_deliveries",
    "listening",
    "settle",
    "wait_delivered",
    "wait_for_port",
]

SENT = ">>> "
CLOSED = "<<< closed"
TIMEOUT = "<<< timeout"

_MESSAGE = re.compile(r" smtp message msgid=\S+ size=\d+ nrcpt=(\d+)")
_FINAL = re.compile(r"\bdelivery evpid=\S+ .*\bresult=(?:Ok|PermFail)\b")


class _Reader:
    """Reads CRLF lines from a socket, with one deadline per reply."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self, deadline: float) -> str | None:
        """One line without its line end; None when the peer closed; TimeoutError."""
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if self.buffer:  # a last line without its line end
                    text, self.buffer = self.buffer, b""
                    return text.decode("latin-1")
                return None
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\n")
        return raw.removesuffix(b"\r").decode("latin-1")

    def reply(self, timeout: float) -> list[str]:
        """The lines of one reply (up to a line whose fourth character is not
        ``-``), ending with CLOSED or TIMEOUT when it was cut short."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            try:
                line = self.line(deadline)
            except TimeoutError:
                return [*lines, TIMEOUT]
            if line is None:
                return [*lines, CLOSED]
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines


def converse(
    host: str, port: int, steps: Sequence[str], *, timeout: float = 15.0, source: str | None = None
) -> list[str]:
    """Connect (from the address ``source`` when given), read the banner, then
    send each step and read its reply."""
    transcript: list[str] = []
    bind = (source, 0) if source is not None else None
    with socket.create_connection((host, port), timeout=timeout, source_address=bind) as sock:
        reader = _Reader(sock)
        transcript += reader.reply(timeout)
        for step in steps:
            if transcript and transcript[-1] in (CLOSED, TIMEOUT):
                break
            transcript.append(SENT + step)
            try:
                sock.sendall(step.encode("latin-1") + b"\r\n")
            except OSError:
                transcript.append(CLOSED)
                break
            transcript += reader.reply(timeout)
    return transcript


def cut_short(transcripts: Sequence[Sequence[str]]) -> bool:
    """Whether a server closed a connection without a reply to the last step (or
    without a banner): a crash, or the step after a reply that closed (421)."""
    for transcript in transcripts:
        if (
            transcript
            and transcript[-1] == CLOSED
            and (len(transcript) == 1 or transcript[-2].startswith(SENT))
        ):
            return True
    return False


def settle(paths: Sequence[Path], quiet: float = 0.3, timeout: float = 5.0) -> None:
    """Until none of ``paths`` (e.g. a filter's log) has changed for ``quiet``
    seconds: what the server still reports after a session ends is written."""
    deadline = time.monotonic() + timeout

    def state() -> list[tuple[int, int]]:
        result = []
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                result.append((-1, -1))
                continue
            result.append((st.st_size, st.st_mtime_ns))
        return result

    last, since = state(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = state()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def listening(port: int) -> bool:
    """Whether a TCP socket of this network namespace listens on ``port``
    (/proc/net/tcp: no connection is made, so no session shows in the logs)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                return True
    return False


def wait_for_port(port: int, alive: Callable[[], bool], timeout: float = 20.0) -> None:
    """Until something listens on ``port``; RuntimeError when ``alive()`` turns
    false or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not listening(port):
        if not alive():
            raise RuntimeError("the server exited before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on port {port}")
        time.sleep(0.05)


def expected_deliveries(log: str) -> int:
    """The recipients of the messages accepted so far (``smtp message ... nrcpt=N``)."""
    return sum(int(m.group(1)) for m in _MESSAGE.finditer(log))


def final_deliveries(log: str) -> int:
    """The deliveries that ended (``delivery evpid=... result=Ok|PermFail``)."""
    return sum(1 for line in log.splitlines() if _FINAL.search(line))


def accepted(transcripts: Sequence[Sequence[str]]) -> int:
    """The messages the server accepted in these transcripts."""
    return sum(
        1
        for transcript in transcripts
        for line in transcript
        if line.startswith("250 ") and line.endswith(" Message accepted for delivery")
    )


def wait_delivered(
    log: Callable[[], str], transcripts: Sequence[Sequence[str]], timeout: float = 15.0
) -> bool:
    """Until the log has every message accepted in ``transcripts`` (its line may
    come after the reply) and a final delivery result for each recipient of
    each (both servers log OpenSMTPD's lines); False when ``timeout`` passed
    first (e.g. a delivery kept failing temporarily)."""
    deadline = time.monotonic() + timeout
    messages = accepted(transcripts)
    while True:
        text = log()
        if len(_MESSAGE.findall(text)) >= messages and final_deliveries(
            text
        ) >= expected_deliveries(text):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def delivered(root: Path) -> dict[str, list[str]]:
    """Every maildir under ``root``: its path relative to ``root`` -> the exact
    content of each message in it (``new/`` and ``cur/``), oldest first, bytes
    decoded as latin-1 (lossless)."""
    found: dict[str, list[tuple[int, str, str]]] = {}
    for sub in ("new", "cur"):
        for path in root.rglob(f"{sub}/*"):
            if not path.is_file() or not (path.parent.parent / "tmp").is_dir():
                continue
            key = str(path.parent.parent.relative_to(root))
            content = path.read_bytes().decode("latin-1")
            found.setdefault(key, []).append((path.stat().st_mtime_ns, path.name, content))
    return {key: [c for _, _, c in sorted(items)] for key, items in sorted(found.items())}
