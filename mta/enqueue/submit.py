"""Submitting one message through the daemon's local socket (trio, the I/O edge).

:func:`submit` connects to the Unix socket, says ``EHLO``, and runs as many
transactions as it takes: when the server answers ``452`` to a ``RCPT`` after
accepting others (too many recipients), the rest go in the next transaction,
and when it refuses another ``MAIL`` in the session, in a new session.  Every
reply is handled; the result says which recipients were committed, refused or
are still pending, and whether the daemon could not be reached (or went away,
or stopped answering) so that the pending ones can be kept offline.

By default it is all or nothing, as enqueue.c: one refused or deferred
recipient and the transaction is reset before ``DATA``.  With ``partial``
(the daemon re-submitting an offline message) the accepted recipients are sent
and the others reported.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import socket
from collections.abc import Callable, Iterator

import attrs
import trio

from mta.enqueue.compose import Content
from mta.enqueue.smtp import (
    DotStuffer,
    ProtocolError,
    ReplyParser,
    command,
    extensions,
    mail_from,
    rcpt_to,
)
from mta.net.unixpath import socket_address
from mta.reply import Reply
from mta.server.timeouts import scale_from_env

__all__ = [
    "ClientTimeouts",
    "Stage",
    "Submission",
    "SubmitResult",
    "check_dsn",
    "submit",
]

_RECEIVE = 16 * 1024
_MAX_SESSIONS = 1000


@attrs.frozen
class ClientTimeouts:
    """Seconds to wait for each reply (RFC 5321 4.5.3.2, the client side)."""

    connect: float = 30.0
    banner: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    data: float = 120.0
    block: float = 180.0
    final: float = 600.0
    quit: float = 10.0

    def scaled(self, factor: float) -> ClientTimeouts:
        return ClientTimeouts(**{k: v * factor for k, v in attrs.asdict(self).items()})

    @classmethod
    def from_env(cls) -> ClientTimeouts:
        """Scaled by ``MTA_TIMEOUT_SCALE``, as the server's (ValueError if it is bad)."""
        return cls().scaled(scale_from_env())


_DSN = {
    "dsn_ret": re.compile(r"FULL|HDRS"),
    "dsn_notify": re.compile(r"NEVER|(?:SUCCESS|FAILURE|DELAY)(?:,(?:SUCCESS|FAILURE|DELAY)){0,2}"),
    "dsn_envid": re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2}){1,100}"),
}


