"""The daemon's main task: everything ``mta`` runs, in one trio event loop.

:func:`serve` opens the spool (recovering it), opens the configuration's
generation (:mod:`mta.daemon.generation`), binds the local enqueue and
control sockets, and serves SMTP sessions (:mod:`mta.daemon.listening`) until
it is told to stop (SIGTERM / SIGINT, or cancellation).  SIGHUP reloads the
configuration (:mod:`mta.daemon.reload`).  Sessions still running at
shutdown get a short grace period, then a 421.  The queue runner delivers
locally (:class:`~mta.delivery.local.LocalDeliverer`) and relays
(:class:`~mta.relay.agent.RelayAgent`, made at the first relay attempt:
:mod:`mta.daemon.relaying`).  Host names come from the hosts file
(``MTA_HOSTS``, ``/etc/hosts`` by default), then DNS (``MTA_DNS``, else
``/etc/resolv.conf``), for the clients' reverse DNS and the relay routes alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import attrs
import trio

from mta.config.load import LoadResult
from mta.config.model import Config
from mta.control.commands import Controller
from mta.control.server import CONTROL_SOCKET, bind_control, serve_control
from mta.daemon.generation import Generation, Shared, open_parts
from mta.daemon.listening import Listening
from mta.daemon.relaying import LazyRelay
from mta.daemon.reload import Reloader
from mta.daemon.startup import bind_network, check_spool
from mta.delivery.fsidentity import drop_supplementary_groups
from mta.delivery.local import LocalDeliverer
from mta.dsn.notify import SpoolNotifier
from mta.errors import SpoolError
from mta.filters.outbound import ptr_name
from mta.log import get_logger
from mta.net.rdns import Rdns
from mta.scheduler.runner import Deliver, QueueRunner
from mta.server.listeners import Bound, SessionGate, bind_unix, session_capacity
from mta.server.offline import run_offline_scan
from mta.server.peers import ClientLimit
from mta.server.services import Endpoint, Services
from mta.server.timeouts import Timeouts
from mta.server.watchdog import Watchdog, tick_for
from mta.spool.lock import spool_lock
from mta.spool.spool import Spool

if TYPE_CHECKING:  # only test servers have faults; the daemon's web inbox is opt-in
    from mta.relay.agent import RelayAgent
    from mta.testing.faults import FaultSet
    from mta.testing.inbox import Inbox

__all__ = ["ENQUEUE_SOCKET", "DaemonOptions", "Running", "serve"]

log = get_logger("smtpd")

ENQUEUE_SOCKET = "enqueue.sock"
RELAY_QUIT_GRACE = 2.0  # seconds for idle relay sessions to QUIT at shutdown


@attrs.frozen
class DaemonOptions:
    """How the daemon runs: its spool, queue key, timeouts, sessions per client
    address (``MTA_MAX_CONN_PER_CLIENT``; None: the defaults of
    :mod:`mta.server.peers`), paused subsystems, and ``load``, which reads the
    configuration again for a reload (None: nothing to reload, a reload is
    refused).  ``embedded``: the daemon runs inside another program's process
    (:mod:`mta.testing`), which keeps its signal handlers and its groups;
    ``wrap_delivery`` wraps the local deliverer (given the spool)."""

    spool: str
    queue_key: bytes | None = None
    timeouts: Timeouts = attrs.field(factory=Timeouts)
    per_client: int | None = None
    paused: frozenset[str] = frozenset()
    load: Callable[[], LoadResult] | None = None
    embedded: bool = False  # inside another program (mta.testing): no signal handlers, groups kept
    wrap_delivery: Callable[[Deliver, Spool], Deliver] | None = None  # sees each local delivery
    faults: FaultSet | None = None  # a test server's injected failures (mta.testing)


@attrs.frozen(eq=False)
class Running:
    """What :func:`serve` reports once it accepts connections (for tests)."""

    listening: Listening
    gate: SessionGate
    reloader: Reloader
    stop: Callable[[], None]

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.listening.endpoints

    @property
    def services(self) -> Services:
        """The services new sessions get (those of the current configuration)."""
        return self.listening.generation.services


async def serve(
    config: Config,
    options: DaemonOptions,
    *,
    bound: list[Bound] | None = None,
    web: socket.socket | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until SIGTERM/SIGINT or cancellation.  ``bound``: the
    network sockets, bound beforehand (:func:`~mta.daemon.startup.bind_network`);
    when None, the spool is checked and they are bound here.  ``web``: a
    listening socket for the web inbox of local deliveries
    (:mod:`mta.daemon.webinbox`), None for none."""
    if bound is None:
        check_spool(options.spool)
        bound = bind_network(config)
    try:
        try:
            os.makedirs(options.spool, mode=0o711, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool {options.spool}: {exc.strerror}") from None
        if not options.embedded:
            drop_supplementary_groups()  # see mta.delivery.fsidentity
        with spool_lock(options.spool):
            await _serve_locked(config, options, bound, web, task_status)
    finally:
        for b in bound:
            b.socket.close()  # when not already closed by the listeners
        if web is not None:
            web.close()


async def _serve_locked(
    config: Config,
    options: DaemonOptions,
    network: list[Bound],
    web: socket.socket | None,
    task_status: trio.TaskStatus[Running],
) -> None:
    spool = await Spool.open(
        options.spool, compression=config.queue.compression, key=options.queue_key
    )
    tables, contexts = open_parts(config)
    current = [tables]  # the tables in force: closed at the end
    try:
        deliverer = LocalDeliverer(config, tables, spool, spool_dir=options.spool)
        rdns = Rdns.from_env()
        agent = LazyRelay(config, tables, spool, hosts=rdns.hosts, names=ptr_name(rdns))
        deliver: Deliver = deliverer
        inbox: Inbox | None = None
        if web is not None:  # imported only then: the web inbox is opt-in
            from mta.daemon.webinbox import InboxFeed, daemon_inbox

            inbox = daemon_inbox(config.web)
            deliver = InboxFeed(deliver, spool, inbox)
        if options.wrap_delivery is not None:
            deliver = options.wrap_delivery(deliver, spool)
        queue = QueueRunner(config, spool, deliver, relay=agent)
        agent.reschedule = queue.schedule_now  # mta max-deferred
        queue.scheduler.mda_paused = "mda" in options.paused
        queue.scheduler.mta_paused = "mta" in options.paused
        shared = Shared(
            spool=spool,
            queue=queue,
            rdns=rdns,
            timeouts=options.timeouts,
            watchdog=Watchdog(tick_for(options.timeouts.command, options.timeouts.data_block)),
            faults=options.faults,
        )
        generation = Generation(config, tables, contexts, shared)
        agent.filters = generation.filters  # relay actions' filters (smtp-out reports)
        notifier = SpoolNotifier(spool, generation.resolver, queue.committed)
        queue.notifier = notifier
        control = await bind_control(options.spool)
        try:
            enqueue = await bind_unix(os.path.join(options.spool, ENQUEUE_SOCKET))
            gate = SessionGate(session_capacity())
            if "smtp" in options.paused:
                gate.pause()
            clients = ClientLimit(gate.capacity, options.per_client)
            listening = Listening(generation, [*network, enqueue], gate, clients)
            controller = Controller(queue, spool, gate, tables)

            def made(relay: RelayAgent) -> None:  # mtactl show hosts, routes, ...
                controller.routes, controller.inventory = relay.backoff, relay.inventory

            agent.made = made

            def apply(new: Generation) -> None:
                current[0] = new.tables
                spool.set_compression(new.config.queue.compression)
                queue.reconfigure(new.config)
                deliverer.reconfigure(new.config, new.tables)
                agent.reconfigure(new.config, new.tables, new.filters)
                notifier.resolver = new.resolver
                controller.tables = new.tables

            reloader = Reloader(options.load, listening, shared, apply=[apply], settle=queue.settle)
            controller.reload = reloader.control
            try:
                async with trio.open_nursery() as deliveries:
                    if generation.filters:  # every filter registered before the first session
                        await deliveries.start(generation.filters.run)
                    await deliveries.start(agent.run)  # sessions kept open between messages
                    await deliveries.start(queue.run)
                    await deliveries.start(reloader.run)
                    deliveries.start_soon(serve_control, control, controller)
                    if web is not None and inbox is not None:
                        await deliveries.start(_serve_web, inbox, web)
                    await _serve_sessions(options, listening, reloader, task_status)
                    # deliveries in flight get the same grace as sessions to record
                    # their outcome; those still running then are tried again later
                    with trio.move_on_after(options.timeouts.shutdown):
                        await queue.drain()
                    with trio.move_on_after(RELAY_QUIT_GRACE):
                        await agent.close_sessions()  # idle relay sessions say QUIT
                    deliveries.cancel_scope.cancel()
            finally:
                await listening.aclose()
        finally:
            await control.aclose()
    finally:
        current[0].close()
        # the spool lock is ours: so are the sockets in it
        for name in (ENQUEUE_SOCKET, CONTROL_SOCKET):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(options.spool, name))
        log.info("mta: exiting")


