"""Configuration reload: SIGHUP and ``mtactl reload``.

:meth:`Reloader.reload` reads the configuration file again (with the command
line's ``-D`` macros), opens its tables and TLS contexts and binds the
listening addresses it adds, all before anything changes.  If a step fails,
``config reload failed`` is logged with every error (``file:line: message``)
and the running configuration stays, whole.  Otherwise, at once:

- new sessions start in the new generation; sessions in flight finish in the
  one they started with (:mod:`mta.daemon.generation`);
- sockets of listeners that went away stop accepting and close, new ones
  accept, kept ones take their new settings (:meth:`Listening.switch`).  A
  socket is kept when the new configuration listens on its address and port
  again; one a ``port 0`` line got (a port the system picked) is kept when
  the same line, unchanged, is still there (:func:`rebind`), so its clients
  find the server where it was;
- the queue runner, local delivery, the relay agent, notices and the control
  socket use the new configuration and tables (the ``apply`` callbacks): a
  queued envelope is carried out by the new definition of its action at its
  next attempt, as smtpd.conf(5) describes for a restart.

``config reloaded`` is logged.  The replaced generation's tables are closed,
and its filter processes stopped, once its last session has ended and the
deliveries started before the reload are over (a relay in flight keeps
reporting to the filters it started with).  What a reload cannot change
(the queue encryption key, read once at start; the ``web inbox`` line, bound
once at start) makes it fail with a message saying to restart.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from mta.config.load import LoadResult
from mta.config.model import Config, Listener
from mta.daemon.generation import Generation, Shared, open_generation
from mta.daemon.listening import Listening, describe
from mta.errors import ConfigErrors, ControlError, MTAError
from mta.filters.process import FilterFailed
from mta.log import get_logger
from mta.server.listeners import Bound, bind_address, listen_addresses

__all__ = ["Apply", "ReloadResult", "Reloader", "rebind"]

log = get_logger("smtpd")

Apply = Callable[[Generation], None]
Load = Callable[[], LoadResult]


@attrs.frozen
class ReloadResult:
    """What a reload did: ``errors`` when it failed, else the sockets it
    opened and closed (as the log names them)."""

    errors: tuple[str, ...] = ()
    opened: tuple[str, ...] = ()
    closed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """What changed, for the log line and ``mtactl reload``."""
        text = ""
        if self.opened:
            text += f", listening on {' '.join(self.opened)}"
        if self.closed:
            text += f", closed {' '.join(self.closed)}"
        return text


def rebind(
    config: Config, current: dict[tuple[str, int], Bound]
) -> tuple[list[Bound], list[Bound]]:
    """The sockets ``config`` listens on: those of ``current`` it binds again
    (given their new listener, see :func:`_kept`), the local socket, and new
    ones bound now.  Returns (all of them, the new ones).  ListenError if one
    cannot be bound; the new ones are closed then (blocking: names may be
    looked up)."""
    bounds = [b for b in current.values() if b.listener is None]
    opened: list[Bound] = []
    claimed: set[tuple[str, int]] = set()
    try:
        for listener in config.listeners:
            for address in listen_addresses(listener):
                kept = _kept(current, claimed, listener, address.address)
                if kept is not None:
                    bound = attrs.evolve(kept, listener=listener, local=address.local)
                else:
                    bound = bind_address(listener, address)
                    opened.append(bound)
                bounds.append(bound)
                claimed.add(bound.key)
    except BaseException:
        for bound in opened:
            bound.socket.close()
        raise
    return bounds, opened


def _kept(
    current: dict[tuple[str, int], Bound],
    claimed: set[tuple[str, int]],
    listener: Listener,
    address: str,
) -> Bound | None:
    """The running socket, not yet claimed, that ``listener`` binds again on
    ``address``: the one on that address and port; for ``port 0``, the one the
    same line (equal in every setting) got, whatever port the system picked
    for it.  None: a new socket is bound."""
    port = listener.effective_port
    if port != 0:
        kept = current.get((address, port))
        if kept is not None and kept.listener is not None and kept.key not in claimed:
            return kept
        return None
    for kept in current.values():
        if kept.address == address and kept.listener == listener and kept.key not in claimed:
            return kept
    return None


def _unchangeable(old: Config, new: Config) -> str | None:
    """Why ``new`` cannot replace ``old`` without a restart, or None."""
    if (old.queue.encryption, old.queue.key) != (new.queue.encryption, new.queue.key):
        return "queue encryption cannot change while mta runs (the key is read at start): restart"
    if old.web != new.web:
        return (
            "the web inbox line cannot change while mta runs (its socket is bound at start):"
            " restart to apply it"
        )
    return None


class Reloader:
    """Reloads the configuration of a running daemon (one reload at a time)."""

    def __init__(
        self,
        load: Load | None,
        listening: Listening,
        shared: Shared,
        *,
        apply: Sequence[Apply] = (),
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._load = load
        self.listening = listening
        self.shared = shared
        self._apply = tuple(apply)
        self._settle = settle  # waits for the deliveries in flight
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._retiring: list[Generation] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host reloads asked for by signal, and the retirement of replaced
        generations, until cancelled (their tables are closed then)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for generation in self._retiring:
                generation.filters.stop()
                generation.tables.close()
            self._retiring.clear()

    def request(self) -> None:
        """Reload soon (from a signal handler's task)."""
        if self._nursery is not None:
            self._nursery.start_soon(self.reload)

    async def reload(self) -> ReloadResult:
        """Reload now; the result says what happened (it is logged too)."""
        async with self._lock:
            try:
                result = await self._reload()
            except Exception as exc:  # a bug must not take the running daemon down
                log.exception("mta: config reload failed")
                result = ReloadResult(errors=(f"internal error: {exc!r}",))
                return result
        if result.ok:
            log.info("mta: config reloaded%s", result.summary())
        else:
            for error in result.errors:
                log.error("mta: config reload failed: %s", error)
        return result

    async def _reload(self) -> ReloadResult:
        if self._load is None:
            return ReloadResult(errors=("no configuration file to reload",))
        try:
            loaded = await trio.to_thread.run_sync(self._load)
        except ConfigErrors as exc:
            return ReloadResult(errors=tuple(str(e) for e in exc.errors))
        for note in loaded.warnings:
            log.warning("mta: %s", note)
        old = self.listening.generation
        problem = _unchangeable(old.config, loaded.config)
        if problem is not None:
            return ReloadResult(errors=(problem,))
        try:
            generation = await trio.to_thread.run_sync(open_generation, loaded.config, self.shared)
        except (MTAError, OSError, ssl.SSLError) as exc:
            return ReloadResult(errors=(str(exc),))
        if generation.filters:
            failure = await self._start_filters(generation)
            if failure is not None:
                generation.tables.close()
                return ReloadResult(errors=(failure,))
        try:
            bounds, _ = await trio.to_thread.run_sync(rebind, loaded.config, self.listening.bounds)
        except MTAError as exc:
            generation.filters.stop()
            generation.tables.close()
            return ReloadResult(errors=(str(exc),))
        opened, closed = self.listening.switch(generation, bounds)
        for apply in self._apply:
            apply(generation)
        self._retire(old)
        return ReloadResult(
            opened=tuple(describe(b.listener, b) for b in opened),
            closed=tuple(describe(b.listener, b) for b in closed),
        )

    async def _start_filters(self, generation: Generation) -> str | None:
        """Start the new configuration's filter processes (in this task's
        nursery, for the generation's life); why they could not, or None."""
        if self._nursery is None:
            return "the daemon is stopping"
        failures: list[str] = []
        try:
            await self._nursery.start(generation.filters.run)
        except* FilterFailed as group:
            failures += [str(exc) for exc in group.exceptions]
        return "; ".join(failures) or None

    async def control(self) -> str:
        """``mtactl reload``: reload, and say so; ControlError with the errors."""
        result = await self.reload()
        if not result.ok:
            raise ControlError("config reload failed:\n" + "\n".join(result.errors))
        return f"config reloaded{result.summary()}\n"

    def _retire(self, old: Generation) -> None:
        self._retiring.append(old)
        if self._nursery is not None:
            self._nursery.start_soon(self._close_when_unused, old)

    async def _close_when_unused(self, old: Generation) -> None:
        await old.wait_idle()
        if self._settle is not None:
            await self._settle()  # relays in flight report to the old filters
        old.filters.stop()
        self._retiring.remove(old)
        await trio.to_thread.run_sync(old.tables.close)
