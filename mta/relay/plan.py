"""How one envelope is relayed, decided without I/O: the pure half of the relay agent.

:class:`Plan` is everything a session needs that does not depend on the
remote host: where to go (a smarthost URL, else the MX of the destination
domain), the client's settings (HELO name, TLS policy, certificate check,
LMTP, credentials), the TLS files, the source address and the reverse-path.
Envelopes of one message with equal plans go in one transaction
(OpenSMTPD groups tasks per message per relay).

- :func:`tls_policy`: from the URL's schema and the action's ``tls`` /
  ``tls no-verify``, as OpenSMTPD's ``mta_relay`` / ``mta_session``:
  ``smtp://`` (or MX) is opportunistic, upgraded to required by ``tls``;
  ``smtp+tls://`` and ``smtps://`` verify unless ``no-verify``;
  ``smtp+notls://`` with ``tls`` is refused ("TLS required for relaying").
- :func:`tls_attempts`: legacy ``secure://`` tries SMTPS, then STARTTLS.
- :func:`rewrite_sender`: the action's ``mail-from`` (an address, ``user``,
  ``@domain``) replaces the parts it names; ``<>`` stays ``<>``.
- :func:`transaction_for`: one transaction for a group of envelopes (DSN
  parameters, ``BODY=8BITMIME``, SMTPUTF8).
- :func:`status_code`: ``"5.1.10"`` -> ``StatusCode(5, 1, 10)``, the
  :class:`~mta.delivery.result.Result` form.
- :func:`session_key`: the part of a plan a session depends on (not the
  reverse-path; not the domain when a smarthost is used), so messages of
  other senders or domains can share a kept-alive session.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from mta.envelope import Body, Envelope
from mta.errors import TemporaryFailure
from mta.relay.client import ClientConfig, TlsPolicy
from mta.relay.route import Family
from mta.relay.tlsclient import ClientTls
from mta.relay.transaction import Recipient, Transaction
from mta.status import StatusCode
from mta.tables.relayhost import RelayHost, RelayTLS

__all__ = [
    "SMTP_PORT",
    "Plan",
    "rewrite_sender",
    "session_key",
    "status_code",
    "tls_attempts",
    "tls_policy",
    "transaction_for",
]

SMTP_PORT = 25
SMTPS_PORT = 465


@attrs.frozen
class Plan:
    """One envelope's relay settings (hashable: the batching key's core).

    ``smarthost`` None: the MX of ``domain`` (with ``backup_name`` and
    ``family`` for the route).  ``port`` is the smarthost's, 25 for MX.
    ``reports``: the filter processes the action's ``filter`` names, which
    get the session's ``smtp-out`` reports (sessions of other filters are
    never shared: OpenSMTPD's relay key leaves the filter out, so a session
    reports to the filter of whichever action opened it)."""

    domain: str
    smarthost: RelayHost | None
    port: int
    client: ClientConfig
    tls: ClientTls
    sender: str
    source: str | None = None
    backup_name: str | None = None
    family: Family | None = None
    reports: tuple[str, ...] = ()


def session_key(plan: Plan) -> Plan:
    """``plan`` as a session sees it: without the reverse-path, which each
    transaction brings, and without the destination domain when the route is a
    smarthost's (then neither the domain nor its ``inet4`` / ``inet6`` limit
    changes where the session goes)."""
    if plan.smarthost is None:
        return attrs.evolve(plan, sender="")
    return attrs.evolve(plan, sender="", domain="", family=None)


def tls_policy(url: RelayHost | None, action_tls: str | None) -> tuple[TlsPolicy, bool]:
    """(policy, verify) for a smarthost ``url`` (None: MX) and the action's
    ``tls`` option (None, ``"required"`` for ``tls``, ``"no-verify"``);
    TemporaryFailure for ``smtp+notls://`` / ``lmtp://`` with ``tls``."""
    schema = url.tls if url is not None else RelayTLS.OPPORTUNISTIC
    if schema is RelayTLS.OPPORTUNISTIC:
        if action_tls is None:
            return TlsPolicy.OPPORTUNISTIC, False
        return TlsPolicy.REQUIRED, action_tls == "required"
    if schema is RelayTLS.NO:
        if action_tls is not None:
            raise TemporaryFailure("TLS required for relaying")
        return TlsPolicy.NONE, False
    verify = action_tls != "no-verify"
    if schema is RelayTLS.STARTTLS:
        return TlsPolicy.REQUIRED, verify
    return TlsPolicy.SMTPS, verify  # smtps://, legacy secure://


def tls_attempts(plan: Plan) -> tuple[Plan, ...]:
    """The plans to try in turn on each address: ``plan`` alone, except for
    the legacy ``secure://`` smarthost ("try SMTPS and fallback to TLS",
    smtpd.conf 6.0): SMTPS on the URL's port, then, when no session got as
    far as a transaction, STARTTLS (required) on port 25, or on the URL's
    port when it names one other than 465."""
    url = plan.smarthost
    if url is None or url.tls is not RelayTLS.SECURE or plan.client.tls is not TlsPolicy.SMTPS:
        return (plan,)
    port = SMTP_PORT if plan.port == SMTPS_PORT else plan.port
    starttls = attrs.evolve(plan.client, tls=TlsPolicy.REQUIRED)
    return plan, attrs.evolve(plan, port=port, client=starttls)


def rewrite_sender(sender: str, mail_from: str | None) -> str:
    """``sender`` with the parts ``mail_from`` names (``user@domain``,
    ``user``, ``@domain``, ``user@``) replaced; ``<>`` is never rewritten."""
    if mail_from is None or not sender:
        return sender
    user, at, domain = mail_from.rpartition("@")
    if not at:
        user, domain = mail_from, ""
    old_user, _, old_domain = sender.rpartition("@")
    return f"{user or old_user}@{domain or old_domain}"


def transaction_for(envelopes: Sequence[Envelope], sender: str) -> Transaction:
    """One transaction for ``envelopes`` (one message, one plan), in their order."""
    if not envelopes:
        raise ValueError("a transaction needs an envelope")
    first = envelopes[0]
    return Transaction(
        sender=sender,
        recipients=tuple(
            Recipient(str(e.dest), notify=e.dsn_notify, orcpt=e.dsn_orcpt, evpid=e.id)
            for e in envelopes
        ),
        eight_bit=any(e.body is Body.EIGHTBITMIME for e in envelopes),
        smtputf8=any(e.smtputf8 for e in envelopes),
        ret=first.dsn_ret,
        envid=first.dsn_envid,
        msgid=first.msgid,
    )


def status_code(status: str) -> StatusCode | None:
    """A route error's enhanced status code as the :class:`Result` takes it,
    unchanged (``5.1.10`` stays ``5.1.10``); None when it cannot be read."""
    return StatusCode.parse(status)
