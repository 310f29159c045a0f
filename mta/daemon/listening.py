"""The daemon's listening sockets and their accept loops.

:class:`Listening` holds every bound socket (the ``listen on`` addresses and
the local enqueue socket), one accept loop each, and the generation new
sessions start in.  Each accepted connection becomes a session in the
generation current at that moment, and counts in it until it ends.  A reload
(:meth:`Listening.switch`) hands over a new generation with the sockets it
binds: sockets kept get their new settings, new ones get an accept loop, and
those no longer configured stop accepting and close, while their sessions
finish undisturbed.

Before a connection takes a place, its client must be under the limit of
sessions per address (:mod:`mta.server.peers`); one over it is answered 421
and closed at once.  A watcher task reports now and then what the session
cap and those limits left unsaid (:meth:`SessionGate.check`,
:meth:`ClientLimit.flush`).
"""

from __future__ import annotations

import contextlib
import errno
import socket

import trio

from mta.config.model import Listener, TlsMode
from mta.daemon.generation import Generation
from mta.log import get_logger
from mta.server.listeners import CAPACITY_ERRNOS, Bound, SessionGate
from mta.server.peers import ClientLimit, client_key, too_many
from mta.server.services import Endpoint
from mta.server.session import Session
from mta.server.stream import ConnectionStream

__all__ = ["ACCEPT_BURST", "WATCH_EVERY", "Listening", "describe"]

log = get_logger("smtpd")

ACCEPT_BURST = 16  # connections accepted in a row before the loop lets others run
WATCH_EVERY = 10.0  # seconds between two looks at what the limits left unlogged

Key = tuple[str, int]


def describe(listener: Listener | None, bound: Bound) -> str:
    """How the log names a bound socket: ``127.0.0.1:25``, ``[::1]:25``, ``socket PATH``."""
    if listener is None:
        return f"socket {bound.address}"
    host = f"[{bound.address}]" if ":" in bound.address else bound.address
    return f"{host}:{bound.port}"


