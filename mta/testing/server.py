"""mta in a test suite: :class:`MailServer` (a thread) and :func:`serve` (trio).

Both run the daemon's own main task (:func:`mta.daemon.serve.serve`: the
listeners, the sessions, the rules, a spool in a private temporary directory
removed at the stop, the queue and local delivery) bound to loopback on a
port the system picks, and feed the :class:`~mta.testing.inbox.Inbox`
(:mod:`mta.testing.delivery`).  Nothing in the host process changes: no
signal handler, no change of user or groups, no logging configuration (the
server's lines are in :attr:`MailServer.log_lines`, :mod:`mta.testing.logs`).

A configuration given as text is checked before anything starts: its
mistakes raise :class:`~mta.errors.ConfigErrors` (one ``file:line: message``
per problem) in the caller's thread.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from functools import partial
from types import TracebackType
from typing import Any, Self

import attrs
import trio

from mta.config.load import load_text
from mta.config.model import Config
from mta.daemon.serve import DaemonOptions, Running
from mta.daemon.serve import serve as serve_daemon
from mta.daemon.startup import bind_network
from mta.errors import MTAError
from mta.scheduler.runner import Deliver
from mta.server.listeners import Bound
from mta.server.timeouts import Timeouts
from mta.spool.spool import Spool
from mta.testing import logs
from mta.testing.delivery import InboxDelivery, catch_all_config
from mta.testing.faults import Fault, FaultSet
from mta.testing.inbox import Inbox

__all__ = ["MailServer", "serve"]

LOOPBACK = "127.0.0.1"
CONFIG_NAME = "<MailServer config>"  # the file name in configuration errors
SHUTDOWN_GRACE = 1.0  # seconds sessions still open get at the stop (the daemon: 10)
START_TIMEOUT = 30.0  # seconds a start may take before it is a failure


def _optional(module: str, what: str) -> Any:
    """``module`` of mta.testing, or MTAError saying ``what`` is not available."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise MTAError(f"{what} is not available: {exc}") from None
        raise MTAError(f"{what} is not available in this installation of mta") from None


