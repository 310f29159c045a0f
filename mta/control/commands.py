"""What the daemon does for each ``mtactl`` verb (smtpctl(8)'s, see reference §9).

A :class:`Controller` holds the running daemon's parts (queue runner, spool,
session gate, tables) and carries out one request: it writes the command's
output through ``write`` and raises :class:`~mta.errors.ControlError` with a
message for the user when the request is refused or fails.

Envelope arguments are as smtpctl takes them: a 16-digit envelope id, an
8-digit message id (every envelope of that message) or ``all``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from mta import threads
from mta.control.queueview import RunState, envelope_dump, queue_line
from mta.envelope import Envelope
from mta.errors import ControlError, SpoolError, SpoolNotFound, TableError
from mta.log import get_logger, quote, visible
from mta.rules.tableset import TableSet
from mta.scheduler.core import Entry
from mta.scheduler.runner import QueueRunner, duration_text
from mta.server.listeners import SessionGate
from mta.spool.spool import Spool
from mta.spool.store import read_chunks

if TYPE_CHECKING:  # the relay side is imported with the relay agent (mta.daemon.relaying)
    from mta.relay.backoff import RouteBackoff
    from mta.relay.inventory import RelayInventory

__all__ = ["Controller", "Write", "parse_ids"]

Write = Callable[[bytes], Awaitable[None]]

MONITOR_INTERVAL = 1.0

log = get_logger("control")


def parse_ids(word: str) -> tuple[str, int]:
    """``("all", 0)``, ``("msgid", N)`` or ``("evpid", N)`` for an argument."""
    if word == "all":
        return "all", 0
    try:
        value = int(word, 16)
    except ValueError:
        raise ControlError(f"invalid id: {word}") from None
    if word.startswith(("-", "+", "0x")) or not 0 < len(word) <= 16:
        raise ControlError(f"invalid id: {word}")
    return ("msgid", value) if len(word) <= 8 else ("evpid", value)


def _since(when: float | None, now: float) -> str:
    """smtpctl's ``lastconn=``: how long ago, ``-`` for never."""
    return "-" if when is None else duration_text(now - when)


