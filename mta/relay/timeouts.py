"""Client-side SMTP timeouts (RFC 5321 4.5.3.2), one per step the client waits in.

The relay client (:mod:`mta.relay.client`) keeps no time: its ``step`` says
what it is waiting for, and the driver applies :meth:`ClientTimeouts.seconds`
of that step.  RFC 5321 gives the initial 220 (5 min), MAIL (5), RCPT (5), DATA
initiation (2), each data block (3) and DATA termination (10); the other
commands (EHLO, STARTTLS, AUTH, RSET, QUIT) and the TLS handshake get OpenSMTPD's
I/O timeout of 300 s.  ``MTA_TIMEOUT_SCALE`` scales them all, as it does the
server's (:mod:`mta.server.timeouts`).
"""

from __future__ import annotations

import enum

import attrs

from mta.server.timeouts import scale_from_env

__all__ = ["ClientTimeouts", "Step"]


class Step(enum.Enum):
    """What the client is waiting for."""

    GREETING = "greeting"  # the server's 220
    HELLO = "hello"  # the reply to EHLO / HELO / LHLO
    STARTTLS = "starttls"
    TLS_HANDSHAKE = "tls-handshake"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA_INIT = "data-init"  # the 354 after DATA
    DATA_BLOCK = "data-block"  # each write of the message content
    DATA_TERM = "data-term"  # the reply(ies) after the final dot
    RSET = "rset"
    QUIT = "quit"


@attrs.frozen
class ClientTimeouts:
    """Seconds allowed for each :class:`Step`."""

    greeting: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_block: float = 180.0
    data_term: float = 600.0
    command: float = 300.0  # EHLO, STARTTLS, AUTH, RSET, QUIT
    tls_handshake: float = 300.0

    def seconds(self, step: Step) -> float:
        return {
            Step.GREETING: self.greeting,
            Step.MAIL: self.mail,
            Step.RCPT: self.rcpt,
            Step.DATA_INIT: self.data_init,
            Step.DATA_BLOCK: self.data_block,
            Step.DATA_TERM: self.data_term,
            Step.TLS_HANDSHAKE: self.tls_handshake,
        }.get(step, self.command)

    def scaled(self, factor: float) -> ClientTimeouts:
        return ClientTimeouts(**{k: v * factor for k, v in attrs.asdict(self).items()})

    @classmethod
    def from_env(cls) -> ClientTimeouts:
        return cls().scaled(scale_from_env())
