"""Builtin filters (``filter NAME phase P match [!]COND DECISION``): the phases,
what each condition tests with which data, and the decisions, as OpenSMTPD 6.8
and 7.x evaluate them in ``lka_filter.c`` (the two agree on all of this).

Phases (``enum filter_phase``, smtpd.h; names from ``filter_execs``,
lka_filter.c): connect, helo, ehlo, starttls, auth, mail-from, rcpt-to, data,
data-line, rset, quit, noop, help, wiz, commit.  A filter process may register
any of them; a builtin filter is declared for connect, helo, ehlo, auth,
mail-from, rcpt-to, data or commit (parse.y ``filter_phase``).

``phase auth``: OpenSMTPD's ``filter_execs`` maps the auth phase to
``filter_builtins_notimpl``, but that is never reached, because parse.y's
``filter_phase_auth`` forgets to set ``filter_config->phase``: the filter keeps
the zero of ``xcalloc``, FILTER_CONNECT, and runs at connect (where no HELO and
no user exist yet).  mta runs it where it was written, when the client sends
AUTH (before the exchange, so never with an authenticated user).

Which condition may be written at which phase is the parser's table
(:data:`mta.config.modern.FILTER_PHASES`, from parse.y ``filter_phase_*_options``);
the data it tests comes from :class:`SessionFacts`, set as ``lka_filter.c``
sets its ``filter_session``: rdns, fcrdns and src at link-connect
(``lka_report_smtp_link_connect``), helo at the helo/ehlo phase and mail-from
at the mail-from phase *before* the chain runs (``filter_protocol``), the user
after a successful AUTH (``lka_report_smtp_link_auth``, result ``pass``), and
the recipient is the rcpt-to phase's own parameter (``filter_builtins_rcpt_to``).

Conditions (``filter_check_*``, lka_filter.c; tables by ``table_match``):

- ``fcrdns``: forward-confirmed rDNS passed (``fcrdns == 1``: a DNS error is
  not a pass);
- ``rdns``: the client has a name (``<unknown>`` or an address literal is no
  name, ``filter_check_rdns``); ``rdns <t>``: the name, K_DOMAIN (K_REGEX with
  ``regex``).  OpenSMTPD looks the text ``<unknown>`` up when there is no name
  (so ``*`` or ``.*`` match it); mta treats no name as no match;
- ``src <t>``: the client address, K_NETADDR / K_REGEX (``"local"`` for the
  local socket; mta's text is the one its ``match from src`` uses);
- ``helo <t>``: the HELO/EHLO name, K_DOMAIN / K_REGEX;
- ``auth``: the session is authenticated; ``auth <t>``: the user name, K_STRING
  then K_CREDENTIALS (each negated on its own, OR-ed: ``filter_builtins_global``),
  K_REGEX with ``regex``; no user never matches (so ``!auth <t>`` does);
- ``mail-from <t>``, ``rcpt-to <t>``: the bare address (the text between ``<``
  and ``>``, empty for ``<>``), K_MAILADDR / K_REGEX.

``!`` negates the outcome.  A lookup that fails (``table_match`` < 0) counts as
no match (``table_match(...) > 0``), so a negated condition then holds: mta
does the same and reports the failure so it can be logged.

Decisions (``filter_protocol_internal``, lka_filter.c; their effect in
``smtp_session_imsg``, smtp_session.c): see :class:`DecisionKind`.  The text of
reject and disconnect is validated when the session receives it: it must pass
``valid_smtp_response`` (util.c: three digits, the first 2 to 5, then a space,
at least 5 characters) and start with 4 or 5, else it becomes ``421 Internal
server error``; any text starting with ``421`` disconnects.
"""

from __future__ import annotations

import enum
import ipaddress

import attrs

from mta.config.model import FilterBuiltin, FilterCondition
from mta.config.modern import FILTER_PHASES
from mta.errors import MTAError, TableError
from mta.filters.protocol import FilterPhase
from mta.filters.verdict import INTERNAL_ERROR, FilterReplyError, parse_reply
from mta.reply import Reply
from mta.tables import Service, Table

__all__ = [
    "BUILTIN_PHASES",
    "CONDITIONS",
    "JUNK_HEADER",
    "Decision",
    "DecisionKind",
    "FilterMisbehaved",
    "FilterPhase",
    "Lookup",
    "SessionFacts",
    "Test",
    "builtin_decision",
    "condition_tests",
    "filter_reply",
    "has_rdns",
    "phase_param",
]

JUNK_HEADER = "X-Spam: Yes"
"""What a junked session or transaction adds to its messages: the first line of
the message, before the Received header, written after the 354 of DATA
(``smtp_message_begin``, smtp_session.c: ``if (s->junk || (s->tx &&
s->tx->junk))``)."""


BUILTIN_PHASES = frozenset(FilterPhase(name) for name in FILTER_PHASES)
"""The phases a builtin filter may be declared for."""

CONDITIONS: dict[FilterPhase, frozenset[FilterCondition]] = {
    FilterPhase(name): frozenset(FilterCondition(c) for c in conds)
    for name, conds in FILTER_PHASES.items()
}
"""Per builtin phase, the conditions whose data exists there (parse.y's
``filter_phase_*_options``; the parser refuses the others)."""


