"""The relay session on trio: one :class:`~mta.relay.client.Client` run over a
real connection to one address, as OpenSMTPD's ``mta_session.c`` drives it.

:func:`run_session` connects (binding the ``src`` address first when given),
feeds the client what the server sends, writes what it asks, runs the TLS
handshake for ``smtps://`` and after STARTTLS (SNI and certificate checks:
:mod:`mta.relay.tlsclient`), streams each message's content when the server
says 354, and returns a :class:`SessionOutcome`.  Every wait for the server
gets the RFC 5321 timeout of the step the client is in, every write of
content the data-block timeout; when one expires, or the connection breaks,
the client is told (``Connection timeout``, ``IO Error: ...``) and the
session ends with a temporary failure.

Connection reuse: with a :class:`Reuse` (and a ``keepalive`` client), each
transaction's results are handed to ``Reuse.done`` as soon as they are all
in, and when the client has sent everything, ``Reuse.more()`` is awaited for
more transactions (none: QUIT).  The caller decides how long it waits; the
server is not watched meanwhile (a keep-alive far below the server's RFC 5321
timeout makes a closed idle session rare; it then fails the next message
temporarily).

When an opportunistic STARTTLS handshake fails, OpenSMTPD connects again in
plaintext ("opportunistic TLS failed, downgrading to plain"); so does
:func:`run_session`, once, with a fresh client.

:func:`connect` opens one connection; the relay agent races several with
it (:mod:`mta.relay.eyeballs`) and hands the winner to :func:`run_session`,
logging the losers' failures with :func:`connect_failed`.

Reports: with a ``reports`` factory (a relay action with filters, see
:mod:`mta.filters.outbound`), each connection gets its own
:class:`~mta.filters.outbound.SessionReports` under its session id: its
``link-connect`` once connected, the client's events (a client made with
``reports=True``), ``link-tls`` after each TLS handshake, ``timeout`` when a
wait for the server expires, ``link-disconnect`` when it is over.  The
plaintext retry after a failed opportunistic handshake is a new session
with a new id (OpenSMTPD keeps the id and reports a second
``link-connect``).  A connection that could not be made reports nothing
(OpenSMTPD reports a ``link-disconnect`` alone).

Reads are at most :data:`RECEIVE_SIZE` octets; the client's reply parser
bounds everything else.  The session logs its own lines (``mta connecting``,
``mta connected``, ``mta tls``, ``mta error``, ``mta disconnected``); the
per-envelope delivery lines are the caller's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import cast

import attrs
import trio

from mta.delivery.result import Outcome, Result
from mta.errors import ConfigError, MTAError
from mta.filters.events import LinkTLS, Timeout
from mta.filters.outbound import ReportsFactory, SessionReports, socket_addresses
from mta.log import get_logger
from mta.net.tls import TlsInfo, tls_summary
from mta.relay.client import Client, TlsPolicy
from mta.relay.events import (
    Close,
    Event,
    RecipientResult,
    Report,
    Send,
    SendContent,
    SessionFailed,
    StartTls,
    TransactionDone,
)
from mta.relay.timeouts import ClientTimeouts, Step
from mta.relay.tlsclient import ClientTls, client_context
from mta.relay.transaction import Transaction

__all__ = [
    "RECEIVE_SIZE",
    "ContentSource",
    "Reuse",
    "SessionFailure",
    "SessionOutcome",
    "connect",
    "connect_failed",
    "error_text",
    "run_session",
]

RECEIVE_SIZE = 16384
CLOSE_GRACE = 1.0  # seconds for a TLS close_notify before the socket is closed anyway

ContentSource = Callable[[int], AsyncIterator[bytes]]
"""Transaction index -> its message content, in chunks (LF or CRLF line ends)."""

log = get_logger("mta")
_ids = random.Random(os.urandom(32))  # session ids: unique, not secret

_TRANSACTION_STEPS = frozenset(
    {Step.MAIL, Step.RCPT, Step.DATA_INIT, Step.DATA_BLOCK, Step.DATA_TERM, Step.RSET}
)


@attrs.frozen
class Reuse:
    """Connection reuse (see the module docstring): ``more()`` gives the next
    transactions when the client is idle (none: QUIT); ``done(transaction,
    results by recipient, our address)`` is called when a transaction has all
    its results."""

    more: Callable[[], Awaitable[Sequence[Transaction]]]
    done: Callable[[int, Mapping[int, RecipientResult], str], None]


@attrs.frozen
class SessionFailure:
    """The session ended early: ``result`` (temporary) for the ``unsettled``
    (transaction, recipient) pairs.  ``before_transactions``: no MAIL FROM was
    written, so the recipients may go to the next address or MX right away."""

    result: Result
    unsettled: tuple[tuple[int, int], ...]
    before_transactions: bool


@attrs.frozen
class SessionOutcome:
    """What one session did: the final results it got, by (transaction,
    recipient) index; the transactions all of whose recipients got one; the
    failure that ended it, if any."""

    address: str
    results: Mapping[tuple[int, int], RecipientResult]
    completed: frozenset[int]
    failure: SessionFailure | None
    messages: int  # transactions the server took for at least one recipient
    tls: TlsInfo | None = None
    downgraded: bool = False  # opportunistic TLS failed: this was the plaintext retry
    local: str = ""  # our address on the connection, "" when none was made

    def result(self, transaction: int, recipient: int) -> Result:
        """The recipient's result; the session failure's for an unsettled one."""
        got = self.results.get((transaction, recipient))
        if got is not None:
            return got.result
        if self.failure is None:  # pragma: no cover - the client settles everyone
            raise KeyError((transaction, recipient))
        return self.failure.result


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


async def connect(address: str, port: int, *, source: str | None = None) -> trio.SocketStream:
    """A TCP connection to ``address`` (an IP literal), from ``source`` when given."""
    sock = trio.socket.socket(_family(address), socket.SOCK_STREAM)
    try:
        if source is not None:
            await sock.bind((source, 0))
        await sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


def error_text(exc: BaseException) -> str:
    """The most telling text of an I/O or TLS error (trio wraps the cause)."""
    cause = exc.__cause__ or exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message or cause}"
    if isinstance(cause, ssl.SSLError):
        return cause.reason or str(cause)
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    return str(cause) or type(cause).__name__


class _Driver:
    """One client over one stream; see the module docstring."""

    def __init__(
        self,
        client: Client,
        stream: trio.abc.Stream,
        *,
        session_id: int,
        server_name: str,
        content: ContentSource,
        timeouts: ClientTimeouts,
        tls: ClientTls,
        reuse: Reuse | None = None,
        local: str = "",
        reports: SessionReports | None = None,
    ) -> None:
        self.client = client
        self.reports = reports
        self.reuse = reuse
        self.local = local
        self.stream = stream
        self.id = session_id
        self.server_name = server_name
        self.content = content
        self.timeouts = timeouts
        self.tls = tls
        self.tls_info: TlsInfo | None = None
        self.results: dict[tuple[int, int], RecipientResult] = {}
        self.completed: set[int] = set()
        self.failed: SessionFailed | None = None
        self.started = False  # a transaction's command was written
        self.broken = False  # the stream cannot be written any more
        self.handshake_failed = False

    async def run(self) -> None:
        try:
            if self.client.config.tls is TlsPolicy.SMTPS:
                await self._handle(await self._handshake())
            while not self.client.closed:
                if self.client.idle:
                    await self._handle(await self._more())
                    continue
                step = self.client.step
                if step is None:  # pragma: no cover - an open client always waits
                    break
                await self._handle(await self._receive(step))
        finally:
            await self._close()

    async def _more(self) -> list[Event]:
        more = await self.reuse.more() if self.reuse is not None else ()
        return self.client.add_transactions(more) if more else self.client.finish()

    async def _receive(self, step: Step) -> list[Event]:
        with trio.move_on_after(self.timeouts.seconds(step)) as scope:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.broken = True
                return self.client.fail(f"IO Error: {error_text(exc)}")
        if scope.cancelled_caught:
            self._report_timeout()
            return self.client.fail("Connection timeout")
        if not data:
            return self.client.receive_eof()
        return self.client.receive_data(bytes(data))

    async def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Send):
                await self._send(event.data)
            elif isinstance(event, StartTls):
                failed = await self._handshake()
                await self._handle(failed if failed else self.client.tls_established())
            elif isinstance(event, SendContent):
                await self._handle(await self._stream_content(event.transaction))
            elif isinstance(event, RecipientResult):
                self.results[event.transaction, event.recipient] = event
            elif isinstance(event, TransactionDone):
                self.completed.add(event.transaction)
                if self.reuse is not None:
                    tx = event.transaction
                    got = {r: result for (t, r), result in self.results.items() if t == tx}
                    self.reuse.done(tx, got, self.local)
            elif isinstance(event, SessionFailed):
                self.failed = event
                log.info("%016x mta error reason=%s", self.id, event.result.text)
            elif isinstance(event, Report):
                if self.reports is not None:
                    self.reports.report(event.payload)
            else:
                assert isinstance(event, Close)

    async def _send(self, data: bytes) -> None:
        step = self.client.step
        if self.broken:
            return
        if step in _TRANSACTION_STEPS:
            self.started = True
        seconds = self.timeouts.seconds(step or Step.QUIT)
        with trio.move_on_after(seconds) as scope:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.broken = True
                await self._handle(self.client.fail(f"IO Error: {error_text(exc)}"))
                return
        if scope.cancelled_caught:
            self.broken = True  # a write cut short leaves the stream unusable
            self._report_timeout()
            await self._handle(self.client.fail("Connection timeout"))

    def _report_timeout(self) -> None:
        if self.reports is not None:
            self.reports.report(Timeout())

    async def _stream_content(self, transaction: int) -> list[Event]:
        chunks = self.content(transaction)
        try:
            async for chunk in chunks:
                await self._handle(self.client.content(chunk))
                if self.client.closed:
                    return []
        except (MTAError, OSError) as exc:
            return self.client.fail(f"Cannot read the message: {exc}")
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        return self.client.end_content()

    async def _handshake(self) -> list[Event]:
        """TLS on the stream: no events when it worked, the failure's otherwise."""
        try:
            context = client_context(self.tls, verify=self.client.config.verify)
        except ConfigError as exc:
            return self.client.fail(f"TLS configuration error: {exc}")
        tls_stream = trio.SSLStream(self.stream, context, server_hostname=self.server_name or None)
        with trio.move_on_after(self.timeouts.seconds(Step.TLS_HANDSHAKE)) as scope:
            try:
                await tls_stream.do_handshake()
            except trio.BrokenResourceError as exc:
                self.broken = self.handshake_failed = True
                return self.client.fail(f"TLS handshake failed: {error_text(exc)}")
        if scope.cancelled_caught:
            self.broken = self.handshake_failed = True
            self._report_timeout()
            return self.client.fail("TLS handshake timeout")
        self.stream = tls_stream
        # trio's SSLStream forwards cipher(), version(), getpeercert() and context
        info = self.tls_info = tls_summary(cast(ssl.SSLObject, tls_stream))
        log.info("%016x mta tls ciphers=%s", self.id, info.text)
        if self.reports is not None:
            self.reports.report(LinkTLS(info.version, info.cipher, info.bits))
        return []

    async def _close(self) -> None:
        if self.broken:
            await trio.aclose_forcefully(self.stream)
            return
        with trio.move_on_after(CLOSE_GRACE):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stream.aclose()
        await trio.aclose_forcefully(self.stream)  # a no-op when aclose finished

    def outcome(self, address: str, *, downgraded: bool) -> SessionOutcome:
        failure = None
        if self.failed is not None:
            failure = SessionFailure(
                self.failed.result, self.failed.unsettled, before_transactions=not self.started
            )
        messages = len(
            {tx for (tx, _), got in self.results.items() if got.result.outcome is Outcome.OK}
        )
        return SessionOutcome(
            address,
            dict(self.results),
            frozenset(self.completed),
            failure,
            messages,
            self.tls_info,
            downgraded,
        )