class Controller:
    """Carries out control requests against one running daemon."""

    def __init__(
        self,
        runner: QueueRunner,
        spool: Spool,
        gate: SessionGate,
        tables: TableSet,
        *,
        routes: RouteBackoff | None = None,
        inventory: RelayInventory | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runner = runner
        self.spool = spool
        self.gate = gate
        self.tables = tables
        self.routes = routes  # the relay agent's route back-off
        self.inventory = inventory  # the relay agent's hosts, relays and hoststats
        self.clock = clock
        # reloads the configuration: what to print, or ControlError saying why not
        self.reload: Callable[[], Awaitable[str]] | None = None

    async def execute(self, argv: list[str], write: Write) -> None:
        if not argv:
            raise ControlError("empty request")
        verb, args = argv[0], argv[1:]
        if verb == "show":
            await self._show(args, write)
        elif verb in ("schedule", "remove", "discover"):
            await self._envelopes(verb, args, write)
        elif verb in ("pause", "resume"):
            await self._pause(verb, args, write)
        elif verb == "update":
            await self._update(args, write)
        elif verb == "log":
            await self._log(args, write)
        elif verb == "monitor":
            await self._monitor(write)
        elif verb == "reload" and not args:
            if self.reload is None:
                raise ControlError("this server cannot reload its configuration")
            await write((await self.reload()).encode("utf-8", "replace"))
        else:
            raise ControlError(f"unknown command: {verb}")

    # -- show ------------------------------------------------------------------

    async def _show(self, args: list[str], write: Write) -> None:
        what = args[0] if args else ""
        if what == "queue" and len(args) <= 2:
            await self._show_queue(args[1:], write)
        elif what == "envelope" and len(args) == 2:
            kind, value = parse_ids(args[1])
            if kind != "evpid":
                raise ControlError("show envelope needs an envelope id")
            envelope = await self._load(value)
            await write(envelope_dump(envelope).encode("utf-8", "surrogateescape"))
        elif what == "message" and len(args) == 2:
            await self._show_message(args[1], write)
        elif what == "status" and len(args) == 1:
            await write(self._status().encode("ascii"))
        elif what == "stats" and len(args) == 1:
            await write(self._stats().encode("ascii"))
        elif what == "routes" and len(args) == 1:
            await write(self._routes().encode("utf-8", "replace"))
        elif what in ("hosts", "relays", "hoststats") and len(args) == 1:
            show = {"hosts": self._hosts, "relays": self._relays, "hoststats": self._hoststats}
            await write(show[what]().encode("utf-8", "replace"))
        else:
            raise ControlError(
                "usage: show queue [msgid] | envelope EVPID | message ID | status | stats"
                " | routes | hosts | relays | hoststats"
            )

    def _routes(self) -> str:
        """The relay routes disabled after failures, one line each."""
        if self.routes is None:
            return ""
        lines = []
        for route in self.routes.disabled(self.clock()):
            address, port, source = route.key
            lines.append(
                f"{address} port={port} source={source or '-'} penalty={route.penalty} "
                f"disabled={route.seconds_left}s error={quote(route.error.text)}\n"
            )
        return "".join(lines)

    def _hosts(self) -> str:
        """The remote hosts the relay agent knows, as smtpctl's ``show hosts``."""
        if self.inventory is None:
            return ""
        now = self.clock()
        return "".join(
            f"{host.address} {visible(host.name)} refcount={host.refcount} nconn={host.nconn} "
            f"lastconn={_since(host.lastconn, now)}\n"
            for host in self.inventory.hosts()
        )

    def _relays(self) -> str:
        """The relays and what they wait for, as smtpctl's ``show relays``
        (without its connector lines: mta has no connectors)."""
        if self.inventory is None:
            return ""
        from mta.relay.inventory import TEXT_MAX

        now = self.clock()
        return "".join(
            f"{visible(relay.text, TEXT_MAX)} refcount={relay.refcount} ntask={relay.ntask} "
            f"nconn={relay.nconn} lastconn={_since(relay.lastconn, now)} timeout=- "
            f"wait={','.join(wait.value for wait in relay.wait)}\n"
            for relay in self.inventory.relays()
        )

    def _hoststats(self) -> str:
        """The last result per host and when, as smtpctl's ``show hoststats``."""
        if self.inventory is None:
            return ""
        from mta.relay.inventory import TEXT_MAX

        return "".join(
            f"{visible(stat.name)}|{int(stat.time)}|{visible(stat.error, TEXT_MAX)}\n"
            for stat in self.inventory.hoststats()
        )

    def _selected(self, word: str) -> list[int]:
        kind, value = parse_ids(word)
        scheduler = self.runner.scheduler
        if kind == "all":
            return [entry.evpid for entry in scheduler.entries()]
        if kind == "msgid":
            return scheduler.envelopes_of(value)
        return [value] if value in scheduler else []

    async def _show_queue(self, args: list[str], write: Write) -> None:
        evpids = self._selected(args[0] if args else "all")
        now = int(self.clock())
        lines = []
        for evpid in evpids:
            entry = self.runner.scheduler.get(evpid)
            if entry is None:
                continue
            try:
                envelope = await self.spool.load_envelope(evpid)
            except SpoolNotFound:
                continue  # delivered meanwhile
            except SpoolError as exc:
                lines.append(f"{evpid:016x}|error|{exc}")
                continue
            lines.append(queue_line(envelope, self._run_state(entry, now)))
            if len(lines) >= 256:
                await write("".join(line + "\n" for line in lines).encode("utf-8", "replace"))
                lines.clear()
        if lines:
            await write("".join(line + "\n" for line in lines).encode("utf-8", "replace"))

    @staticmethod
    def _run_state(entry: Entry, now: int) -> RunState:
        if entry.inflight:
            return RunState("inflight", max(0, now - entry.sched), entry.suspended, entry.expire)
        return RunState("pending", max(0, entry.sched - now), entry.suspended, entry.expire)

    async def _load(self, evpid: int) -> Envelope:
        if evpid not in self.runner.scheduler:
            raise ControlError(f"no such envelope: {evpid:016x}")
        try:
            return await self.spool.load_envelope(evpid)
        except SpoolNotFound:
            raise ControlError(f"no such envelope: {evpid:016x}") from None
        except SpoolError as exc:
            raise ControlError(f"cannot read envelope {evpid:016x}: {exc}") from None

    async def _show_message(self, word: str, write: Write) -> None:
        kind, value = parse_ids(word)
        if kind == "all":
            raise ControlError("show message needs a message or envelope id")
        msgid = value >> 32 if kind == "evpid" else value
        if not self.runner.scheduler.envelopes_of(msgid):
            raise ControlError(f"no such message: {msgid:08x}")
        try:
            stream = await self.spool.open_message(msgid)
        except SpoolNotFound:
            raise ControlError(f"no such message: {msgid:08x}") from None
        except SpoolError as exc:
            raise ControlError(f"cannot read message {msgid:08x}: {exc}") from None
        try:
            async for chunk in read_chunks(stream):
                await write(chunk)
        except SpoolError as exc:
            raise ControlError(f"cannot read message {msgid:08x}: {exc}") from None
        finally:
            await threads.run_sync(stream.close)

    def _status(self) -> str:
        scheduler = self.runner.scheduler
        mta_state = "paused" if scheduler.mta_paused else "running"
        if self.runner.relay is None:
            mta_state = "paused (no relay agent)"
        return (
            f"MDA {'paused' if scheduler.mda_paused else 'running'}\n"
            f"MTA {mta_state}\n"
            f"SMTP {'paused' if self.gate.paused else 'running'}\n"
        )

    def _stats(self) -> str:
        stats, commits = self.runner.stats, self.spool.stats
        scheduler = self.runner.scheduler
        values = [
            ("queue.envelope", len(scheduler)),
            ("scheduler.inflight", scheduler.inflight),
            ("scheduler.suspended", scheduler.suspended),
            ("scheduler.delivery.ok", stats.delivered),
            ("scheduler.delivery.tempfail", stats.tempfailed),
            ("scheduler.delivery.permfail", stats.permfailed),
            ("scheduler.envelope.expired", stats.expired),
            ("scheduler.envelope.removed", stats.removed),
            ("scheduler.notice", stats.notices),
            ("smtp.session", self.gate.active),
            # the group commit (mta.spool.commit): messages, thread trips, fsyncs
            ("spool.commit", commits.commits),
            ("spool.commit.batches", commits.batches),
            ("spool.commit.batch.max", commits.max_batch),
            ("spool.commit.failed", commits.failures),
            ("spool.fsync.dir", commits.dir_fsyncs),
            ("spool.fsync.file", commits.file_fsyncs),
        ]
        return "".join(f"{name}={value}\n" for name, value in values)

    # -- schedule, remove, discover, pause/resume envelope ----------------------

    async def _envelopes(self, verb: str, args: list[str], write: Write) -> None:
        if len(args) != 1:
            raise ControlError(f"usage: {verb} EVPID|MSGID|all")
        runner = self.runner
        scheduler = runner.scheduler
        if verb == "discover":
            count = await self._discover(args[0])
        else:
            evpids = self._selected(args[0])
            if verb == "schedule":
                count = scheduler.schedule_now(evpids, self.clock())
            else:
                count = scheduler.remove(evpids)
        runner.poke()
        done = {"schedule": "scheduled", "remove": "removed", "discover": "discovered"}[verb]
        await write(f"{count} envelope(s) {done}\n".encode("ascii"))

    async def _discover(self, word: str) -> int:
        """Load envelopes from the spool that the scheduler does not know (a
        message put back into the queue by hand)."""
        kind, value = parse_ids(word)
        if kind == "all":
            raise ControlError("discover needs a message or envelope id")
        msgid = value if kind == "msgid" else value >> 32
        try:  # that message's envelopes only, however long the queue
            envelopes = await self.spool.message_envelopes(msgid)
        except SpoolError as exc:
            raise ControlError(f"cannot read the queue: {exc}") from None
        found = [
            e
            for e in envelopes
            if (kind == "msgid" or e.id == value) and e.id not in self.runner.scheduler
        ]
        self.runner.committed(found)
        return len(found)

    async def _pause(self, verb: str, args: list[str], write: Write) -> None:
        scheduler = self.runner.scheduler
        pause = verb == "pause"
        what = args[0] if args else ""
        if what == "route" and len(args) == 2 and not pause:
            target = None if args[1] == "all" else args[1]
            count = self.routes.enable(target) if self.routes is not None else 0
            self.runner.poke()
            await write(f"{count} route(s) resumed\n".encode("ascii"))
            return
        if what == "envelope" and len(args) == 2:
            evpids = self._selected(args[1])
            count = scheduler.suspend(evpids) if pause else scheduler.resume(evpids)
            self.runner.poke()
            await write(f"{count} envelope(s) {verb}d\n".encode("ascii"))
            return
        if len(args) != 1 or what not in ("mda", "mta", "smtp"):
            raise ControlError(
                f"usage: {verb} mda|mta|smtp|envelope EVPID|MSGID|all"
                + (" | route ADDRESS|all" if not pause else "")
            )
        if what == "mda":
            if scheduler.mda_paused == pause:
                raise ControlError(f"mda is already {verb}d")
            scheduler.mda_paused = pause
        elif what == "mta":
            if self.runner.relay is None:
                raise ControlError("no relay agent: mta stays paused")
            if scheduler.mta_paused == pause:
                raise ControlError(f"mta is already {verb}d")
            scheduler.mta_paused = pause
        else:
            if self.gate.paused == pause:
                raise ControlError(f"smtp is already {verb}d")
            if pause:
                self.gate.pause()
            else:
                self.gate.resume()
        log.info("control: %s %s", verb, what)
        self.runner.poke()
        await write(f"command succeeded: {what} {verb}d\n".encode("ascii"))

    # -- update table, log, monitor ---------------------------------------------

    async def _update(self, args: list[str], write: Write) -> None:
        if len(args) != 2 or args[0] != "table":
            raise ControlError("usage: update table NAME")
        name = args[1]
        if name not in self.tables.names():
            raise ControlError(f"no such table: {name}")
        try:
            await self.tables.reload(name)
        except TableError as exc:
            raise ControlError(f"table {name}: {exc}") from None
        await write(f"table {name} updated\n".encode("utf-8", "replace"))

    async def _log(self, args: list[str], write: Write) -> None:
        if len(args) != 1 or args[0] not in ("brief", "verbose"):
            raise ControlError("usage: log brief|verbose")
        level = logging.DEBUG if args[0] == "verbose" else logging.INFO
        logging.getLogger("mta").setLevel(level)
        await write(f"logging is now {args[0]}\n".encode("ascii"))

    async def _monitor(self, write: Write) -> None:
        """A line of counters every second, until the client goes away."""
        header = "queue inflight delivered tempfail permfail expired sessions\n"
        lines = 0
        while True:
            if lines % 25 == 0:
                await write(header.encode("ascii"))
            stats = self.runner.stats
            scheduler = self.runner.scheduler
            row = (
                len(scheduler),
                scheduler.inflight,
                stats.delivered,
                stats.tempfailed,
                stats.permfailed,
                stats.expired,
                self.gate.active,
            )
            await write((" ".join(f"{v:>8}" for v in row) + "\n").encode("ascii"))
            lines += 1
            await trio.sleep(MONITOR_INTERVAL)