def has_rdns(name: str | None) -> bool:
    """``filter_check_rdns``: a name that is neither missing nor an address literal."""
    if name is None or name == "<unknown>":
        return False
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return True
    return False


def phase_param(phase: FilterPhase, args: str | None) -> str:
    """The parameter of a phase from the command's arguments, as ``filter_protocol``
    passes it to every filter: the bare address for mail-from and rcpt-to
    (between the first ``<`` and the first ``>``), the arguments otherwise
    (``""`` for none).  For connect, pass the client address text (OpenSMTPD's
    ``ss_to_text``: ``a.b.c.d``, ``[v6]`` or ``local``)."""
    text = args or ""
    if phase in (FilterPhase.MAIL_FROM, FilterPhase.RCPT_TO) and text.startswith("<"):
        end = text.find(">")
        return text[1:end] if end >= 0 else text[1:]
    return text


@attrs.frozen
class SessionFacts:
    """What builtin conditions test about a session (lka's ``filter_session``).

    ``src``: the client address as :class:`~mta.rules.ruleset.MatchContext`
    has it (``"local"`` for the local socket); ``rdns``: its name, None when it
    has none; ``fcrdns``: the name resolves back to the address (False for a
    failure as for an error); ``helo``: the HELO/EHLO name; ``auth_user``: the
    user after a successful AUTH; ``mail_from`` and ``rcpt_to``: bare addresses
    (``""`` for ``<>``), None before the command.
    """

    src: str
    rdns: str | None = None
    fcrdns: bool = False
    helo: str | None = None
    auth_user: str | None = None
    mail_from: str | None = None
    rcpt_to: str | None = None

    def at(self, phase: FilterPhase, param: str) -> SessionFacts:
        """The facts once ``phase`` starts with ``param`` (from :func:`phase_param`):
        lka records the HELO name and the sender before running the chain, so the
        helo and mail-from phases test the value being submitted."""
        src, rdns, fcrdns, auth = self.src, self.rdns, self.fcrdns, self.auth_user
        if phase is FilterPhase.HELO or phase is FilterPhase.EHLO:
            return SessionFacts(src, rdns, fcrdns, param, auth, self.mail_from, self.rcpt_to)
        if phase is FilterPhase.MAIL_FROM:
            return SessionFacts(src, rdns, fcrdns, self.helo, auth, param, None)
        if phase is FilterPhase.RCPT_TO:
            return SessionFacts(src, rdns, fcrdns, self.helo, auth, self.mail_from, param)
        return self


# -- decisions ------------------------------------------------------------------------


class FilterMisbehaved(MTAError):
    """A filter process answered what it may not (an unknown decision, junk at
    commit...).  OpenSMTPD exits (``fatalx``); mta fails the session only."""


class DecisionKind(enum.Enum):
    """What a filter decides (builtin keywords and ``filter-result`` words).

    - PROCEED: go on to the next filter; at the end of the chain the command runs.
    - JUNK: the command runs and the session (no transaction open: connect, helo,
      ehlo, auth, mail-from, as the transaction is made after the mail-from
      filters) or the transaction (rcpt-to, data) is junk: :data:`JUNK_HEADER`.
      Ends the chain.  Never at commit (parser; a process: ``fatalx``).
    - REJECT: the reply is sent and the command is not run (at commit the
      transaction is rolled back).  Ends the chain.
    - DISCONNECT: the reply is sent and the session closes.  Ends the chain.
    - REWRITE: the command runs with the new parameter after the command's
      checks run again on it; later filters are not asked.  At connect it is
      ignored; at data and commit the check refuses any parameter (``500``).
    - REPORT: a ``filter-report`` event is emitted and the chain goes on.
    - BYPASS (builtin only): the rest of the chain is skipped for this phase and
      the command runs (``filter_result_proceed``); nothing is remembered for
      later phases, whatever smtpd.conf(5) suggests.
    """

    PROCEED = "proceed"
    JUNK = "junk"
    REJECT = "reject"
    DISCONNECT = "disconnect"
    REWRITE = "rewrite"
    REPORT = "report"
    BYPASS = "bypass"


_WITH_TEXT = frozenset(
    {DecisionKind.REJECT, DecisionKind.DISCONNECT, DecisionKind.REWRITE, DecisionKind.REPORT}
)


