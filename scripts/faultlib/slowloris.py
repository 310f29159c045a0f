"""Slow clients: how long does the daemon let a dribbler hold a session?

Two clients at once, one byte each per interval: one inside a command line
(``EHLO aaaa...``, never ended), one inside DATA (one-letter lines, never
the final dot).  The daemon's timeouts are shortened by ``MTA_TIMEOUT_SCALE``
(:mod:`mta.server.timeouts`), and the interval is a quarter of its scaled
silence limit inside DATA, so the DATA client completes a line in less than
that limit and is never cut for silence: only a limit on the whole command
or the whole DATA (or a minimum rate) can end them.  Each is timed from its
first dribbled byte until the server closes.  Promises (unscaled): a command
line is cut within 5 minutes (RFC 5321's server wait), a DATA transfer
within 10 minutes (its DATA termination wait).  The clients give up a
little after the daemon's whole-DATA limit of today (1 hour), so what it
does now is measured, not assumed.
"""

from __future__ import annotations

import itertools
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from benchlib.procs import free_port

from faultlib.context import Context, log
from faultlib.daemon import Daemon, DaemonError
from faultlib.mail import ADDRESS
from faultlib.report import Row, held
from faultlib.wire import final_codes, open_session, read_reply

__all__ = ["Held", "dribble", "slowloris"]

COMMAND_LIMIT = 300.0  # seconds, unscaled: the promise for a command line
DATA_LIMIT = 600.0  # seconds, unscaled: the promise for a whole DATA transfer
DATA_SILENCE = 180.0  # the daemon's silence limit inside DATA, unscaled
GIVE_UP = 3600.0 * 1.1  # unscaled: past the daemon's whole-DATA limit of today


@dataclass(frozen=True)
class Held:
    seconds: float
    closed: bool  # the server closed it (False: the client gave up first)
    reply: str  # the last reply it sent meanwhile, if any

    def text(self, scale: float) -> str:
        how = held(self.seconds, scale)
        if not self.closed:
            return f"still held after {how}"
        return f"{how}{f', then {self.reply}' if self.reply else ''}"


def _short_lines() -> Iterator[bytes]:
    """``a<CR><LF>`` over and over, a byte at a time: a line every 3 bytes."""
    return (bytes([b]) for b in itertools.cycle(b"a\r\n"))


def dribble(
    port: int, prelude: list[bytes], stream: Iterator[bytes], interval: float, give_up: float
) -> Held:
    """Say each command of ``prelude`` (reading its reply), then send ``stream`` one
    byte per ``interval`` until the server closes or ``give_up`` seconds pass."""
    sock, _ = open_session(port)
    with sock:
        for command in prelude:
            sock.sendall(command)
            read_reply(sock, 10.0)
        started = time.monotonic()
        last = b""
        while time.monotonic() - started < give_up:
            try:
                sock.send(next(stream))
            except OSError:
                return Held(time.monotonic() - started, True, _last(last))
            pause_until = time.monotonic() + interval
            while (left := pause_until - time.monotonic()) > 0:
                readable, _, _ = select.select([sock], [], [], left)
                if not readable:
                    break
                try:
                    chunk = sock.recv(4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    return Held(time.monotonic() - started, True, _last(last))
                last += chunk
        return Held(time.monotonic() - started, False, _last(last))


def _last(data: bytes) -> str:
    codes = final_codes(data)
    if not codes:
        return ""
    line = data.rstrip().splitlines()[-1]
    return line.decode(errors="replace")[:40]


def slowloris(ctx: Context) -> list[Row]:
    scale = ctx.settings.timeout_scale
    promise_cmd = f"cut within {held(COMMAND_LIMIT * scale, scale)}"
    promise_data = f"cut within {held(DATA_LIMIT * scale, scale)}"
    measured_cmd = "time a command-line dribbler is held"
    measured_data = "time a DATA dribbler is held"
    space = ctx.workspace("slowloris")
    daemon = Daemon(space, free_port(), env={"MTA_TIMEOUT_SCALE": f"{scale:g}"})
    try:
        daemon.start()
    except DaemonError as exc:
        why = str(exc)
        return [
            Row.broken("slowloris: command", measured_cmd, promise_cmd, why),
            Row.broken("slowloris: DATA", measured_data, promise_data, why),
        ]
    interval = DATA_SILENCE * scale / 4
    give_up = GIVE_UP * scale
    results: dict[str, Held | Exception] = {}
    ehlo = b"EHLO faults.invalid\r\n"
    plans = {
        "command": ([], itertools.chain([b"E", b"H", b"L", b"O", b" "], itertools.repeat(b"a"))),
        "DATA": (
            [
                ehlo,
                f"MAIL FROM:<{ADDRESS}>\r\n".encode(),
                f"RCPT TO:<{ADDRESS}>\r\n".encode(),
                b"DATA\r\n",
            ],
            _short_lines(),
        ),
    }

    def run(name: str) -> None:
        prelude, stream = plans[name]
        try:
            results[name] = dribble(daemon.port, prelude, stream, interval, give_up)
        except (OSError, TimeoutError) as exc:
            results[name] = exc

    with daemon:
        threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in plans]
        for t in threads:
            t.start()
        for t in threads:
            t.join(give_up + 60)
        alive = daemon.alive()
    rows = []
    for name, measured, promise, limit in (
        ("command", measured_cmd, promise_cmd, COMMAND_LIMIT),
        ("DATA", measured_data, promise_data, DATA_LIMIT),
    ):
        scenario = f"slowloris: {name}"
        got = results.get(name)
        if not isinstance(got, Held):
            rows.append(Row.broken(scenario, measured, promise, f"the client failed: {got!r}"))
            continue
        result = got.text(scale) + ("" if alive else f"; the daemon died ({daemon.exit_text()})")
        log(f"{scenario}: {result} (one byte every {interval:.2f} s)")
        # a little slack for the loop's own pace: one interval and half a second
        ok = got.closed and got.seconds <= limit * scale + interval + 0.5 and alive
        rows.append(Row.judged(scenario, "1 client", measured, promise, result, ok))
    return rows