def check_dsn(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    """attrs validator of ``dsn_ret`` / ``dsn_notify`` / ``dsn_envid`` (an xtext)."""
    if value is not None and _DSN[attribute.name].fullmatch(value) is None:
        raise ValueError(f"invalid DSN {attribute.name[4:]}: {value!r}")


@attrs.frozen
class Submission:
    """The envelope of a message to submit (DSN values checked: they go into
    command lines)."""

    sender: str  # "" for the null sender
    recipients: tuple[str, ...]
    eight_bit: bool = False
    dsn_ret: str | None = attrs.field(default=None, validator=check_dsn)  # RET=FULL|HDRS
    dsn_envid: str | None = attrs.field(default=None, validator=check_dsn)  # ENVID=, xtext
    dsn_notify: str | None = attrs.field(default=None, validator=check_dsn)  # NOTIFY=


class Stage(enum.Enum):
    """Where a failing reply came."""

    CONNECT = "connect"
    BANNER = "banner"
    EHLO = "ehlo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    MESSAGE = "message"  # the reply to the final dot


@attrs.frozen
class SubmitResult:
    """What became of each recipient."""

    delivered: tuple[str, ...] = ()  # in a transaction the server committed
    refused: tuple[tuple[str, Reply], ...] = ()  # 5xx at RCPT
    pending: tuple[str, ...] = ()  # neither: try again later
    unreachable: bool = False  # the daemon could not be reached, or went away
    protocol_error: bool = False  # the server did not speak SMTP
    stage: Stage | None = None  # where the first failure came
    error: Reply | None = None  # the reply that failed a transaction, if any
    problem: str = ""  # what went wrong, for a person

    @property
    def complete(self) -> bool:
        """Every recipient was delivered."""
        return not self.refused and not self.pending

    @property
    def exit_code(self) -> int:
        """sysexits(3) for ``mta-sendmail``."""
        if self.protocol_error:
            return os.EX_PROTOCOL
        if self.refused:
            return os.EX_NOUSER
        if self.unreachable:
            return os.EX_TEMPFAIL
        error = self.error
        if error is not None and not error.temporary:
            if self.stage is Stage.MAIL and error.code in (501, 552, 553, 555):
                return os.EX_DATAERR
            if self.stage is Stage.MESSAGE:
                return os.EX_DATAERR
            return os.EX_UNAVAILABLE
        if self.pending:
            return os.EX_TEMPFAIL
        return os.EX_OK


class _Gone(Exception):
    """The connection is unusable: closed, reset, timed out, or a 421."""


class _Failed(Exception):
    """A reply ended the transaction (a failure at MAIL, DATA or the final dot)."""

    def __init__(self, stage: Stage, reply: Reply) -> None:
        super().__init__(reply.text)
        self.stage = stage
        self.reply = reply


class _Connection:
    def __init__(
        self, stream: trio.SocketStream, trace: Callable[[str], None] | None, limits: ClientTimeouts
    ) -> None:
        self.stream = stream
        self.parser = ReplyParser()
        self.replies: list[Reply] = []
        self.trace = trace
        self.limits = limits

    async def send(self, data: bytes, *, show: bool = True) -> None:
        if self.trace is not None and show:
            self.trace(">>> " + data.decode("utf-8", "replace").rstrip("\r\n"))
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise _Gone(f"connection lost: {exc}") from None

    async def reply(self, timeout: float) -> Reply:
        with trio.move_on_after(timeout):
            while not self.replies:
                try:
                    data = await self.stream.receive_some(_RECEIVE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise _Gone(f"connection lost: {exc}") from None
                if not data:
                    raise _Gone("connection closed by the server")
                self.replies += self.parser.feed(bytes(data))
            reply = self.replies.pop(0)
            if self.trace is not None:
                for line in reply.encode().decode("utf-8", "replace").splitlines():
                    self.trace("<<< " + line)
            if reply.code == 421:
                raise _Gone(f"service not available: {reply.text}")
            return reply
        raise _Gone("timed out waiting for the server")

    async def command(self, line: bytes, timeout: float) -> Reply:
        await self.send(line)
        return await self.reply(timeout)


class _Run:
    """One submission: its sessions and what became of each recipient."""

    def __init__(
        self,
        submission: Submission,
        content: Content,
        *,
        helo: str,
        partial: bool,
        limits: ClientTimeouts,
        trace: Callable[[str], None] | None,
    ) -> None:
        self.submission = submission
        self.content = content
        self.helo = helo
        self.partial = partial
        self.limits = limits
        self.trace = trace
        self.todo = list(dict.fromkeys(submission.recipients))
        self.delivered: list[str] = []
        self.refused: list[tuple[str, Reply]] = []
        self.deferred: list[str] = []  # temporary failures: not retried in this run
        self.in_flight: list[str] = []  # accepted in an uncommitted transaction
        self.stage: Stage | None = None
        self.error: Reply | None = None

    def result(
        self, *, unreachable: bool = False, protocol: bool = False, problem: str = ""
    ) -> SubmitResult:
        pending = [*self.in_flight, *self.deferred, *self.todo]
        if not problem and self.error is not None:
            problem = self.error.text
        return SubmitResult(
            delivered=tuple(self.delivered),
            refused=tuple(self.refused),
            pending=tuple(dict.fromkeys(pending)),
            unreachable=unreachable,
            protocol_error=protocol,
            stage=self.stage,
            error=self.error,
            problem=problem,
        )

    def _fail(self, stage: Stage, reply: Reply) -> None:
        if self.stage is None:
            self.stage = stage
            self.error = reply

    async def session(self, conn: _Connection) -> bool:
        """Transactions on one connection; True when another session may help."""
        banner = await conn.reply(self.limits.banner)
        if not banner.positive:
            self._fail(Stage.BANNER, banner)
            return False
        reply = await conn.command(command("EHLO", self.helo), self.limits.mail)
        features: dict[str, str] = {}
        if reply.positive:
            features = extensions(reply)
        else:
            reply = await conn.command(command("HELO", self.helo), self.limits.mail)
            if not reply.positive:
                self._fail(Stage.EHLO, reply)
                return False
        committed = 0
        while self.todo:
            try:
                done = await self.transaction(conn, features)
            except _Failed as exc:
                if exc.stage is Stage.MAIL and exc.reply.code == 452 and committed:
                    return True  # too many messages in this session: open another
                self._fail(exc.stage, exc.reply)
                return False
            if not done:
                return False
            committed += 1
        return False

    def _mail_params(self, features: dict[str, str]) -> list[str]:
        sub = self.submission
        params: list[str] = []
        if "SIZE" in features:
            params.append(f"SIZE={self.content.size}")
        if sub.eight_bit and "8BITMIME" in features:
            params.append("BODY=8BITMIME")
        addresses = [sub.sender, *self.todo]
        if "SMTPUTF8" in features and not all(a.isascii() for a in addresses):
            params.append("SMTPUTF8")
        if "DSN" in features:
            if sub.dsn_ret:
                params.append(f"RET={sub.dsn_ret}")
            if sub.dsn_envid:
                params.append(f"ENVID={sub.dsn_envid}")
        return params

    async def transaction(self, conn: _Connection, features: dict[str, str]) -> bool:
        """One MAIL ... final dot; False when the run is over (a failure)."""
        limits = self.limits
        reply = await conn.command(
            mail_from(self.submission.sender, self._mail_params(features)), limits.mail
        )
        if not reply.positive:
            raise _Failed(Stage.MAIL, reply)
        rcpt_params = []
        if "DSN" in features and self.submission.dsn_notify:
            rcpt_params.append(f"NOTIFY={self.submission.dsn_notify}")
        accepted: list[str] = []
        later: list[str] = []
        failed = False
        for recipient in self.todo:
            if later:
                later.append(recipient)
                continue
            reply = await conn.command(rcpt_to(recipient, rcpt_params), limits.rcpt)
            if reply.positive:
                accepted.append(recipient)
                self.in_flight.append(recipient)
            elif reply.code == 452 and accepted:
                later.append(recipient)  # too many recipients: the rest in the next one
            elif reply.temporary:
                self.deferred.append(recipient)
                self._fail(Stage.RCPT, reply)
                failed = True
            else:
                self.refused.append((recipient, reply))
                self._fail(Stage.RCPT, reply)
                failed = True
        self.todo = later
        if not accepted or (failed and not self.partial):
            self.in_flight = []
            self.todo = [*accepted, *later] if failed and not self.partial else later
            await self._reset(conn)
            return False
        reply = await conn.command(command("DATA"), limits.data)
        if reply.code != 354:
            self._back(accepted)
            raise _Failed(Stage.DATA, reply)
        await self._send_content(conn)
        reply = await conn.reply(limits.final)
        if not reply.positive:
            self._back(accepted)
            raise _Failed(Stage.MESSAGE, reply)
        self.in_flight = []
        self.delivered += accepted
        return True

    def _back(self, accepted: list[str]) -> None:
        """A failed transaction: its recipients were not delivered."""
        self.in_flight = []
        self.deferred += accepted

    async def _reset(self, conn: _Connection) -> None:
        await conn.command(command("RSET"), self.limits.mail)

    async def _send_content(self, conn: _Connection) -> None:
        stuffer = DotStuffer()
        blocks: Iterator[bytes] = self.content.blocks()
        while True:
            block = await trio.to_thread.run_sync(next, blocks, None)
            if block is None:
                break
            with trio.move_on_after(self.limits.block) as scope:
                await conn.send(stuffer.feed(block), show=False)
            if scope.cancelled_caught:
                raise _Gone("timed out sending the message")
        if conn.trace is not None:
            conn.trace(f">>> ({self.content.size} bytes of message)")
        await conn.send(stuffer.finish())


async def _connect(path: str, timeout: float) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with trio.fail_after(timeout), socket_address(path) as address:
            await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _quit(conn: _Connection) -> None:
    with trio.move_on_after(conn.limits.quit):
        with contextlib.suppress(_Gone, ProtocolError):
            await conn.command(command("QUIT"), conn.limits.quit)


async def submit(
    socket_path: str,
    submission: Submission,
    content: Content,
    *,
    helo: str = "localhost",
    partial: bool = False,
    timeouts: ClientTimeouts | None = None,
    trace: Callable[[str], None] | None = None,
) -> SubmitResult:
    """Submit ``content`` to ``submission.recipients`` through the Unix socket at
    ``socket_path``; see the module docstring."""
    limits = timeouts or ClientTimeouts()
    run = _Run(submission, content, helo=helo, partial=partial, limits=limits, trace=trace)
    if not run.todo:
        return run.result()
    for _ in range(_MAX_SESSIONS):
        try:
            stream = await _connect(socket_path, limits.connect)
        except (OSError, trio.TooSlowError) as exc:
            text = getattr(exc, "strerror", None) or str(exc) or "timed out"
            run.stage = run.stage or Stage.CONNECT
            return run.result(unreachable=True, problem=f"cannot connect to {socket_path}: {text}")
        conn = _Connection(stream, trace, limits)
        try:
            async with stream:
                again = await run.session(conn)
                await _quit(conn)
        except _Gone as exc:
            return run.result(unreachable=True, problem=str(exc))
        except ProtocolError as exc:
            return run.result(protocol=True, problem=f"protocol error: {exc}")
        if not again or not run.todo:
            return run.result()
    return run.result(problem="too many sessions")