class Listening:
    """Bound sockets, their accept loops and the current generation."""

    def __init__(
        self,
        generation: Generation,
        bounds: list[Bound],
        gate: SessionGate,
        clients: ClientLimit | None = None,
    ) -> None:
        self.generation = generation
        self.gate = gate
        self.clients = clients if clients is not None else ClientLimit(gate.capacity)
        if gate.detail is None:
            gate.detail = self.clients.busiest
        self._bounds: dict[Key, Bound] = {b.key: b for b in bounds}
        self._endpoints: dict[Key, Endpoint] = {
            key: generation.endpoint(b) for key, b in self._bounds.items()
        }
        self._loops: dict[Key, trio.CancelScope] = {}
        self._accepting: trio.Nursery | None = None
        self._sessions: trio.Nursery | None = None

    @property
    def bounds(self) -> dict[Key, Bound]:
        """The bound sockets by what they are bound to."""
        return dict(self._bounds)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(self._endpoints.values())

    def start(self, accepting: trio.Nursery, sessions: trio.Nursery) -> None:
        """Start an accept loop per socket in ``accepting``; sessions run in ``sessions``."""
        self._accepting, self._sessions = accepting, sessions
        for key in self._bounds:
            self._start_loop(key)
        accepting.start_soon(self._watch)

    async def _watch(self) -> None:
        while True:
            await trio.sleep(WATCH_EVERY)
            self.gate.check()
            self.clients.flush(trio.current_time())

    def switch(
        self, generation: Generation, bounds: list[Bound]
    ) -> tuple[list[Bound], list[Bound]]:
        """New sessions start in ``generation`` from now on, on ``bounds`` (those
        kept, with its settings, and new ones); the sockets not among them stop
        accepting and close.  Returns (opened, closed)."""
        wanted = {b.key: b for b in bounds}
        closed = [b for key, b in self._bounds.items() if key not in wanted]
        opened = [b for key, b in wanted.items() if key not in self._bounds]
        for bound in closed:
            scope = self._loops.pop(bound.key, None)
            if scope is not None:
                scope.cancel()
            trio.lowlevel.notify_closing(bound.socket)
            bound.socket.close()
        self.generation = generation
        self._bounds = wanted
        self._endpoints = {key: generation.endpoint(b) for key, b in wanted.items()}
        for bound in opened:
            self._start_loop(bound.key)
        return opened, closed

    async def aclose(self) -> None:
        """Stop accepting everywhere and close every socket."""
        for scope in self._loops.values():
            scope.cancel()
        self._loops.clear()
        for bound in self._bounds.values():
            await bound.aclose()

    def _start_loop(self, key: Key) -> None:
        assert self._accepting is not None
        scope = trio.CancelScope()
        self._loops[key] = scope
        self._accepting.start_soon(self._accept_loop, key, scope)
        bound = self._bounds[key]
        log.info("smtp: listening on %s", describe(bound.listener, bound))

    async def _accept_loop(self, key: Key, scope: trio.CancelScope) -> None:
        with scope, contextlib.suppress(trio.ClosedResourceError):
            await self._accept(self._bounds[key])

    async def _accept(self, bound: Bound) -> None:
        gate = self.gate
        clients = self.clients
        # the local socket is not limited per client, nor a proxy-v2 listener:
        # every connection comes from the proxy
        counted = bound.listener is not None and not bound.listener.proxy_v2
        burst = 0
        while True:
            # every listener waits for a free place, but only takes it with a
            # connection in hand: so an idle listener never starves the others
            if gate.paused and bound.listener is not None:
                # pause smtp: network connections wait in the listen backlog (local
                # submissions still go through, as mta-sendmail would block otherwise)
                await gate.wait_running()
            if gate.full:
                await gate.wait_free()
            burst += 1
            if burst >= ACCEPT_BURST:
                burst = 0
                await trio.lowlevel.checkpoint()
            try:
                try:
                    conn, address = bound.socket.accept()
                except BlockingIOError:
                    burst = 0
                    # wait, then look at the gate again: it may have been paused meanwhile
                    await trio.lowlevel.wait_readable(bound.socket)
                    continue
            except OSError as exc:
                if exc.errno in CAPACITY_ERRNOS:
                    log.warning("smtp: out of file descriptors, pausing incoming connections")
                    await trio.sleep(0.5)
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                if bound.socket.fileno() < 0:
                    return  # closed by a reload
                raise
            peer = client_key(address) if counted else None
            if peer is not None and not clients.enter(*peer):
                self._refuse(bound, conn)
                clients.refused(*peer, trio.current_time())
                continue
            if not gate.try_acquire():
                try:
                    # another listener took the last place meanwhile
                    await gate.acquire()
                except BaseException:
                    conn.close()
                    if peer is not None:
                        clients.leave(peer[0])
                    raise
            generation = self.generation
            endpoint = self._endpoints.get(bound.key)
            if endpoint is None:  # a reload closed this socket meanwhile
                conn.close()
                gate.release()
                if peer is not None:
                    clients.leave(peer[0])
                return
            generation.session_started()
            assert self._sessions is not None
            self._sessions.start_soon(
                _run_session,
                generation,
                endpoint,
                conn,
                address,
                gate,
                (clients, peer[0]) if peer is not None else None,
            )

    def _refuse(self, bound: Bound, conn: socket.socket) -> None:
        """Answer 421 to a client over its limit and close, without waiting
        (nothing on an smtps listener: the client expects a TLS handshake)."""
        listener = bound.listener
        if listener is not None and listener.tls is not TlsMode.SMTPS:
            hostname = listener.hostname or self.generation.services.hostname
            with contextlib.suppress(OSError):
                conn.send(too_many(hostname).encode(), socket.MSG_DONTWAIT)
        conn.close()


async def _run_session(
    generation: Generation,
    endpoint: Endpoint,
    conn: socket.socket,
    address: object,
    gate: SessionGate,
    counted: tuple[ClientLimit, str] | None,
) -> None:
    try:
        connection = ConnectionStream(conn)
        if endpoint.bound.listener is not None:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        await Session(generation.services, endpoint, connection, address).run()
    except Exception:
        log.exception("smtp: session failed")
    finally:
        gate.release()
        if counted is not None:
            clients, key = counted
            clients.leave(key)
        generation.session_ended()