async def _serve_sessions(
    options: DaemonOptions,
    listening: Listening,
    reloader: Reloader,
    task_status: trio.TaskStatus[Running],
) -> None:
    """Accept sessions until told to stop, then let the sessions finish."""
    gate = listening.gate
    watchdog = listening.generation.services.watchdog
    async with trio.open_nursery() as sessions:
        sessions.start_soon(watchdog.run)  # until the sessions are cut off
        async with trio.open_nursery() as accepting:
            listening.start(accepting, sessions)
            if not options.embedded:
                # the handlers are in place before "ready": a SIGTERM right after
                # it must not find the default action (death, sockets left behind)
                await accepting.start(_signals, accepting.cancel_scope, reloader.request)
            accepting.start_soon(
                run_offline_scan, options.spool, os.path.join(options.spool, ENQUEUE_SOCKET)
            )
            clients = listening.clients
            log.info(
                "mta: ready, %d session(s) at most, per client address %s",
                gate.capacity,
                f"{clients.remote} (loopback {clients.loopback})"
                if clients.remote
                else "unlimited",
            )
            task_status.started(Running(listening, gate, reloader, accepting.cancel_scope.cancel))
        # listeners are closed: give sessions a moment, then cut them off
        await listening.aclose()
        with trio.move_on_after(options.timeouts.shutdown):
            while gate.active:
                await trio.sleep(0.05)
        sessions.cancel_scope.cancel()


async def _serve_web(
    inbox: Inbox, sock: socket.socket, *, task_status: trio.TaskStatus[None]
) -> None:
    from mta.testing.web import serve_web

    host, port = sock.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_web, inbox, host, port, listening=sock))
        shown = f"[{host}]" if ":" in host else host
        log.info("mta: web inbox on http://%s:%d/", shown, port)
        task_status.started()


async def _signals(
    scope: trio.CancelScope,
    reload: Callable[[], None] = lambda: None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGTERM and SIGINT stop the daemon (``scope`` is cancelled); SIGHUP calls ``reload``."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("mta: received SIGHUP, reloading the configuration")
                reload()
                continue
            log.info("mta: received %s, shutting down", signal.Signals(signum).name)
            scope.cancel()
            return
