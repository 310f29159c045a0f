"""One SMTP session on trio: the edge that drives the sans-IO server.

The state machine (:mod:`mta.smtp.server`) parses and answers; this module
runs the phases of a session and does what needs the outside world:

1. before the banner (:mod:`mta.server.opening`): the PROXY header, TLS on
   ``smtps`` listeners, the client's name;
2. a test server's fault at connect (:mod:`mta.testing.faults`), then the
   listener's filters (:mod:`mta.server.filtering`) and their connect phase,
   either of which may refuse the session instead of the banner;
3. the command loop (:meth:`Session._serve`): each read under a deadline kept
   by the daemon's :class:`~mta.server.watchdog.Watchdog` (one cancel scope per
   session, not one per read), each request event answered by
   :mod:`mta.server.requests` (HELO, STARTTLS, AUTH, and the mail transaction
   of :mod:`mta.server.transaction`).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import socket

import trio

from mta.config.model import TlsMode
from mta.errors import MTAError
from mta.filters.datalines import DataLinePipe
from mta.filters.events import (
    LinkDisconnect,
    LinkGreeting,
    ProtocolClient,
    ProtocolServer,
    Timeout,
)
from mta.filters.protocol import FilterPhase, format_source
from mta.log import get_logger, quote
from mta.reply import Reply
from mta.server import opening
from mta.server.client import Client
from mta.server.filtering import (
    SessionFilters,
    open_filters,
)
from mta.server.requests import ASKED_PHASES, Requests, SessionClosed
from mta.server.services import Endpoint, Services
from mta.server.stream import ConnectionStream
from mta.server.timeouts import DataPace
from mta.server.transaction import MailTransaction
from mta.server.watchdog import Deadline
from mta.smtp import events as ev
from mta.smtp.server import ServerConnection, SessionSettings

__all__ = ["Session"]

log = get_logger("smtp")

_ids = random.Random(os.urandom(32))  # session ids: unique, not secret

TIMEOUT = Reply.of(421, "4.4.2", "Timeout, closing connection", close=True)
SHUTDOWN = Reply.of(421, "4.3.2", "Server shutting down", close=True)


def _peer_text(address: object) -> str:
    """``a.b.c.d`` / IPv6 text from a socket address, or ``local``."""
    if isinstance(address, tuple) and address:
        return str(address[0]).partition("%")[0]
    return "local"


class Session(Requests):
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
        self.client = Client(smtpname=services.hostname)
        self.tx: MailTransaction | None = None
        self.filters: SessionFilters | None = None
        self.junk = False  # a filter said junk before any transaction (the whole session)
        self.conn: ServerConnection | None = None
        self.buffered = b""  # bytes that came with the PROXY header
        self.reason = "disconnect"
        self._deadline: Deadline | None = None
        self._nursery: trio.Nursery | None = None
        self._pipe: DataLinePipe | None = None
        sock = getattr(stream, "socket", None)
        self._quickack = sock if hasattr(socket, "TCP_QUICKACK") and sock is not None else None

    # -- the whole session -------------------------------------------------

    async def run(self) -> None:
        try:
            if not self._may_pipe():
                # no filter process, so no data-line pipe: no nursery to hold one
                await self._run_caught()
            else:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await self._run_caught()
                    nursery.cancel_scope.cancel()  # a data-line pipe left behind
        finally:
            self._log_failures()  # those that could not be sent
            await self._abort_tx()
            if self.filters is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self.filters.report(LinkDisconnect())
            log.info("%016x smtp disconnected reason=%s", self.id, self.reason)
            if isinstance(self.stream, ConnectionStream):
                self.stream.close()  # at once: nothing to wait for
            else:  # a TLS stream may wait for its peer: a second at most
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    await self.stream.aclose()

    def _may_pipe(self) -> bool:
        """Whether the session's filters include processes, whose data-line
        stages need a task (:class:`DataLinePipe`) in the session's nursery."""
        ref, host = self.endpoint.filter, self.services.filters
        if ref is None or host is None:
            return False
        try:
            return bool(host.chain(self.services.config, ref, self.services.tables).procs)
        except MTAError:
            return True  # the session is refused at connect: the general way

    async def _run_caught(self) -> None:
        """:meth:`_run`, its ends of the connection turned into a reason (caught
        here: out of a nursery they would come in an exception group)."""
        try:
            await self._run()
        except SessionClosed:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.reason = "disconnect"
        except OSError as exc:
            self.reason = f'"io-error: {exc.strerror or exc}"'

    async def _run(self) -> None:
        self._addresses()
        ep = self.endpoint
        client = self.client
        if ep.listener is not None and ep.listener.proxy_v2:
            outcome = await opening.read_proxy(
                self.stream, self.services.timeouts.proxy_header, client, self.id
            )
            if outcome.reason is not None:
                self.reason = outcome.reason
                return
            self.buffered = outcome.rest
        if ep.tls_mode is TlsMode.SMTPS:
            if self.buffered:
                # the ClientHello came along with the PROXY header
                self.stream = opening.Prefixed(self.stream, self.buffered)
                self.buffered = b""
            if not await self._start_tls():
                return
        await opening.identify(self.services, ep, client, self.id)
        log.info(
            "%016x smtp connected address=%s host=%s",
            self.id,
            client.peer,
            client.rdns or "<unknown>",
        )
        self.conn = ServerConnection(self._settings())
        # a test server's fault at connect answers in place of the banner (and
        # of the filters' connect phase)
        faults = self.services.faults
        if (faults is None or not await self._faulted("connect")) and await self._connect_filters():
            self.conn.banner()
            if self.filters is not None:
                await self.filters.report(LinkGreeting(client.smtpname))
        if self.buffered:
            self.conn.receive_data(self.buffered)
        await self._serve_watched()

    def _addresses(self) -> None:
        """The client's address (as accept() gave it, else the socket's peer)
        and, when a ``hostnames`` table needs it, ours."""
        if self.endpoint.is_socket:
            return
        sock = getattr(self.raw_stream, "socket", None)
        try:
            address = self.peer_address
            if address is None and sock is not None:
                address = sock.getpeername()
            self.client.peer = _peer_text(address)
            if sock is not None and self.endpoint.hostnames is not None:
                self.client.local_address = _peer_text(sock.getsockname())
        except OSError:
            pass

    def _settings(self) -> SessionSettings:
        ep = self.endpoint
        config = self.services.config
        return SessionSettings(
            hostname=self.client.smtpname,
            peer=self.client.peer,
            max_message_size=config.smtp.max_message_size,
            max_rcpt=config.smtp.max_rcpt,
            max_mails=config.smtp.max_mails,
            tls=ep.tls_mode if ep.tls_context is not None else TlsMode.NONE,
            secure=self.client.tls is not None,
            auth=ep.auth_mode,
            dsn=ep.dsn,
            local=ep.is_socket,
        )

    async def _start_tls(self) -> bool:
        context = self.endpoint.tls_context
        assert context is not None
        started = await opening.start_tls(
            self.stream, context, self.services.timeouts.tls_handshake
        )
        if started is None:
            self.reason = "tls-accept-failed"
            return False
        self.stream, self.client.tls = started
        log.info("%016x smtp tls ciphers=%s", self.id, self.client.tls.text)
        return True

    # -- the command loop ----------------------------------------------------

    async def _flush(self) -> bool:
        """Send the replies queued so far (logging the refusals among them);
        True if there were any."""
        assert self.conn is not None
        if self.conn.failures:
            self._log_failures()
        out = self.conn.data_to_send()
        if out:
            await self.stream.send_all(out)
        if self.conn.transcript:
            await self._transcribe()
        return bool(out)

    def _log_failures(self) -> None:
        """One line per 4xx or 5xx reply, as OpenSMTPD's ``smtp_reply`` logs it:
        ``failed-command`` with the command it answers, ``bad-input`` when the
        client sent something that is no command (a line too long)."""
        conn = self.conn
        if conn is None:
            return
        failures, conn.failures = conn.failures, []
        for command, reply in failures:
            if command is None:
                log.info("%016x smtp bad-input result=%s", self.id, quote(reply.text))
            else:
                log.info(
                    "%016x smtp failed-command command=%s result=%s",
                    self.id,
                    quote(command),
                    quote(reply.text),
                )

    async def _transcribe(self) -> None:
        """protocol-client / protocol-server reports of the lines since the last."""
        conn, filters = self.conn, self.filters
        if conn is None or not conn.transcript or filters is None:
            return
        lines, conn.transcript = conn.transcript, []
        for from_client, line in lines:
            await filters.report(ProtocolClient(line) if from_client else ProtocolServer(line))

    async def _receive(self, deadline: float, in_data: bool) -> bytes:
        """The next bytes from the client; the watchdog cancels the wait at ``deadline``."""
        watched = self._deadline
        assert watched is not None
        watched.at = deadline
        data = bytes(await self.stream.receive_some(opening.RECEIVE_SIZE))
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
            if self.filters is not None:
                with trio.move_on_after(1):
                    await self.filters.report(Timeout())
            conn.send_reply(TIMEOUT)
            with trio.move_on_after(1):
                await self._flush()

    async def _serve(self) -> None:
        conn = self.conn
        assert conn is not None
        timeouts = self.services.timeouts
        deadline: float | None = None
        pace: DataPace | None = None  # inside DATA: its deadlines (a minimum rate)
        now = 0.0
        while True:
            event = conn.next_event()
            if event is ev.NEED_DATA:
                if await self._flush():
                    # a command line was answered (NOOP, RSET... make no event):
                    # the next one gets a deadline of its own
                    deadline = None
                if conn.closed:
                    return
                in_data = self.tx is not None and self.tx.in_data
                if in_data:
                    now = trio.current_time()
                    if pace is None:  # the first read after the 354
                        pace = DataPace(timeouts, now)
                    deadline = pace.deadline(now)
                elif deadline is None:
                    deadline = trio.current_time() + timeouts.command
                try:
                    data = await self._receive(deadline, in_data)
                except trio.Cancelled:
                    if self._deadline is not None and self._deadline.expired:
                        if in_data and pace is not None:
                            self._data_timeout(pace)
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
                if in_data and pace is not None:
                    pace.took(now, trio.current_time(), len(data))
                conn.receive_data(data)
                continue
            deadline = None
            if isinstance(event, ev.ConnectionClosed):
                await self._flush()
                self.reason = event.reason
                return
            if isinstance(event, ev.DataEnd):
                pace = None
            await self._handle(event)

    def _data_timeout(self, pace: DataPace) -> None:
        now = trio.current_time()
        log.info(
            "%016x smtp timeout in DATA: %d bytes in %.1f s, %s",
            self.id,
            pace.received,
            now - pace.started,
            pace.failure(now),
        )

    # -- filters -------------------------------------------------------------

    async def _connect_filters(self) -> bool:
        """Set up the listener's filters and run the connect phase; False when
        a filter refused the session (its reply goes instead of the banner)."""
        conn = self.conn
        assert conn is not None
        opened = await open_filters(
            self.services, self.endpoint, self.client, self.id, self.peer_address, self.raw_stream
        )
        if isinstance(opened, SessionFilters):
            self.filters = opened
            await self._report_tls()  # an smtps listener's, already agreed
            if opened.wants_transcript():
                conn.transcript = []
            if opened.chain.procs:  # their filter-response is reported too
                conn.ask = frozenset(ASKED_PHASES)
            else:  # builtin filters only: just the commands a filter of the chain takes
                conn.ask = frozenset(v for v, p in ASKED_PHASES.items() if opened.needs(p))
            source = format_source(opened.src) if opened.src is not None else ""
            outcome = await self._filter(FilterPhase.CONNECT, source)
            refused = outcome.refused
        else:
            refused = opened
        if refused is None:
            return True
        # in place of the banner; only QUIT is served then, unless it closes
        conn.refuse(refused)
        return False