def _url(client: Client, address: str, port: int) -> str:
    scheme = (
        "lmtp"
        if client.config.lmtp
        else "smtps"
        if client.config.tls is TlsPolicy.SMTPS
        else "smtp"
    )
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}"


def _connecting(client: Client, address: str, port: int, server_name: str) -> int:
    """A new session's id, logged as connecting."""
    session_id = _ids.getrandbits(64)
    log.info(
        "%016x mta connecting address=%s host=%s",
        session_id,
        _url(client, address, port),
        server_name,
    )
    return session_id


async def run_session(
    address: str,
    port: int,
    *,
    client: Client,
    server_name: str,
    content: ContentSource,
    timeouts: ClientTimeouts,
    tls: ClientTls | None = None,
    source: str | None = None,
    stream: trio.abc.Stream | None = None,
    downgrade: bool = True,
    reuse: Reuse | None = None,
    reports: ReportsFactory | None = None,
) -> SessionOutcome:
    """Run ``client`` against ``address``:``port`` (or over ``stream``, already
    connected there, e.g. by the relay agent's happy eyeballs).

    ``server_name`` is the host name the route gave (the MX), for SNI and the
    certificate check; ``content(i)`` yields transaction ``i``'s message;
    ``source`` is bound before connecting.  ``downgrade``: retry once in
    plaintext when an opportunistic TLS handshake fails.  ``reuse``: connection
    reuse for a ``keepalive`` client; ``reports``: the session's report
    events (see the module docstring)."""
    session_id = _connecting(client, address, port, server_name)
    if stream is None:
        with trio.move_on_after(timeouts.seconds(Step.GREETING)) as scope:
            try:
                stream = await connect(address, port, source=source)
            except OSError as exc:
                return _unconnected(client, address, session_id, error_text(exc))
        if scope.cancelled_caught or stream is None:
            return _unconnected(client, address, session_id, "Connection timeout")
    log.info("%016x mta connected", session_id)
    local = _local_address(stream)
    reporter = _reporter(reports, session_id, stream)
    driver = _Driver(
        client,
        stream,
        session_id=session_id,
        server_name=server_name,
        content=content,
        timeouts=timeouts,
        tls=tls or ClientTls(),
        reuse=reuse,
        local=local,
        reports=reporter,
    )
    if reporter is None:
        await driver.run()
    else:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reporter.run)  # the remote's name, meanwhile
            await driver.run()
            reporter.disconnected()
    reason = "error" if driver.failed is not None else "quit"
    outcome = attrs.evolve(driver.outcome(address, downgraded=False), local=local)
    log.info("%016x mta disconnected reason=%s messages=%d", session_id, reason, outcome.messages)
    if driver.handshake_failed and downgrade and client.config.tls is TlsPolicy.OPPORTUNISTIC:
        log.info(
            "%016x mta error reason=opportunistic TLS failed, downgrading to plain", session_id
        )
        plain = Client(
            attrs.evolve(client.config, tls=TlsPolicy.NONE),
            client.transactions,
            keepalive=client.keepalive,
            reports=client.reports,
        )
        retried = await run_session(
            address,
            port,
            client=plain,
            server_name=server_name,
            content=content,
            timeouts=timeouts,
            tls=tls,
            source=source,
            downgrade=False,
            reuse=reuse,
            reports=reports,
        )
        return attrs.evolve(retried, downgraded=True)
    return outcome


