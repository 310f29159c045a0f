"""One SMTP session on trio: the edge that drives the sans-IO server.

The state machine (:mod:`mta.smtp.server`) parses and answers; this module
does what needs the outside world: the client's name (:mod:`mta.net.rdns`:
the hosts file, then reverse DNS), TLS handshakes, credential checks, the
``match`` rules, and writing to the spool.  It also enforces the
timeouts: a deadline for every command line and for a whole DATA transfer,
kept by the daemon's :class:`~mta.server.watchdog.Watchdog` (one cancel scope
per session, not one per read).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import math
import os
import random
import secrets
import socket
import ssl
import time
from typing import cast

import trio

from mta.auth.check import AuthResult, authenticate
from mta.config.model import TlsMode
from mta.envelope import Address, Envelope, EnvelopeFlag
from mta.errors import SpoolFull, TableError, TemporaryFailure
from mta.log import get_logger, quote, visible
from mta.net.proxy import ProxyCommand, ProxyError, ProxyFamily, ProxyV2Parser
from mta.net.tls import TlsInfo, tls_summary
from mta.reply import Reply
from mta.rules.expand import Delivery
from mta.rules.rejection import RecipientRejected
from mta.rules.ruleset import MatchContext
from mta.server.services import Endpoint, Services
from mta.server.watchdog import Deadline
from mta.smtp import events as ev
from mta.smtp.message import MessageRewriter, RewriteOptions, Verdict
from mta.smtp.received import ReceivedInfo, TlsDetails, received_header
from mta.smtp.server import ServerConnection, SessionSettings
from mta.spool.transaction import Transaction
from mta.spool.writer import MessageWriter
from mta.tables.lookups import lookup_addrname, lookup_mailaddrmap
from mta.tables.mailaddr import mailaddr_match, parse_mailaddr

__all__ = ["Session"]

log = get_logger("smtp")

_ids = random.Random(os.urandom(32))  # session ids and Message-ID parts: unique, not secret

RECEIVE_SIZE = 65536

TEMPFAIL = Reply.of(451, "4.3.0", "Temporary failure")
SPOOL_FULL = Reply.of(452, "4.3.1", "Insufficient system storage")
SPOOL_ERROR = Reply.of(421, "4.3.0", "Temporary Error", close=True)
AUTH_FAILED = Reply.of(535, "5.7.8", "Authentication failed")
AUTH_TEMPFAIL = Reply.of(454, "4.7.0", "Temporary authentication failure")
SENDER_REJECTED = Reply.of(530, "5.7.0", "Sender rejected")
NOT_COMPLIANT = Reply.of(
    550, "5.7.1", "Delivery not authorized, message refused: Message is not RFC 2822 compliant"
)
TIMEOUT = Reply.of(421, "4.4.2", "Timeout, closing connection", close=True)
SHUTDOWN = Reply.of(421, "4.3.2", "Server shutting down", close=True)


def _peer_text(address: object) -> str:
    """``a.b.c.d`` / IPv6 text from a socket address, or ``local``."""
    if isinstance(address, tuple) and address:
        return str(address[0]).partition("%")[0]
    return "local"


class _Transaction:
    """What the driver keeps for the current mail transaction."""

    def __init__(self, sender: Address, mail: ev.MailFrom) -> None:
        self.sender = sender
        self.mail = mail
        self.deliveries: list[tuple[Address, ev.RcptTo, Delivery]] = []
        self.rcpts: list[Address] = []
        self.spool: Transaction | None = None
        self.writer: MessageWriter | None = None
        self.rewriter: MessageRewriter | None = None
        self.write_error: Exception | None = None
        self.started = 0.0


class Session:
    """Serve one accepted connection until it ends."""

    def __init__(
        self,
        services: Services,
        endpoint: Endpoint,
        stream: trio.abc.Stream,
        peer_address: object = None,
    ) -> None:
        self.services = services
        self.endpoint = endpoint
        self.stream: trio.abc.Stream = stream
        self.raw_stream = stream
        self.peer_address = peer_address  # as accept() gave it, when it did
        self.id = _ids.getrandbits(64)
        self.peer = "local"
        self.local_address = ""
        self.rdns: str | None = None
        self.fcrdns = False
        self.smtpname = services.hostname
        self.helo = ""
        self.esmtp = False
        self.auth_user: str | None = None
        self.tls: TlsInfo | None = None
        self.tx: _Transaction | None = None
        self.conn: ServerConnection | None = None
        self.buffered = b""  # bytes that came with the PROXY header
        self.reason = "disconnect"
        self._deadline: Deadline | None = None
        sock = getattr(stream, "socket", None)
        self._quickack = sock if hasattr(socket, "TCP_QUICKACK") and sock is not None else None

    # -- the whole session -------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except _Closed:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.reason = "disconnect"
        except OSError as exc:
            self.reason = f'"io-error: {exc.strerror or exc}"'
        finally:
            await self._abort_tx()
            log.info("%016x smtp disconnected reason=%s", self.id, self.reason)
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await self.stream.aclose()

    async def _run(self) -> None:
        self._addresses()
        ep = self.endpoint
        if ep.listener is not None and ep.listener.proxy_v2 and not await self._read_proxy():
            return
        if ep.tls_mode is TlsMode.SMTPS:
            if self.buffered:
                # the ClientHello came along with the PROXY header
                self.stream = _Prefixed(self.stream, self.buffered)
                self.buffered = b""
            if not await self._start_tls():
                return
        await self._identify()
        log.info(
            "%016x smtp connected address=%s host=%s",
            self.id,
            self.peer,
            self.rdns or "<unknown>",
        )
        self.conn = ServerConnection(self._settings())
        self.conn.banner()
        if self.buffered:
            self.conn.receive_data(self.buffered)
        await self._serve_watched()

    def _addresses(self) -> None:
        sock = getattr(self.raw_stream, "socket", None)
        if sock is None or self.endpoint.is_socket:
            return
        try:
            address = self.peer_address
            self.peer = _peer_text(address if address is not None else sock.getpeername())
            if self.endpoint.hostnames is not None:  # the only use of the local address
                self.local_address = _peer_text(sock.getsockname())
        except OSError:
            pass

    def _settings(self) -> SessionSettings:
        ep = self.endpoint
        config = self.services.config
        return SessionSettings(
            hostname=self.smtpname,
            peer=self.peer,
            max_message_size=config.smtp.max_message_size,
            max_rcpt=config.smtp.max_rcpt,
            max_mails=config.smtp.max_mails,
            tls=ep.tls_mode if ep.tls_context is not None else TlsMode.NONE,
            secure=self.tls is not None,
            auth=ep.auth_mode,
            dsn=ep.dsn,
            local=ep.is_socket,
        )

    # -- before the banner -------------------------------------------------

    async def _read_proxy(self) -> bool:
        parser = ProxyV2Parser()
        with trio.move_on_after(self.services.timeouts.proxy_header):
            while True:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    self.reason = "disconnect"
                    return False
                try:
                    result = parser.feed(bytes(data))
                except ProxyError as exc:
                    log.info("%016x smtp bad-input result=%s", self.id, quote(str(exc)))
                    self.reason = "proxy-error"
                    return False
                if result is None:
                    continue
                header = result.header
                if header.command is ProxyCommand.PROXY:
                    if header.family is ProxyFamily.UNIX:
                        self.peer = "local"
                    elif header.source is not None:
                        self.peer = str(header.source)
                        if header.destination is not None:
                            self.local_address = str(header.destination)
                self.buffered = result.rest
                return True
        self.reason = "timeout"
        return False

    async def _identify(self) -> None:
        ep = self.endpoint
        if ep.is_socket:
            self.rdns = self.services.hostname
            self.peer = "local"
        elif self.services.rdns is not None and self.services.rdns.enabled:
            with trio.move_on_after(self.services.timeouts.rdns):
                result = await self.services.rdns.lookup(self.peer)
                self.rdns = result.name
                self.fcrdns = result.fcrdns
        # the listener's hostname, unless its hostnames table names the local address
        if ep.listener is not None and ep.listener.hostname:
            self.smtpname = ep.listener.hostname
        if ep.hostnames is not None and self.local_address:
            table = ep.hostnames
            try:
                address = ipaddress.ip_address(self.local_address)
                found = await self.services.tables.call(
                    table, lambda: lookup_addrname(table, address)
                )
            except (ValueError, TemporaryFailure):
                found = None
            except Exception as exc:  # a table backend failing must not kill the session
                log.warning("%016x smtp hostnames lookup failed: %s", self.id, visible(str(exc)))
                found = None
            if found is not None:
                self.smtpname = found.name

    async def _start_tls(self) -> bool:
        context = self.endpoint.tls_context
        assert context is not None
        tls_stream = trio.SSLStream(self.stream, context, server_side=True)
        try:
            with trio.fail_after(self.services.timeouts.tls_handshake):
                await tls_stream.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError):
            self.reason = "tls-accept-failed"
            # the handshake failed: nothing more can be said on this stream
            return False
        self.stream = tls_stream
        # trio's SSLStream forwards cipher(), version(), getpeercert() and context
        self.tls = tls_summary(cast(ssl.SSLObject, tls_stream))
        log.info("%016x smtp tls ciphers=%s", self.id, self.tls.text)
        return True

    # -- the command loop ----------------------------------------------------

    async def _flush(self) -> bool:
        """Send the replies queued so far; True if there were any."""
        assert self.conn is not None
        out = self.conn.data_to_send()
        if out:
            await self.stream.send_all(out)
        return bool(out)

    async def _receive(self, deadline: float, in_data: bool) -> bytes:
        """The next bytes from the client; the watchdog cancels the wait at ``deadline``."""
        watched = self._deadline
        assert watched is not None
        watched.at = deadline
        data = bytes(await self.stream.receive_some(RECEIVE_SIZE))
        watched.at = math.inf
        if in_data and self._quickack is not None:
            # answer at once: a client that waits for our ACK before sending its
            # last small segment of DATA (Nagle) would otherwise wait for a
            # delayed ACK; between commands our reply carries the ACK
            try:
                self._quickack.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                self._quickack = None
        return data

    async def _serve_watched(self) -> None:
        """:meth:`_serve` under one cancel scope that the watchdog cancels when a
        read deadline passes; then the client gets a 421."""
        watchdog = self.services.watchdog
        with trio.CancelScope() as scope:
            self._deadline = Deadline(scope)
            watchdog.add(self._deadline)
            try:
                await self._serve()
            finally:
                watchdog.discard(self._deadline)
        if scope.cancelled_caught:
            conn = self.conn
            assert conn is not None
            self.reason = "timeout"
            conn.send_reply(TIMEOUT)
            with trio.move_on_after(1):
                await self._flush()

    async def _serve(self) -> None:
        conn = self.conn
        assert conn is not None
        timeouts = self.services.timeouts
        deadline: float | None = None
        data_deadline: float | None = None
        while True:
            event = conn.next_event()
            if event is ev.NEED_DATA:
                if await self._flush():
                    # a command line was answered (NOOP, RSET... make no event):
                    # the next one gets a deadline of its own
                    deadline = None
                if conn.closed:
                    return
                in_data = self.tx is not None and self.tx.rewriter is not None
                if deadline is None:
                    now = trio.current_time()
                    if in_data:
                        deadline = now + timeouts.data_block
                        if data_deadline is not None:
                            deadline = min(deadline, data_deadline)
                    else:
                        deadline = now + timeouts.command
                try:
                    data = await self._receive(deadline, in_data)
                except trio.Cancelled:
                    if self._deadline is not None and self._deadline.expired:
                        raise  # a timeout: answered once out of the watched scope
                    # the server stops and the grace period is over: say so while
                    # the client waits for us (never in the middle of a reply)
                    self.reason = "shutdown"
                    with trio.move_on_after(1) as scope:
                        scope.shield = True
                        conn.send_reply(SHUTDOWN)
                        with contextlib.suppress(
                            trio.BrokenResourceError, trio.ClosedResourceError, OSError
                        ):
                            await self._flush()
                    raise
                conn.receive_data(data)
                continue
            deadline = None
            if isinstance(event, ev.ConnectionClosed):
                await self._flush()
                self.reason = event.reason
                return
            if isinstance(event, ev.DataStart):
                data_deadline = trio.current_time() + timeouts.data_total
            elif isinstance(event, ev.DataEnd):
                data_deadline = None
            await self._handle(event)

    async def _handle(self, event: object) -> None:
        conn = self.conn
        assert conn is not None
        if isinstance(event, ev.DataChunk):
            self._write(event.data)
        elif isinstance(event, ev.Hello):
            self.helo = event.domain
            self.esmtp = event.verb.upper() == "EHLO"
            await self._abort_tx()
            conn.accept()
        elif isinstance(event, ev.MailFrom):
            await self._mail(event)
        elif isinstance(event, ev.RcptTo):
            await self._rcpt(event)
        elif isinstance(event, ev.DataStart):
            await self._data_start()
        elif isinstance(event, ev.DataEnd):
            await self._data_end(event)
        elif isinstance(event, ev.TransactionReset):
            await self._abort_tx()
        elif isinstance(event, ev.StartTls):
            await self._starttls()
        elif isinstance(event, ev.AuthCredentials):
            await self._auth(event)

    def _spool_failed(self, exc: Exception) -> None:
        log.warning("%016x smtp spool failure: %s", self.id, visible(str(exc)))

    def _failed(self, command: str, reply: Reply) -> None:
        log.info(
            "%016x smtp failed-command command=%s result=%s",
            self.id,
            quote(command),
            quote(reply.text),
        )

    # -- STARTTLS and AUTH ---------------------------------------------------

    async def _starttls(self) -> None:
        conn = self.conn
        assert conn is not None
        conn.accept()
        await self._flush()
        if conn.closed:
            return
        if not await self._start_tls():
            raise _Closed
        conn.tls_established()

    async def _auth(self, event: ev.AuthCredentials) -> None:
        conn = self.conn
        assert conn is not None
        result = await authenticate(self.endpoint.auth_table, event.username, event.password)
        user = visible(event.username)
        if result is AuthResult.OK:
            log.info("%016x smtp authentication user=%s result=ok", self.id, user)
            self.auth_user = event.username
            conn.accept()
        elif result is AuthResult.FAIL:
            log.info("%016x smtp authentication user=%s result=permfail", self.id, user)
            await trio.sleep(secrets.randbelow(1_000_000) / 1e6)
            conn.reject(AUTH_FAILED)
        else:
            log.info("%016x smtp authentication user=%s result=tempfail", self.id, user)
            conn.reject(AUTH_TEMPFAIL)

    # -- the transaction -----------------------------------------------------

    async def _mail(self, event: ev.MailFrom) -> None:
        conn = self.conn
        assert conn is not None
        try:
            allowed = await self._sender_allowed(event.sender)
        except TableError as exc:
            log.warning("%016x smtp senders lookup failed: %s", self.id, visible(str(exc)))
            self._failed(f"MAIL FROM:<{event.sender}>", TEMPFAIL)
            conn.reject(TEMPFAIL)
            return
        if not allowed:
            self._failed(f"MAIL FROM:<{event.sender}>", SENDER_REJECTED)
            conn.reject(SENDER_REJECTED)
            return
        self.tx = _Transaction(event.sender, event)
        conn.accept()

    async def _sender_allowed(self, sender: Address) -> bool:
        """``senders <table>``: an authenticated user may only use the addresses
        the table maps them to.  TableError when the lookup fails (try again)."""
        table = self.endpoint.senders
        user = self.auth_user
        if table is None or user is None or self.endpoint.is_socket:
            return True
        # a helper-backed table may take its time: never on the event loop
        allowed = await self.services.tables.call(table, lambda: lookup_mailaddrmap(table, user))
        if allowed is None:
            return False
        candidate = parse_mailaddr(str(sender)) if not sender.is_null else None
        if candidate is None:
            return False
        return any(mailaddr_match(candidate, entry) for entry in allowed.addresses)

    def _match_context(self) -> MatchContext:
        tx = self.tx
        assert tx is not None
        ep = self.endpoint
        return MatchContext(
            socket=ep.is_socket,
            local=ep.is_socket or _is_loopback(self.peer),
            src="local" if ep.is_socket else self.peer,
            rdns=self.rdns,
            helo=self.helo,
            tag=ep.tag,
            auth_user=self.auth_user,
            sender=tx.sender,
            tls=self.tls is not None,
        )

    async def _rcpt(self, event: ev.RcptTo) -> None:
        conn = self.conn
        assert conn is not None and self.tx is not None
        try:
            deliveries = await self.services.resolver.resolve(self._match_context(), event.rcpt)
        except RecipientRejected as exc:
            self._failed(f"RCPT TO:<{event.rcpt}>", exc.reply)
            conn.reject(exc.reply)
            return
        except TemporaryFailure:
            reply = Reply.of(451, "4.3.0", f"Temporary failure: <{event.rcpt}>")
            self._failed(f"RCPT TO:<{event.rcpt}>", reply)
            conn.reject(reply)
            return
        for delivery in deliveries:
            self.tx.deliveries.append((event.rcpt, event, delivery))
        self.tx.rcpts.append(event.rcpt)
        conn.accept()

    async def _data_start(self) -> None:
        conn = self.conn
        tx = self.tx
        assert conn is not None and tx is not None
        try:
            tx.spool = await self.services.spool.begin()
            tx.writer = await tx.spool.open_message()
        except TemporaryFailure as exc:  # SpoolFull and other spool failures
            self._spool_failed(exc)
            await self._abort_tx(keep=True)
            conn.reject(SPOOL_FULL if isinstance(exc, SpoolFull) else TEMPFAIL)
            return
        tx.started = trio.current_time()
        now = datetime.datetime.now().astimezone()
        tls = self.tls
        received = received_header(
            ReceivedInfo(
                helo=self.helo,
                rdns=self.rdns,
                peer=self.peer,
                mask_src=self.endpoint.mask_src,
                smtpname=self.smtpname,
                esmtp=self.esmtp,
                tls=TlsDetails(tls.version, tls.cipher, tls.bits) if tls else None,
                verified=bool(tls and tls.verified),
                # local enqueue sessions count as authenticated (OpenSMTPD: ESMTPA)
                authenticated=self.auth_user is not None or self.endpoint.is_socket,
                received_auth=bool(self.endpoint.listener and self.endpoint.listener.received_auth),
                username=self.auth_user or "",
                msgid=tx.spool.msgid,
                rcpt=tx.rcpts[0] if len(tx.rcpts) == 1 else None,
                date=now,
            )
        )
        listener = self.endpoint.listener
        tx.rewriter = MessageRewriter(
            RewriteOptions(
                received=received,
                hostname=self.smtpname,
                masquerade=tx.sender
                if (
                    listener is not None
                    and listener.masquerade
                    and self.auth_user is not None
                    and not tx.sender.is_null
                )
                else None,
                add_missing=self.endpoint.local
                or (listener is not None and listener.effective_port == 587),
                date=now,
                message_id_random=_ids.getrandbits(64),
            )
        )
        conn.accept()

    def _write(self, data: bytes) -> None:
        tx = self.tx
        if tx is None or tx.rewriter is None or tx.writer is None or tx.write_error:
            return
        try:
            tx.writer.write(tx.rewriter.feed(data))
        except (OSError, TemporaryFailure) as exc:
            tx.write_error = exc

    async def _data_end(self, event: ev.DataEnd) -> None:
        conn = self.conn
        tx = self.tx
        assert conn is not None
        if tx is None or tx.spool is None or tx.rewriter is None or tx.writer is None:
            conn.reject(TEMPFAIL)
            return
        if event.error is not None:
            await self._abort_tx()
            conn.reject(event.error)
            return
        try:
            if tx.write_error is None:
                tx.writer.write(tx.rewriter.finish())
        except (OSError, TemporaryFailure) as exc:
            tx.write_error = exc
        verdict = tx.rewriter.verdict
        if verdict is not Verdict.OK:
            reply = verdict.reply or NOT_COMPLIANT
            if verdict is Verdict.LOOP:
                log.warning("%016x smtp loop detected", self.id)
            await self._abort_tx()
            conn.reject(reply)
            return
        if tx.write_error is not None:
            self._spool_failed(tx.write_error)
            full = isinstance(tx.write_error, SpoolFull)
            await self._abort_tx()
            conn.reject(SPOOL_FULL if full else TEMPFAIL)
            return
        envelopes = self._envelopes(tx, tx.spool.msgid, tx.spool.new_ids(len(tx.deliveries)))
        try:
            committed = await tx.spool.commit(envelopes)
        except TemporaryFailure as exc:  # SpoolFull and other spool failures
            self._spool_failed(exc)
            await self._abort_tx()
            conn.reject(SPOOL_FULL if isinstance(exc, SpoolFull) else TEMPFAIL)
            return
        msgid = f"{tx.spool.msgid:08x}"
        tx.spool = None
        if self.services.queue is not None:
            self.services.queue.committed(committed)
        log.info(
            "%016x smtp message msgid=%s size=%d nrcpt=%d proto=%s",
            self.id,
            msgid,
            event.size,
            len(tx.rcpts),
            "ESMTP" if self.esmtp else "SMTP",
        )
        for env in committed:
            log.info(
                "%016x smtp envelope evpid=%016x from=<%s> to=<%s>",
                self.id,
                env.id,
                visible(str(env.sender)),
                visible(str(env.rcpt)),
            )
        self.tx = None
        conn.accept_message(msgid)

    def _envelopes(self, tx: _Transaction, msgid: int, ids: list[int]) -> list[Envelope]:
        now = int(time.time())
        flags = EnvelopeFlag.NONE
        if self.auth_user is not None or self.endpoint.is_socket:
            flags |= EnvelopeFlag.AUTHENTICATED
        mail = tx.mail
        result = []
        for (rcpt, rcpt_event, delivery), evpid in zip(tx.deliveries, ids, strict=True):
            result.append(
                Envelope(
                    msgid=msgid,
                    id=evpid,
                    kind=delivery.kind,
                    dispatcher=delivery.action,
                    smtpname=self.smtpname,
                    helo=self.helo,
                    hostname=self.rdns or "<unknown>",
                    sockaddr=self.peer,
                    sender=tx.sender,
                    rcpt=rcpt,
                    dest=delivery.dest,
                    ctime=now,
                    tag=self.endpoint.tag or "",
                    username=self.auth_user or "",
                    flags=flags | EnvelopeFlag.INTERNAL if delivery.internal else flags,
                    node=delivery.node,
                    mda_user=delivery.mda_user or "",
                    mda_exec=delivery.mda_exec or "",
                    mda_subaddress=delivery.mda_subaddress or "",
                    dsn_notify=rcpt_event.params.notify,
                    dsn_ret=mail.params.ret,
                    dsn_envid=mail.params.envid or "",
                    dsn_orcpt=rcpt_event.params.orcpt or "",
                    body=mail.params.body,
                    smtputf8=mail.params.smtputf8,
                )
            )
        return result

    async def _abort_tx(self, keep: bool = False) -> None:
        tx = self.tx
        if tx is None:
            return
        if tx.spool is not None:
            spool_tx, tx.spool = tx.spool, None
            with trio.CancelScope(shield=True):
                try:
                    await spool_tx.abort()
                except Exception as exc:
                    log.warning("%016x smtp could not remove a transaction: %s", self.id, exc)
        tx.writer = None
        tx.rewriter = None
        if not keep:
            self.tx = None


class _Prefixed(trio.abc.Stream):
    """A stream whose first bytes were already received (with the PROXY header)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if not self._prefix:
            return await self._stream.receive_some(max_bytes)
        await trio.lowlevel.checkpoint()
        size = len(self._prefix) if max_bytes is None else max_bytes
        data, self._prefix = self._prefix[:size], self._prefix[size:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Closed(Exception):
    pass


def _is_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False