def _spool_parent() -> str | None:
    """Where test spools go: memory (``/dev/shm``) when there is one, where
    creating the spool's directories and their fsyncs cost next to nothing
    (a test spool need not outlive a crash); else the temporary directory."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


class MailServer:
    """An SMTP server for tests, on loopback, on a port the system picks.

    With no ``config`` it takes mail for any recipient and keeps every message
    in :attr:`inbox`; with ``config`` (smtpd.conf text, ``port 0`` allowed in
    ``listen on``) it runs that configuration, and whatever its actions
    deliver locally is also in :attr:`inbox`.  ``hostname``: the server's
    name (its banner and ``Received:`` lines).  ``web``: also serve the web
    inbox (:attr:`web_url`) on loopback, at a port the system picks (a
    ``web inbox on`` line in ``config`` serves it where and as that line
    says).  A context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self, config: str | None = None, *, hostname: str = "mta.test", web: bool = False
    ) -> None:
        self.config = config
        self.hostname = hostname
        self.web = web
        self.inbox = Inbox()
        self._log = logs.LogSink()
        self._faults = FaultSet()  # what the sessions ask (mta.testing.faults)
        self._address: tuple[str, int] | None = None
        self._web_address: tuple[str, int] | None = None
        self._web_at: tuple[str, int] | None = None  # where to serve the web inbox, if anywhere
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._running = False

    # -- what a test reads ----------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on (``127.0.0.1``)."""
        return self._bound()[0]

    @property
    def port(self) -> int:
        """The port the server listens on (its first, when a configuration has several)."""
        return self._bound()[1]

    @property
    def web_url(self) -> str:
        """The web inbox, ``http://127.0.0.1:PORT/`` (a server started with
        ``web=True``, or whose configuration has a ``web inbox on`` line: then
        at that line's address and port)."""
        if not self.web and self._web_at is None:
            raise MTAError("this server has no web inbox: start it with MailServer(web=True)")
        if self._web_address is None:
            raise MTAError("the server is not running")
        host, port = self._web_address
        return f"http://{host}:{port}/"

    @property
    def log_lines(self) -> list[str]:
        """What the server logged so far, one line each (``smtp connected ...``)."""
        return self._log.lines

    def _bound(self) -> tuple[str, int]:
        if self._address is None:
            raise MTAError("the server is not running")
        return self._address

    # -- faults -----------------------------------------------------------------

    def fail(
        self,
        *,
        rcpt: str | None = None,
        at: str = "rcpt",
        reply: str | None = None,
        disconnect: bool = False,
        delay: float = 0.0,
        times: int | None = None,
    ) -> None:
        """From now on, fail at ``at`` (``connect``, ``mail``, ``rcpt``, ``data``,
        ``commit``) for ``rcpt`` (an address or an fnmatch pattern, any case;
        None: every recipient) with ``reply`` (a full reply line), or by
        closing the connection (``disconnect``), after ``delay`` seconds; for
        ``times`` commands only (None: until :meth:`clear_faults`).  The first
        fault added that matches wins (:mod:`mta.testing.faults`); ValueError
        for a fault that makes no sense."""
        self._faults.add(
            Fault(rcpt=rcpt, at=at, reply=reply, disconnect=disconnect, delay=delay, times=times)
        )

    def clear_faults(self) -> None:
        """Forget every fault added by :meth:`fail`."""
        self._faults.clear()

    # -- in a thread ------------------------------------------------------------

    def start(self) -> Self:
        """Start the server on a thread of its own; return once it accepts mail.
        ConfigErrors for a bad configuration, ListenError, MTAError."""
        if self._running:
            raise MTAError("the server is already running")
        config, bound, spool = self._prepare()
        ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(config, bound, spool, ready),
            name=f"mta MailServer {self.hostname}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT) or self._error is not None:
            self._thread.join(START_TIMEOUT)
            error, self._error = self._error, None
            if isinstance(error, Exception):
                raise error
            raise MTAError(f"the test server did not start: {error!r}")
        self._running = True
        return self

    def stop(self) -> None:
        """Stop the server (sessions still open get a moment, then a 421) and
        remove its spool; the inbox keeps its messages.  Nothing if not running."""
        thread, token, stop = self._thread, self._token, self._stop
        if thread is None:
            return
        if token is not None and stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(stop.set)
        thread.join()
        self._thread = self._token = None
        self._running = False
        error, self._error = self._error, None
        if error is not None:
            raise MTAError(f"the test server failed: {error!r}") from error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(
        self, config: Config, bound: list[Bound], spool: str, ready: threading.Event
    ) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                await nursery.start(self._run, config, bound, spool)
                ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # given to the thread that started or stops it
            self._error = exc
        finally:
            ready.set()

    # -- the server itself ------------------------------------------------------

    def _prepare(self) -> tuple[Config, list[Bound], str]:
        """The checked configuration, its sockets bound, and a new spool directory."""
        text = catch_all_config(LOOPBACK) if self.config is None else self.config
        config = load_text(text, CONFIG_NAME, hostname=self.hostname).config
        self._web_at = (LOOPBACK, 0) if self.web else None
        if config.web is not None:  # the configuration's line: its address, port and bound
            self._web_at = (config.web.address, config.web.port)
            self.inbox.keep = config.web.keep
        if self._web_at is not None:
            _optional("mta.testing.web", "the web inbox")
        bound = bind_network(config)
        if not bound:
            raise MTAError("the configuration has no 'listen on': the test server cannot take mail")
        return config, bound, tempfile.mkdtemp(prefix="mta-test-", dir=_spool_parent())

    async def _run(
        self,
        config: Config,
        bound: list[Bound],
        spool: str,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until :attr:`_stop` is set (or cancelled), then clean up."""
        token = logs.current.set(self._log)  # this task's children log to this server
        logs.attach()
        try:

            def wrap(deliver: Deliver, queue: Spool) -> Deliver:
                return InboxDelivery(deliver, queue, self.inbox)

            options = DaemonOptions(
                spool=spool,
                timeouts=attrs.evolve(Timeouts.from_env(), shutdown=SHUTDOWN_GRACE),
                embedded=True,
                wrap_delivery=wrap,
                faults=self._faults,
            )
            self._stop = trio.Event()
            async with trio.open_nursery() as outer:
                if self._web_at is not None:
                    web = _optional("mta.testing.web", "the web inbox")
                    self._web_address = await outer.start(web.serve_web, self.inbox, *self._web_at)
                async with trio.open_nursery() as inner:
                    running: Running = await inner.start(
                        partial(serve_daemon, config, options, bound=bound)
                    )
                    first = next(e.bound for e in running.endpoints if not e.is_socket)
                    self._address = (first.address, first.port)
                    task_status.started()
                    await self._stop.wait()
                    running.stop()
                outer.cancel_scope.cancel()  # the web inbox
        finally:
            self._address = self._web_address = None
            logs.detach()
            logs.current.reset(token)
            for b in bound:
                b.socket.close()  # when the daemon did not start to close them
            shutil.rmtree(spool, ignore_errors=True)


@contextlib.asynccontextmanager
async def serve(
    config: str | None = None, *, hostname: str = "mta.test", web: bool = False
) -> AsyncIterator[MailServer]:
    """The same server as :class:`MailServer` in the calling trio event loop
    (no thread): ``async with serve() as server: ...``."""
    server = MailServer(config, hostname=hostname, web=web)
    prepared = server._prepare()
    async with trio.open_nursery() as nursery:
        await nursery.start(server._run, *prepared)
        server._running = True
        try:
            yield server
        finally:
            server._running = False
            if server._stop is not None:
                server._stop.set()