def _reporter(
    reports: ReportsFactory | None, session_id: int, stream: trio.abc.Stream
) -> SessionReports | None:
    """The reports of a session just connected over ``stream``, its
    ``link-connect`` given (None: the session is not reported)."""
    if reports is None:
        return None
    reporter = reports(session_id)
    addresses = socket_addresses(stream)
    if addresses is not None:
        reporter.connected(*addresses)
    return reporter


def _local_address(stream: trio.abc.Stream) -> str:
    """Our end of a TCP connection, "" for any other stream."""
    if not isinstance(stream, trio.SocketStream):
        return ""
    with contextlib.suppress(OSError):
        name = stream.socket.getsockname()
        if isinstance(name, tuple):
            return str(name[0])
    return ""


def connect_failed(
    client: Client, address: str, port: int, server_name: str, reason: str
) -> SessionFailure:
    """Log a connection attempt to ``address`` that failed (``reason``) before
    a session could start, as :func:`run_session` logs its own (the caller
    connected, e.g. racing several addresses), and the failure it means for
    ``client``'s recipients."""
    session_id = _connecting(client, address, port, server_name)
    failure = _unconnected(client, address, session_id, reason).failure
    assert failure is not None
    return failure


def _unconnected(client: Client, address: str, session_id: int, reason: str) -> SessionOutcome:
    failed = [event for event in client.fail(reason) if isinstance(event, SessionFailed)]
    log.info("%016x mta error reason=%s", session_id, failed[0].result.text)
    failure = SessionFailure(failed[0].result, failed[0].unsettled, before_transactions=True)
    return SessionOutcome(address, {}, frozenset(), failure, 0)
