"""Saturation: one address holds more connections than the daemon takes; is anyone else served?

The daemon runs with a low descriptor limit (``prlimit --nofile``), so its
session cap (announced as ``mta: ready, N session(s) at most``) is within
reach.  127.0.0.1 opens the cap plus :data:`EXTRA` connections and keeps
them idle; then a client from 127.0.0.2 tries to send one message.  The
promise: it is served within :data:`PATIENCE` seconds, and the log says the
cap was reached (a flood nobody hears of cannot be acted on).
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import time

from benchlib.procs import free_port

from faultlib.context import Context, log
from faultlib.daemon import Daemon, DaemonError
from faultlib.mail import connect, send, token
from faultlib.report import Row
from faultlib.wire import final_codes

__all__ = ["flood"]

SCENARIO = "flood from one address"
NOFILE = 128
EXTRA = 20
PATIENCE = 5.0  # the promise: another address is served within this
WAIT = 15.0  # how long the other client tries
FLOOD_SOURCE = "127.0.0.1"
OTHER_SOURCE = "127.0.0.2"
# a log line about the cap: not one of the per-session lines
_SESSION_LINE = re.compile(r" smtp (connected|disconnected|message|envelope) | mda delivery ")
_CAP_LINE = re.compile(
    r"limit|capacity|too many|full|reached|refus|out of file descriptors|pausing", re.IGNORECASE
)


def cap_lines(text: str) -> list[str]:
    """The log lines in ``text`` that speak of a session or connection cap."""
    return [
        line
        for line in text.splitlines()
        if _CAP_LINE.search(line) and not _SESSION_LINE.search(line)
    ]


def _classify(socks: list[socket.socket]) -> dict[str, int]:
    """What each flood connection got so far: a 220, a refusal, a close, or nothing yet."""
    counts = {"greeted": 0, "refused": 0, "closed": 0, "waiting": 0}
    for sock in socks:
        sock.setblocking(False)
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            counts["waiting"] += 1
            continue
        except OSError:
            counts["closed"] += 1
            continue
        codes = final_codes(data)
        if not data:
            counts["closed"] += 1
        elif codes and codes[0] == 220:
            counts["greeted"] += 1
        elif codes:
            counts["refused"] += 1
        else:
            counts["waiting"] += 1
    return counts


def _other_client(port: int) -> tuple[float | None, str]:
    """Seconds until the other address's message got its 250 (None: not served), and why."""
    started = time.monotonic()
    try:
        client = connect(port, timeout=WAIT, source=OTHER_SOURCE)
    except (OSError, smtplib.SMTPException) as exc:
        waited = time.monotonic() - started
        if waited >= WAIT - 0.5:
            return None, f"not served within {WAIT:g} s (no greeting)"
        return None, f"not served: {type(exc).__name__} ({exc}) after {waited:.1f} s"
    try:
        reply = send(client, token("flood", 0))
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.quit()
    except (OSError, smtplib.SMTPException) as exc:
        return None, f"session broke: {type(exc).__name__}"
    finally:
        client.close()
    if not reply.accepted:
        return None, f"refused: {reply.code} {reply.text}"
    return time.monotonic() - started, ""


def flood(ctx: Context) -> Row:
    measured = f"time to serve 127.0.0.2 while 127.0.0.1 holds cap+{EXTRA}; cap logged"
    promise = f"served within {PATIENCE:g} s; the log says the cap was reached"
    space = ctx.workspace("flood")
    daemon = Daemon(space, free_port(), nofile=NOFILE)
    try:
        daemon.start()
    except DaemonError as exc:
        return Row.broken(SCENARIO, measured, promise, str(exc))
    with daemon:
        cap = daemon.capacity()
        if cap is None:
            return Row.broken(SCENARIO, measured, promise, "no 'mta: ready, N session(s)' line")
        offset = daemon.log_offset()
        socks: list[socket.socket] = []
        try:
            for _ in range(cap + EXTRA):
                socks.append(
                    socket.create_connection(
                        ("127.0.0.1", daemon.port), timeout=10, source_address=(FLOOD_SOURCE, 0)
                    )
                )
            time.sleep(1.0)
            served, why = _other_client(daemon.port)
            counts = _classify(socks)
        finally:
            for sock in socks:
                sock.close()
        alive = daemon.alive()
        logged = cap_lines(daemon.log_since(offset))
    took = f"served in {served:.2f} s" if served is not None else why
    said = f"cap logged ({logged[0].strip()[:60]!r})" if logged else "cap not logged"
    flood_text = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    result = f"{took}; {said}; cap {cap}, the flood's {len(socks)}: {flood_text}"
    if not alive:
        result += f"; the daemon died ({daemon.exit_text()})"
    log(f"{SCENARIO}: {result}")
    ok = served is not None and served <= PATIENCE and bool(logged) and alive
    return Row.judged(SCENARIO, f"1 flood of {len(socks)}", measured, promise, result, ok)
