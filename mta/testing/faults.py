"""Deterministic failures of an in-process test server: :class:`Fault`, :class:`FaultSet`.

A test suite that relays through a :class:`~mta.testing.MailServer` makes it
fail on purpose (``server.fail(...)``), to test its own retries and bounces.
A :class:`Fault` says where the server fails and how:

``at``
    ``"connect"``: in place of the banner (the reply is the greeting; then
    only QUIT is served); ``"mail"``: at MAIL FROM; ``"rcpt"`` (the default):
    at RCPT TO; ``"data"``: at the DATA command (no 354); ``"commit"``: after
    the final dot, in place of the 250 (nothing is queued).
``rcpt``
    an address or an ``fnmatch`` pattern (``*@example.net``), any case, angle
    brackets optional; None: any.  At ``"rcpt"`` it is matched against the
    recipient of the command; at ``"data"`` and ``"commit"`` the fault applies
    when any recipient the transaction accepted so far matches.  ``"connect"``
    and ``"mail"`` come before any recipient, so it must be None there.
``reply``
    the reply line sent instead of the server's own, a 4xx or 5xx code with
    an optional enhanced status code (``"451 4.3.0 Try again later"``), sent
    as given.  A 421 closes the connection after it, as RFC 5321 says.
``disconnect``
    close the connection at that point: after ``reply`` if there is one,
    else without a word.
``delay``
    seconds to wait before answering; then ``reply`` / ``disconnect`` apply,
    and without them the server answers as usual (a slow server).
``times``
    apply the fault to this many commands only, then drop it; None (the
    default): every matching command until :meth:`FaultSet.clear`.

A :class:`FaultSet` holds a server's faults.  The session asks it at each
phase (:meth:`FaultSet.take`); the first fault added that matches wins.  The
test thread adds and clears faults while the server's trio thread takes them,
so every access takes one lock.  The daemon has no fault set: its sessions
pay one attribute check per phase.
"""

from __future__ import annotations

import fnmatch
import math
import re
import threading
from collections.abc import Iterable, Sequence

import attrs

from mta.reply import Reply

__all__ = ["PHASES", "Fault", "FaultSet", "parse_reply"]

PHASES = ("connect", "mail", "rcpt", "data", "commit")
"""Where a fault can apply, in the order of an SMTP session."""

_BEFORE_RECIPIENTS = ("connect", "mail")

_REPLY = re.compile(r"([45][0-9][0-9])(?: (.*))?", re.DOTALL)
_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: (.*))?", re.DOTALL)


def parse_reply(text: str) -> Reply:
    """The :class:`~mta.reply.Reply` of a fault's ``reply`` line; ValueError
    when it is not one line with a 4xx or 5xx code (and, if it has one, an
    enhanced status code of the same class)."""
    if not isinstance(text, str):
        raise ValueError(f"a fault's reply must be a string, not {type(text).__name__}")
    if any(c in text for c in "\r\n\0"):
        raise ValueError(f"a fault's reply must be one line: {text!r}")
    found = _REPLY.fullmatch(text)
    if found is None:
        raise ValueError(
            f"a fault's reply must start with a 4xx or 5xx code: {text!r}"
            " (e.g. '451 4.3.0 Try again later')"
        )
    code = int(found.group(1))
    message = found.group(2) or ""
    enhanced = None
    status = _ENHANCED.fullmatch(message)
    if status is not None:
        if status.group(1) != found.group(1)[0]:
            raise ValueError(
                f"a fault's reply has enhanced status code"
                f" {'.'.join(status.group(1, 2, 3))} for reply code {code}: {text!r}"
            )
        enhanced = ".".join(status.group(1, 2, 3))
        message = status.group(4) or ""
    return Reply.of(code, enhanced, message, close=code == 421)


def _pattern(rcpt: str) -> str:
    """A recipient pattern as it is matched: no angle brackets, lower case."""
    text = rcpt.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text.lower()


@attrs.frozen
class Fault:
    """Where and how a test server fails; see the module docstring.
    ValueError when the fields make no sense together."""

    rcpt: str | None = None
    at: str = "rcpt"
    reply: str | None = None
    disconnect: bool = False
    delay: float = 0.0
    times: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.at not in PHASES:
            raise ValueError(f"a fault's at must be one of {', '.join(PHASES)}, not {self.at!r}")
        if self.rcpt is not None:
            if not isinstance(self.rcpt, str) or not _pattern(self.rcpt):
                raise ValueError(f"a fault's rcpt must be an address or a pattern: {self.rcpt!r}")
            if self.at in _BEFORE_RECIPIENTS:
                raise ValueError(
                    f"a fault at {self.at} comes before any recipient: rcpt must be None"
                    f" (use at='rcpt', 'data' or 'commit' to fail for {self.rcpt})"
                )
        if self.reply is not None:
            parse_reply(self.reply)
        if not isinstance(self.disconnect, bool):
            raise ValueError(f"a fault's disconnect must be True or False: {self.disconnect!r}")
        delay = self.delay
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
            or delay < 0
        ):
            raise ValueError(f"a fault's delay must be a number of seconds >= 0: {delay!r}")
        times = self.times
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ValueError(f"a fault's times must be None or a count >= 1: {times!r}")
        if self.reply is None and not self.disconnect and not delay:
            raise ValueError("a fault needs a reply, disconnect=True or a delay")

    @property
    def smtp_reply(self) -> Reply | None:
        """The reply the server sends, its ``close`` set when the connection
        closes after it; None: no reply of the fault's own."""
        if self.reply is None:
            return None
        reply = parse_reply(self.reply)
        if self.disconnect and not reply.close:
            reply = attrs.evolve(reply, close=True)
        return reply

    def matches(self, at: str, rcpts: Iterable[str] = ()) -> bool:
        """Whether the fault applies at ``at`` with these recipients (the one
        of the RCPT command at ``"rcpt"``, those accepted so far later on)."""
        if at != self.at:
            return False
        if self.rcpt is None:
            return True
        pattern = _pattern(self.rcpt)
        return any(fnmatch.fnmatchcase(_pattern(rcpt), pattern) for rcpt in rcpts)


@attrs.define
class _Armed:
    fault: Fault
    left: int | None  # uses left; None: no limit


class FaultSet:
    """The faults of one server, in the order they were added; safe to use
    from any thread."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._armed = [_Armed(fault, fault.times) for fault in faults]

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults in force, first added first (those used up are gone)."""
        with self._lock:
            return tuple(armed.fault for armed in self._armed)

    def __len__(self) -> int:
        with self._lock:
            return len(self._armed)

    def add(self, fault: Fault) -> None:
        """Apply ``fault`` from the next command on, after those already added."""
        if not isinstance(fault, Fault):
            raise TypeError(f"FaultSet.add takes a Fault, not {type(fault).__name__}")
        with self._lock:
            self._armed.append(_Armed(fault, fault.times))

    def clear(self) -> None:
        """Drop every fault: the server answers as usual from the next command on."""
        with self._lock:
            self._armed.clear()

    def take(self, at: str, rcpts: Sequence[str] = ()) -> Fault | None:
        """The fault to apply at ``at`` (see :meth:`Fault.matches` for
        ``rcpts``), one of its uses counted; None when no fault applies."""
        with self._lock:
            for index, armed in enumerate(self._armed):
                if not armed.fault.matches(at, rcpts):
                    continue
                if armed.left is not None:
                    armed.left -= 1
                    if armed.left <= 0:
                        del self._armed[index]
                return armed.fault
        return None
