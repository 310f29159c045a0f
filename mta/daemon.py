"""The daemon: everything ``mta`` runs in one trio event loop.

:func:`serve` opens the spool (recovering it), opens the tables, binds every
listener plus the local enqueue socket, and serves SMTP sessions until it is
told to stop (SIGTERM / SIGINT, or cancellation).  Sessions still running at
shutdown get a short grace period, then a 421.  The queue runner delivers
locally (:class:`~mta.delivery.local.LocalDeliverer`) and relays
(:class:`~mta.relay.agent.RelayAgent`).  Host names come from the hosts file
(``MTA_HOSTS``, ``/etc/hosts`` by default), then DNS (``MTA_DNS``, else
``/etc/resolv.conf``), for the clients' reverse DNS and the relay routes alike.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import ssl
from collections.abc import Callable

import attrs
import trio

from mta.config.model import Config, Listener
from mta.control.commands import Controller
from mta.control.server import CONTROL_SOCKET, bind_control, serve_control
from mta.delivery.fsidentity import drop_supplementary_groups
from mta.delivery.local import LocalDeliverer
from mta.dsn.notify import SpoolNotifier
from mta.log import get_logger
from mta.net.rdns import Rdns
from mta.net.resolver import DnsResolver
from mta.net.tls import server_context
from mta.relay.agent import RelayAgent
from mta.relay.inventory import RelayInventory
from mta.rules.expand import Resolver
from mta.rules.tableset import TableSet
from mta.scheduler.runner import QueueRunner
from mta.server.listeners import (
    CAPACITY_ERRNOS,
    Bound,
    SessionGate,
    bind_listener,
    bind_unix,
    session_capacity,
)
from mta.server.offline import run_offline_scan
from mta.server.services import Endpoint, Services
from mta.server.session import Session
from mta.server.stream import ConnectionStream
from mta.server.timeouts import Timeouts
from mta.server.watchdog import Watchdog, tick_for
from mta.spool.lock import spool_lock
from mta.spool.spool import Spool
from mta.tables import local_addresses

__all__ = ["ENQUEUE_SOCKET", "DaemonOptions", "Running", "serve"]

log = get_logger("smtpd")

ENQUEUE_SOCKET = "enqueue.sock"
RELAY_QUIT_GRACE = 2.0  # seconds for idle relay sessions to QUIT at shutdown


@attrs.frozen
class DaemonOptions:
    spool: str
    queue_key: bytes | None = None
    timeouts: Timeouts = attrs.field(factory=Timeouts)
    paused: frozenset[str] = frozenset()


@attrs.frozen(eq=False)
class Running:
    """What :func:`serve` reports once it accepts connections (for tests)."""

    endpoints: tuple[Endpoint, ...]
    services: Services
    gate: SessionGate
    stop: Callable[[], None]


def _endpoint(
    bound: Bound, config: Config, tables: TableSet, contexts: dict[int, ssl.SSLContext | None]
) -> Endpoint:
    listener = bound.listener
    if listener is None:
        return Endpoint(bound, None, config.socket, None, None, None, None)
    return Endpoint(
        bound=bound,
        listener=listener,
        socket_listener=None,
        tls_context=contexts[id(listener)],
        auth_table=tables.get(listener.auth_table) if listener.auth_table else None,
        senders=tables.get(listener.senders) if listener.senders else None,
        hostnames=tables.get(listener.hostnames) if listener.hostnames else None,
    )


def _contexts(config: Config) -> dict[int, ssl.SSLContext | None]:
    contexts: dict[int, ssl.SSLContext | None] = {}
    for listener in config.listeners:
        contexts[id(listener)] = server_context(listener, config) if listener.pki else None
    return contexts


async def _bind_all(config: Config, spool_dir: str) -> list[Bound]:
    bound: list[Bound] = []
    try:
        for listener in config.listeners:
            bound += await bind_listener(listener)
        bound.append(await bind_unix(os.path.join(spool_dir, ENQUEUE_SOCKET)))
    except BaseException:
        for b in bound:
            await b.aclose()
        raise
    return bound


ACCEPT_BURST = 16  # connections accepted in a row before the loop lets others run


async def _accept_loop(
    services: Services, endpoint: Endpoint, gate: SessionGate, nursery: trio.Nursery
) -> None:
    bound = endpoint.bound
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
            raise
        if not gate.try_acquire():
            try:
                # another listener took the last place meanwhile
                await gate.acquire()
            except BaseException:
                conn.close()
                raise
        nursery.start_soon(_run_session, services, endpoint, conn, address, gate)


async def _run_session(
    services: Services,
    endpoint: Endpoint,
    conn: socket.socket,
    address: object,
    gate: SessionGate,
) -> None:
    try:
        connection = ConnectionStream(conn)
        if endpoint.bound.listener is not None:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        await Session(services, endpoint, connection, address).run()
    except Exception:
        log.exception("smtp: session failed")
    finally:
        gate.release()


def _describe(listener: Listener | None, bound: Bound) -> str:
    if listener is None:
        return f"socket {bound.address}"
    host = f"[{bound.address}]" if ":" in bound.address else bound.address
    return f"{host}:{bound.port}"


async def serve(
    config: Config,
    options: DaemonOptions,
    *,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until SIGTERM/SIGINT or cancellation."""
    os.makedirs(options.spool, mode=0o711, exist_ok=True)
    drop_supplementary_groups()  # see mta.delivery.fsidentity
    with spool_lock(options.spool):
        await _serve_locked(config, options, task_status)


