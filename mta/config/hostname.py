"""The server name: ``/etc/mailname`` or the host's own name, as OpenSMTPD finds it.

OpenSMTPD uses the first line of the mailname file when it exists, else
gethostname(3) when that is fully qualified, else the canonical name from
getaddrinfo(3).  The canonical-name lookup runs with a short deadline so a
dead resolver cannot stall start-up.
"""

from __future__ import annotations

import socket
import threading

__all__ = ["MAILNAME_FILES", "server_name"]

MAILNAME_FILES = ("/etc/mail/mailname", "/etc/mailname")
_DEADLINE = 2.0


def _canonical(name: str) -> str | None:
    result: list[str] = []

    def run() -> None:
        try:
            infos = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
        except (OSError, UnicodeError):
            return
        for info in infos:
            if info[3]:
                result.append(info[3])
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(_DEADLINE)
    return result[0] if result else None


def server_name(mailname_files: tuple[str, ...] = MAILNAME_FILES) -> str:
    """The default server name used in banners and Received headers."""
    for path in mailname_files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                first = f.readline().strip()
        except OSError:
            continue
        if first:
            return first.lower()
    host = socket.gethostname() or "localhost"
    if "." in host:
        return host.lower()
    return (_canonical(host) or host).lower()