@attrs.frozen
class Decision:
    """A filter's decision: ``kind``, ``value`` (the text: the new parameter, the
    report, or the reply as validated) and, for reject and disconnect, ``reply``.

    Build one with :meth:`of` (or the shortcuts), which validates reply texts
    as the session does (:func:`filter_reply`).
    """

    kind: DecisionKind
    value: str | None = None
    reply: Reply | None = None

    def __attrs_post_init__(self) -> None:
        with_text = self.kind in _WITH_TEXT
        if (self.value is None) == with_text:
            raise ValueError(f"decision {self.kind.value}: text missing or unexpected")
        with_reply = self.kind in (DecisionKind.REJECT, DecisionKind.DISCONNECT)
        if (self.reply is None) == with_reply:
            raise ValueError(f"decision {self.kind.value}: reply missing or unexpected")

    @classmethod
    def of(cls, word: str, text: str | None = None) -> Decision:
        """From a keyword (``reject``...) and its text; FilterMisbehaved when the
        word is unknown or the text is missing or unexpected (``lka_filter_process_response``
        refuses those too)."""
        try:
            kind = DecisionKind(word)
        except ValueError:
            raise FilterMisbehaved(f"unknown filter decision {word!r}") from None
        if (text is None) == (kind in _WITH_TEXT):
            missing = "missing" if text is None else "unexpected"
            raise FilterMisbehaved(f"filter decision {word}: parameter {missing}")
        if text is not None and kind in (DecisionKind.REJECT, DecisionKind.DISCONNECT):
            reply, disconnect = filter_reply(text)
            if disconnect:
                kind = DecisionKind.DISCONNECT
            return cls(
                kind, text if reply is not INTERNAL_ERROR else "421 Internal server error", reply
            )
        return cls(kind, text)

    @classmethod
    def proceed(cls) -> Decision:
        return cls(DecisionKind.PROCEED)

    @classmethod
    def junk(cls) -> Decision:
        return cls(DecisionKind.JUNK)

    @classmethod
    def bypass(cls) -> Decision:
        return cls(DecisionKind.BYPASS)

    @classmethod
    def reject(cls, text: str) -> Decision:
        return cls.of("reject", text)

    @classmethod
    def disconnect(cls, text: str) -> Decision:
        return cls.of("disconnect", text)

    @classmethod
    def rewrite(cls, value: str) -> Decision:
        return cls(DecisionKind.REWRITE, value)

    @classmethod
    def report(cls, text: str) -> Decision:
        return cls(DecisionKind.REPORT, text)

    @property
    def ends_chain(self) -> bool:
        """Everything but proceed and report ends the chain for the phase."""
        return self.kind not in (DecisionKind.PROCEED, DecisionKind.REPORT)


def filter_reply(text: str) -> tuple[Reply, bool]:
    """The reply for a reject or disconnect text, and whether it disconnects
    (:func:`mta.filters.verdict.parse_reply`): an invalid text becomes
    ``421 Internal server error``, and a ``421`` disconnects."""
    try:
        reply = parse_reply(text)
    except FilterReplyError:
        reply = INTERNAL_ERROR
    return reply, reply.close


def builtin_decision(builtin: FilterBuiltin) -> Decision:
    """What a builtin filter decides when its condition holds."""
    return Decision.of(builtin.decision, builtin.argument)


# -- conditions ------------------------------------------------------------------------


@attrs.frozen
class Lookup:
    """One table lookup a condition needs: does ``key`` match in ``table`` for
    ``service``.  :meth:`perform` may block for a table that is not in memory."""

    table: Table = attrs.field(eq=False)
    service: Service
    key: str

    def perform(self) -> bool | TableError:
        """The outcome: matched or not, or the error of a failed lookup."""
        try:
            return self.table.match(self.service, self.key)
        except TableError as exc:
            return exc


Test = bool | Lookup
"""A known outcome, or a lookup to make; a condition holds when any of its
tests, negated when the condition is, is true."""


def _lookup(builtin: FilterBuiltin, table: Table | None, service: Service, key: str) -> Lookup:
    if table is None:
        raise ValueError(f"filter condition {builtin.condition.value} needs its table")
    return Lookup(table, Service.REGEX if builtin.regex else service, key)


def condition_tests(
    builtin: FilterBuiltin, table: Table | None, facts: SessionFacts
) -> tuple[Test, ...]:
    """The tests of ``builtin``'s condition on ``facts`` (before negation),
    ``table`` being the table it names (None when it names none)."""
    cond = builtin.condition
    if cond is FilterCondition.FCRDNS:
        return (facts.fcrdns,)
    if cond is FilterCondition.RDNS:
        if builtin.table is None:
            return (has_rdns(facts.rdns),)
        if facts.rdns is None:
            return (False,)
        return (_lookup(builtin, table, Service.DOMAIN, facts.rdns),)
    if cond is FilterCondition.SRC:
        return (_lookup(builtin, table, Service.NETADDR, facts.src),)
    if cond is FilterCondition.AUTH:
        user = facts.auth_user
        if builtin.table is None:
            return (user is not None,)
        if user is None:
            return (False,)
        if builtin.regex:
            return (_lookup(builtin, table, Service.REGEX, user),)
        return (
            _lookup(builtin, table, Service.STRING, user),
            _lookup(builtin, table, Service.CREDENTIALS, user),
        )
    value = {
        FilterCondition.HELO: facts.helo,
        FilterCondition.MAIL_FROM: facts.mail_from,
        FilterCondition.RCPT_TO: facts.rcpt_to,
    }[cond]
    if value is None:
        return (False,)
    service = Service.DOMAIN if cond is FilterCondition.HELO else Service.MAILADDR
    return (_lookup(builtin, table, service, value),)