async def _serve_locked(
    config: Config, options: DaemonOptions, task_status: trio.TaskStatus[Running]
) -> None:
    contexts = _contexts(config)
    spool = await Spool.open(
        options.spool, compression=config.queue.compression, key=options.queue_key
    )
    tables = TableSet.open(config, config.hostname, local_addresses())
    try:
        resolver = Resolver(config, tables, config.hostname)
        deliverer = LocalDeliverer(config, tables, spool, spool_dir=options.spool)
        inventory = RelayInventory(max_deferred=config.mta_max_deferred)
        rdns = Rdns.from_env()
        agent = RelayAgent(
            config,
            tables,
            spool,
            resolver=DnsResolver.from_env(),
            hosts=rdns.hosts,
            inventory=inventory,
        )
        queue = QueueRunner(config, spool, deliverer, relay=agent)
        agent.reschedule = queue.schedule_now  # mta max-deferred
        queue.notifier = SpoolNotifier(spool, resolver, queue.committed)
        queue.scheduler.mda_paused = "mda" in options.paused
        queue.scheduler.mta_paused = "mta" in options.paused
        services = Services(
            config=config,
            spool=spool,
            tables=tables,
            resolver=resolver,
            rdns=rdns,
            timeouts=options.timeouts,
            hostname=config.hostname,
            watchdog=Watchdog(tick_for(options.timeouts.command, options.timeouts.data_block)),
            queue=queue,
        )
        control = await bind_control(options.spool)
        try:
            bound = await _bind_all(config, options.spool)
            endpoints = tuple(_endpoint(b, config, tables, contexts) for b in bound)
            gate = SessionGate(session_capacity())
            if "smtp" in options.paused:
                gate.pause()
            async with trio.open_nursery() as deliveries:
                await deliveries.start(agent.run)  # sessions kept open between messages
                await deliveries.start(queue.run)
                controller = Controller(
                    queue, spool, gate, tables, routes=agent.backoff, inventory=inventory
                )
                deliveries.start_soon(serve_control, control, controller)
                await _serve_sessions(services, options, endpoints, gate, task_status)
                # deliveries in flight get the same grace as sessions to record
                # their outcome; those still running then are tried again later
                with trio.move_on_after(options.timeouts.shutdown):
                    await queue.drain()
                with trio.move_on_after(RELAY_QUIT_GRACE):
                    await agent.close_sessions()  # idle relay sessions say QUIT
                deliveries.cancel_scope.cancel()
        finally:
            await control.aclose()
    finally:
        tables.close()
        # the spool lock is ours: so are the sockets in it
        for name in (ENQUEUE_SOCKET, CONTROL_SOCKET):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(options.spool, name))
        log.info("mta: exiting")


async def _serve_sessions(
    services: Services,
    options: DaemonOptions,
    endpoints: tuple[Endpoint, ...],
    gate: SessionGate,
    task_status: trio.TaskStatus[Running],
) -> None:
    """Accept sessions until told to stop, then let the sessions finish."""
    async with trio.open_nursery() as sessions:
        sessions.start_soon(services.watchdog.run)  # until the sessions are cut off
        async with trio.open_nursery() as nursery:
            for endpoint in endpoints:
                nursery.start_soon(_accept_loop, services, endpoint, gate, sessions)
                log.info("smtp: listening on %s", _describe(endpoint.listener, endpoint.bound))
            # the handlers are in place before "ready": a SIGTERM right after
            # it must not find the default action (death, sockets left behind)
            await nursery.start(_signals, nursery.cancel_scope)
            nursery.start_soon(
                run_offline_scan, options.spool, os.path.join(options.spool, ENQUEUE_SOCKET)
            )
            log.info("mta: ready, %d session(s) at most", gate.capacity)
            task_status.started(Running(endpoints, services, gate, nursery.cancel_scope.cancel))
        # listeners are closed: give sessions a moment, then cut them off
        for endpoint in endpoints:
            await endpoint.bound.aclose()
        with trio.move_on_after(options.timeouts.shutdown):
            while gate.active:
                await trio.sleep(0.05)
        sessions.cancel_scope.cancel()


async def _signals(
    scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("mta: received %s, shutting down", signal.Signals(signum).name)
            scope.cancel()
            return
