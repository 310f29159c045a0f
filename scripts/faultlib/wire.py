"""Raw SMTP over a socket, for clients that misbehave on purpose.

smtplib cannot send half a command or garbage, so the flood, slowloris and
garbage scenarios speak bytes: :func:`open_session` connects (from a chosen
loopback address) and reads the greeting, :func:`read_reply` reads one
complete reply, and :func:`final_codes` finds every reply's code in what a
server sent back (a reply is complete at its line ``NNN text``, not at
``NNN-text``).
"""

from __future__ import annotations

import re
import socket
import time

__all__ = ["final_codes", "open_session", "read_reply", "read_until_closed", "refusals"]

_FINAL = re.compile(rb"^(\d{3})(?: [^\r\n]*)?\r?$", re.MULTILINE)


def final_codes(data: bytes) -> list[int]:
    """The codes of the complete replies in ``data``, in order."""
    return [int(m.group(1)) for m in _FINAL.finditer(data)]


def refusals(data: bytes) -> int:
    """How many of the replies in ``data`` are 4xx or 5xx."""
    return sum(1 for code in final_codes(data) if 400 <= code < 600)


def read_reply(sock: socket.socket, timeout: float) -> bytes:
    """Bytes up to and including one complete reply (empty: the server closed first)."""
    deadline = time.monotonic() + timeout
    data = b""
    while not final_codes(data):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete reply within {timeout:g} s (got {data[-80:]!r})")
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


def open_session(
    port: int, source: str | None = None, timeout: float = 10.0
) -> tuple[socket.socket, bytes]:
    """A connection to 127.0.0.1:``port`` and its greeting."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        return sock, read_reply(sock, timeout)
    except BaseException:
        sock.close()
        raise


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; (bytes, whether it closed in time)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except OSError:  # reset: it closed with our input unread
            return data, True
        if not chunk:
            return data, True
        data += chunk
