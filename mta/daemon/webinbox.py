"""The daemon's opt-in web inbox (``mta --web [HOST:]PORT`` or the
configuration's ``web inbox on ADDRESS [port PORT] [keep COUNT]``).

The command line binds the address (:func:`web_socket`: ``--web`` wins over the
configuration's line) before it detaches, like the SMTP listeners; the daemon
then serves :mod:`mta.testing.web` on that socket over an :class:`Inbox` that
:class:`InboxFeed` fills with every message delivered locally, one entry per
delivered recipient (as the client gave it).  The inbox lives in memory from
the start of the daemon (``DELETE /api/messages`` empties it), bounded
(:func:`daemon_inbox`: ``keep`` messages, :data:`MAX_BYTES` of content, the
oldest dropped first); it listens on loopback unless told otherwise.  A reload
cannot change the line (the socket is bound before privileges are dropped):
it is refused with a message saying to restart.
"""

from __future__ import annotations

import datetime
import os
import socket
from typing import BinaryIO, Protocol

from mta.config.model import WebInbox
from mta.config.web import web_missing
from mta.delivery.result import Outcome, Result
from mta.envelope import Envelope
from mta.errors import MTAError, SpoolError
from mta.log import get_logger
from mta.scheduler.runner import Deliver
from mta.server.listeners import ListenError
from mta.testing.inbox import Inbox, ReceivedMessage
from mta.threads import run_sync

__all__ = [
    "DEFAULT_WEB_HOST",
    "MAX_BYTES",
    "InboxFeed",
    "Messages",
    "bind_web",
    "daemon_inbox",
    "web_address",
    "web_missing",
    "web_socket",
]

log = get_logger("web")

DEFAULT_WEB_HOST = "127.0.0.1"
MAX_BYTES = 64 * 1024 * 1024  # of message content the daemon's inbox keeps


def web_address(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; the
    host is loopback when not given.  ValueError saying what is wrong."""
    host, colon, port = text.rpartition(":")
    if not colon:
        host = DEFAULT_WEB_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or not host:
        raise ValueError(f"{text!r}: not [HOST:]PORT (an IPv6 address goes in brackets)")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def bind_web(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` and listening; ListenError when the
    address cannot be bound (in use, no such address, not permitted)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # (not create_server's words)
        raise ListenError(f"web inbox on {host}:{port}: {why}") from None


def daemon_inbox(web: WebInbox | None) -> Inbox:
    """The daemon's inbox: bounded, since the daemon runs for months, to the
    ``keep`` of the configuration's ``web inbox`` line (1000 messages without
    one) and :data:`MAX_BYTES` of content, the oldest dropped first."""
    keep = (web or WebInbox(DEFAULT_WEB_HOST)).keep
    return Inbox(keep=keep, max_bytes=MAX_BYTES)


def web_socket(option: str | None, web: WebInbox | None) -> socket.socket | None:
    """The web inbox's socket, bound: at ``--web`` (``option``) when given,
    else at the configuration's ``web inbox`` line, else none.  ValueError
    for a bad ``--web`` or a missing ``web`` extra, ListenError when the
    address cannot be bound."""
    if option is not None:
        missing = web_missing()  # (a configuration line was checked when loaded)
        if missing is not None:
            raise ValueError(missing)
        return bind_web(*web_address(option))
    if web is not None:
        return bind_web(web.address, web.port)
    return None


class Messages(Protocol):
    """Where the content of a delivered message is read (the spool)."""

    async def open_message(self, msgid: int) -> BinaryIO: ...


class InboxFeed:
    """A local deliverer that also adds what it delivers to ``inbox``."""

    def __init__(self, deliver: Deliver, spool: Messages, inbox: Inbox) -> None:
        self.deliver = deliver
        self.spool = spool
        self.inbox = inbox

    async def __call__(self, envelope: Envelope) -> Result:
        result = await self.deliver(envelope)
        if result.outcome is Outcome.OK:
            await self._add(envelope)
        return result

    async def _add(self, envelope: Envelope) -> None:
        try:
            stream = await self.spool.open_message(envelope.msgid)
        except (MTAError, OSError) as exc:  # delivered all the same: only not shown
            log.warning("web inbox: message %08x not shown: %s", envelope.msgid, exc)
            return
        try:
            raw = await run_sync(stream.read)
        except (SpoolError, OSError) as exc:
            log.warning("web inbox: message %08x not shown: %s", envelope.msgid, exc)
            return
        finally:
            stream.close()
        self.inbox.add(
            ReceivedMessage(
                id=envelope.evpid_text,
                mail_from=str(envelope.sender),
                rcpt_tos=(str(envelope.rcpt),),
                raw=raw,
                received=datetime.datetime.fromtimestamp(envelope.ctime, datetime.UTC),
            )
        )
