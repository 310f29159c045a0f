"""What a server session knows about its listener, and the protocol states it moves through."""

from __future__ import annotations

import enum

import attrs

from mta.config.model import AuthMode, TlsMode

__all__ = ["AUTH_STATES", "SessionSettings", "State"]


@attrs.frozen
class SessionSettings:
    """What one session needs to know about its listener and limits (0 = no limit)."""

    hostname: str  # the name we announce
    peer: str  # the client's IP address as text, or "local"
    max_message_size: int
    max_rcpt: int
    max_mails: int
    tls: TlsMode = TlsMode.NONE  # the listener's TLS mode (NONE when it has no certificate)
    secure: bool = False  # TLS is already up (smtps)
    auth: AuthMode = AuthMode.NONE
    dsn: bool = True  # False with no-dsn
    local: bool = False  # the local socket: authenticated, no AUTH offered


class State(enum.Enum):
    COMMAND = "command"
    AUTH_PLAIN = "auth-plain"  # waiting for the PLAIN response
    AUTH_USERNAME = "auth-username"
    AUTH_PASSWORD = "auth-password"
    DATA = "data"
    TLS = "tls"  # 220 sent; the driver runs the handshake
    CLOSED = "closed"


AUTH_STATES = (State.AUTH_PLAIN, State.AUTH_USERNAME, State.AUTH_PASSWORD)
