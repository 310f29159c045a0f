"""What a filter's decision means for the SMTP session, as OpenSMTPD decides it.

- :func:`parse_reply` checks a ``reject`` / ``disconnect`` text the way
  ``util.c`` ``valid_smtp_response`` does (at least 5 characters: a code
  ``[2-5][0-9][0-9]``, a space, text; so a single line, never ``550-...``) and that
  the code is 4xx or 5xx (``smtp_session.c``, ``IMSG_FILTER_SMTP_PROTOCOL``), and
  gives the :class:`~mta.reply.Reply`, or raises :class:`FilterReplyError`.
- :func:`decision_reply` applies smtpd's policy on top: an invalid text becomes
  ``421 Internal server error``; a 421 disconnects even when the decision was
  ``reject``; ``disconnect`` closes whatever the code (a 5xx too).
- :func:`check_decision` refuses what smtpd treats as fatal for the phase:
  ``junk`` at ``commit`` ("filter-reponse junk after DATA"), a ``filter-result`` in
  the ``data-line`` phase (which is answered by ``filter-dataline`` lines).

Enhanced status codes: smtpd sends the text as it is.  mta's replies carry one
(RFC 2034), so the text's own ``x.y.z`` of the same class is used, and ``x.0.0``
added when there is none, as ``mta.rules.rejection.error_reply`` does.
"""

from __future__ import annotations

import re

from mta.errors import FilterProtocolError
from mta.filters.messages import FilterResult
from mta.filters.protocol import Decision, FilterPhase
from mta.reply import Reply

__all__ = ["INTERNAL_ERROR", "FilterReplyError", "check_decision", "decision_reply", "parse_reply"]

INTERNAL_ERROR = Reply.of(421, "4.0.0", "Internal server error", close=True)
"""What smtpd answers instead of a filter's invalid reply (and then disconnects)."""

_REPLY = re.compile(r"([2-5][0-9][0-9]) (.+)", re.DOTALL)
_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: +|$)")


class FilterReplyError(FilterProtocolError):
    """A filter's ``reject`` / ``disconnect`` text is not a 4xx/5xx SMTP reply."""


def parse_reply(text: str) -> Reply:
    """The reply a filter gave, or :class:`FilterReplyError`.  421 closes."""
    found = _REPLY.fullmatch(text)
    if found is None or "\r" in text or "\n" in text:
        raise FilterReplyError("invalid SMTP reply from filter", text)
    code = int(found.group(1))
    if code < 400:
        raise FilterReplyError("filter reply is not 4xx or 5xx", text)
    message = found.group(2)
    enhanced = _ENHANCED.match(message)
    if enhanced is not None and enhanced.group(1) == str(code // 100):
        status = ".".join(enhanced.groups())
        message = message[enhanced.end() :]
    else:
        status = f"{code // 100}.0.0"
    return Reply.of(code, status, message, close=code == 421)


def decision_reply(decision: Decision, text: str) -> Reply:
    """The reply for a ``reject`` or ``disconnect`` decision; ``close`` set when the
    session ends after it."""
    if decision not in (Decision.REJECT, Decision.DISCONNECT):
        raise ValueError(f"{decision.value} has no reply")
    try:
        reply = parse_reply(text)
    except FilterReplyError:
        return INTERNAL_ERROR
    if decision is Decision.DISCONNECT and not reply.close:
        return Reply(reply.code, reply.enhanced, reply.lines, close=True)
    return reply


def check_decision(phase: FilterPhase, result: FilterResult) -> None:
    """Raise :class:`~mta.errors.FilterProtocolError` if ``result`` cannot answer a
    request of ``phase``."""
    if phase is FilterPhase.DATA_LINE:
        raise FilterProtocolError("filter-result in the data-line phase", repr(result))
    if phase is FilterPhase.COMMIT and result.decision is Decision.JUNK:
        raise FilterProtocolError("junk after DATA (at commit)", repr(result))
