"""The remote host's replies as the relay client reads them.

:func:`check` refuses a reply whose text is not printable ASCII (a control
character, an invalid or any non-ASCII byte: all junk from an SMTP server's
point of view).  :class:`Extensions` is what an EHLO / LHLO reply offers.
:func:`result_of` turns a reply into a :class:`~mta.delivery.result.Result`
that keeps the remote's code and text, escaped and bounded, so a bounce can
quote "host said: 550 5.1.1 ...", and its enhanced status code unchanged
(:func:`status_of`: ``5.7.26`` stays ``5.7.26``); :func:`too_many_recipients` recognises the
RFC 5321 4.5.3.1.10 recipient-limit reply (452, or a 552 that says so).
"""

from __future__ import annotations

import re

import attrs

from mta.delivery.result import Result
from mta.log import visible
from mta.reply import Reply
from mta.status import StatusCode

__all__ = [
    "TEXT_MAX",
    "Extensions",
    "check",
    "result_of",
    "status_of",
    "tempfail_of",
    "too_many_recipients",
]

TEXT_MAX = 400
"""Characters of a reply kept in a Result's text."""

_PRINTABLE = re.compile(r"[\t\x20-\x7e]*\Z")


def check(reply: Reply) -> str | None:
    """Why ``reply`` is malformed, or None."""
    if all(_PRINTABLE.match(line) for line in reply.lines):
        return None
    return "Remote host sent a reply with non-printable or non-ASCII characters"


@attrs.frozen
class Extensions:
    """What the remote host announced in its EHLO / LHLO reply (nothing after HELO).

    ``size`` is None when SIZE is not offered and 0 when it is offered without
    a limit; ``auth`` holds the SASL mechanisms, upper case."""

    pipelining: bool = False
    starttls: bool = False
    size: int | None = None
    eightbitmime: bool = False
    smtputf8: bool = False
    dsn: bool = False
    auth: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, reply: Reply) -> Extensions:
        """The keywords of every line after the first (``AUTH=`` as ``AUTH``)."""
        found: dict[str, list[str]] = {}
        for line in reply.lines[1:]:
            words = line.split()
            if words and words[0].upper().startswith("AUTH="):  # the pre-RFC 4954 form
                words = ["AUTH", words[0][5:], *words[1:]]
            if words:
                found.setdefault(words[0].upper(), []).extend(w.upper() for w in words[1:])
        size: int | None = None
        if "SIZE" in found:
            params = found["SIZE"]
            size = int(params[0]) if params and params[0].isdigit() and len(params[0]) < 19 else 0
        return cls(
            pipelining="PIPELINING" in found,
            starttls="STARTTLS" in found,
            size=size,
            eightbitmime="8BITMIME" in found,
            smtputf8="SMTPUTF8" in found,
            dsn="DSN" in found,
            auth=frozenset(found.get("AUTH", ())),
        )


_UNDEFINED = StatusCode(5, 0, 0)  # x.0.0: "other undefined status" (RFC 3463 3.1)


def status_of(reply: Reply) -> StatusCode:
    """The reply's RFC 3463 code exactly as the remote gave it (``5.7.26``,
    ``5.7.350``), or x.0.0 when it gave none or one that is not valid; the
    :class:`Result` constructors set the class from the outcome."""
    if reply.enhanced is None:
        return _UNDEFINED
    return StatusCode.parse(reply.enhanced) or _UNDEFINED


def result_of(reply: Reply) -> Result:
    """2xx: delivered (or relayed); 5xx: permanent failure; anything else: temporary."""
    text = visible(reply.text, TEXT_MAX)
    if 200 <= reply.code < 300:
        return Result.ok(text)
    if reply.code >= 500:
        return Result.permfail(text, status_of(reply))
    return Result.tempfail(text, status_of(reply))


def tempfail_of(reply: Reply, prefix: str = "") -> Result:
    """A temporary failure quoting ``reply``, whatever its class (session failures)."""
    return Result.tempfail(prefix + visible(reply.text, TEXT_MAX), status_of(reply))


def too_many_recipients(reply: Reply) -> bool:
    """452 (unless its enhanced code names another cause), or 552 with 5.5.3 or
    "too many recipients": retry the rest in a further transaction."""
    if reply.code == 452:
        return reply.enhanced in (None, "4.5.3") or "too many recipients" in reply.text.lower()
    if reply.code == 552:
        return reply.enhanced == "5.5.3" or "too many recipients" in reply.text.lower()
    return False
