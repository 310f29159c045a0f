"""A smtpd-filters(7) filter process for tests, scripted; Python standard library only.

Usage: python3 protocol_filter.py LOG SCRIPT

LOG is appended one line per event: ``< line`` received from the server,
``> line`` sent to it, ``# note`` (a misbehaviour begins).  SCRIPT is a JSON
file (every key optional)::

    {"subsystem": "smtp-in",
     "reports": ["*"],                 # report events to register ("*": all)
     "phases": ["connect", ...],       # filter phases to register (default: all)
     "responses": {"mail-from": "reject|550 5.7.1 no", "rcpt-to": ["proceed", "junk"]},
     "data_line": {"header": ["X-Filtered: yes"], "body": ["new body"]},
     "misbehave": {"phase": "rcpt-to", "mode": "exit", "delay": 1.0, "text": "garbage"}}

A response is ``proceed`` (the default), ``junk``, ``reject|<reply>``,
``disconnect|<reply>``, ``rewrite|<value>`` or ``report|<text>`` (a
``filter-result`` of protocol 0.7: OpenSMTPD 6.8 does not know it); a list
gives the responses to the phase's first, second... request, the last one
repeating.  ``data_line``: each line of the message is echoed, after the
``header`` lines (put before the first line, i.e. before the Received header
the server wrote), and with everything after the header section replaced by
the ``body`` lines when ``body`` is given.  ``misbehave`` at ``phase`` (a
filter phase, or ``ready``: right after the server's ``config|ready``):
``exit`` (status ``status``, default 0, without answering), ``hang`` (keeps
reading, never answers), ``garbage`` (writes ``text`` instead of the answer),
``slow`` (sleeps ``delay`` seconds before every answer in that phase, e.g. each
data-line); with ``once`` (a file path) only the first process to get there
misbehaves (it creates the file), so a restarted filter behaves.

The protocol is spoken as the real filters (libopensmtpd) speak it: the
version comes from ``config|protocol|V`` (OpenSMTPD 7.x sends ``0.7``) or,
when there is none (6.8), from the first ``report|V|...`` or ``filter|V|...``
line (``0.6``); answers are ``filter-result|<session>|<token>|...`` and
``filter-dataline|<session>|<token>|<line>`` (session and token in the
other order before 0.5).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

PHASES = (
    "connect",
    "helo",
    "ehlo",
    "starttls",
    "auth",
    "mail-from",
    "rcpt-to",
    "data",
    "data-line",
    "rset",
    "quit",
    "noop",
    "help",
    "wiz",
    "commit",
)


class Filter:
    """The state of one filter process: its script, its log, the sessions' data."""

    def __init__(self, log: IO[str], script: dict[str, Any], out: IO[bytes]) -> None:
        self.log = log
        self.script = script
        self.out = out
        self.version: tuple[int, int] | None = None
        self.counts: dict[str, int] = {}
        # per session: "head" (before the message's first line), "headers", "body"
        self.data_state: dict[str, str] = {}
        misbehave = script.get("misbehave") or {}
        self.bad_phase: str | None = misbehave.get("phase")
        self.bad_mode: str = misbehave.get("mode", "")
        self.delay = float(misbehave.get("delay", 1.0))
        self.garbage: str = misbehave.get("text", "garbage from the filter")
        self.status = int(misbehave.get("status", 0))
        self.once: str | None = misbehave.get("once")

    def note(self, prefix: str, line: str) -> None:
        self.log.write(f"{prefix} {line}\n")
        self.log.flush()

    def send(self, line: str) -> None:
        self.note(">", line)
        self.out.write(line.encode("utf-8", "surrogateescape") + b"\n")
        self.out.flush()

    def misbehave(self, phase: str) -> bool:
        """Act out the script's misbehaviour at ``phase``; True when the answer
        must not be sent (garbage was sent instead)."""
        if phase != self.bad_phase:
            return False
        if self.once is not None:
            try:
                os.close(os.open(self.once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return False  # done once already: behave
        if self.bad_mode == "exit":
            self.note("#", f"exit {self.status} at {phase}")
            sys.exit(self.status)
        if self.bad_mode == "hang":
            self.note("#", f"hang at {phase}")
            while line := sys.stdin.buffer.readline():
                self.note("<", line.decode("utf-8", "surrogateescape").rstrip("\n"))
            sys.exit(0)
        if self.bad_mode == "garbage":
            self.note("#", f"garbage at {phase}")
            self.send(self.garbage)
            return True
        if self.bad_mode == "slow":
            time.sleep(self.delay)
        return False

    def handshake(self, lines: IO[bytes]) -> None:
        for raw in lines:
            line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
            self.note("<", line)
            if line.startswith("config|protocol|"):
                self.version = parse_version(line.split("|")[2])
            if line == "config|ready":
                break
        else:
            sys.exit(0)
        if self.misbehave("ready"):
            return
        subsystem = self.script.get("subsystem", "smtp-in")
        for event in self.script.get("reports", ["*"]):
            self.send(f"register|report|{subsystem}|{event}")
        for phase in self.script.get("phases", PHASES):
            self.send(f"register|filter|{subsystem}|{phase}")
        self.send("register|ready")

    def ids(self, session: str, token: str) -> str:
        if self.version is not None and self.version < (0, 5):
            return f"{token}|{session}"
        return f"{session}|{token}"

    def response(self, phase: str) -> str:
        responses = self.script.get("responses", {}).get(phase, "proceed")
        if isinstance(responses, str):
            return responses
        index = self.counts.get(phase, 0)
        self.counts[phase] = index + 1
        return str(responses[min(index, len(responses) - 1)])

    def request(self, line: str) -> None:
        fields = line.split("|", 7)
        if self.version is None and len(fields) > 1:
            self.version = parse_version(fields[1])
        if fields[0] != "filter" or len(fields) < 7:
            return
        phase, session, token = fields[4], fields[5], fields[6]
        if self.misbehave(phase):
            return
        if phase == "data-line":
            self.data_line(session, token, fields[7] if len(fields) > 7 else "")
            return
        self.send(f"filter-result|{self.ids(session, token)}|{self.response(phase)}")

    def data_line(self, session: str, token: str, text: str) -> None:
        spec = self.script.get("data_line", {})
        state = self.data_state.get(session, "head")
        out: list[str] = []
        if state == "head":
            out += spec.get("header", [])
            state = "headers"
        body = spec.get("body")
        if text == ".":  # (a replaced body is out already)
            out.append(text)
            state = "head"
        elif state == "headers":
            out.append(text)
            if text == "":
                state = "body"
                if body is not None:
                    out += body
        elif body is None:
            out.append(text)
        self.data_state[session] = state
        for line in out:
            self.send(f"filter-dataline|{self.ids(session, token)}|{line}")

    def serve(self, lines: IO[bytes]) -> None:
        self.handshake(lines)
        for raw in lines:
            line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
            self.note("<", line)
            self.request(line)


def parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return (0, 7)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: protocol_filter.py LOG SCRIPT\n")
        return 2
    with open(argv[2], encoding="utf-8") as f:
        script = json.load(f)
    with open(argv[1], "a", encoding="utf-8", errors="surrogateescape") as log:
        Filter(log, script, sys.stdout.buffer).serve(sys.stdin.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
