"""One filter process (smtpd-filters(7)), driven on trio.

:class:`FilterProcess` starts the command of a ``proc`` / ``proc-exec`` as
OpenSMTPD does (``/bin/sh -c``; a command not starting with ``/`` is looked
for in the helper directories, ``/usr/libexec/opensmtpd`` first; as the
``user``/``group`` given, in its ``chroot``), sends the handshake
(:mod:`mta.filters.encode`), reads its registration
(:mod:`mta.filters.registration`), then serves requests of many sessions at
once: each request carries a fresh token, and the answer is routed back by
(session, token) to the task waiting for it.  ``data-line`` output is routed
to the channel of the session that sent the message.  The filter's stderr
goes to the log, a line at a time.

Report lines are sent two ways: :meth:`FilterProcess.send_line` writes one
and returns when it is written (an SMTP session's reports, in step with its
requests); :meth:`FilterProcess.post` queues one without waiting (a relay
session's ``smtp-out`` reports: a relay never waits on a filter) and the
process's own task writes the queue in order.  The queue holds
:data:`POST_BUFFER` lines; when a filter stops reading, what does not fit is
dropped, never half-written.

Robust where OpenSMTPD is not (DESIGN.md): a filter that exits, writes a line
the protocol does not allow, or leaves a request unanswered past
``timeout`` fails (:class:`FilterFailed`) every request waiting on it; the
caller answers its session with a temporary failure, and the host
(:mod:`mta.filters.host`) starts the filter again after a back-off.
Nothing here holds more than one line of the filter's output (bounded by
:data:`~mta.filters.protocol.MAX_LINE`).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence

import attrs
import trio

from mta.config.model import Proc
from mta.errors import FilterError, FilterProtocolError
from mta.filters.encode import (
    Handshake,
    encode_data_lines,
    encode_filter,
    encode_filter_connect,
    encode_handshake,
)
from mta.filters.messages import (
    FilterDataLine,
    FilterMessage,
    FilterReport,
    FilterResult,
    RegisterReady,
)
from mta.filters.parse import FilterOutputParser
from mta.filters.protocol import (
    Address,
    FilterPhase,
    ProtocolVersion,
    ReportEvent,
    Subsystem,
    Timestamp,
)
from mta.filters.registration import Registered, Registration
from mta.log import get_logger, visible
from mta.tables.proctable import HELPER_DIRS

__all__ = ["FilterFailed", "FilterProcess", "command_argv"]

log = get_logger("filter")

DEFAULT_USER = "nobody"  # who a filter runs as, run by root, when its proc names nobody
READ_SIZE = 65536
STDERR_LINE_MAX = 4096
DATA_BUFFER = 64  # batches of data-line output (one per read of its output) queued per session
POST_BUFFER = 4096  # report lines queued by post() at most


class FilterFailed(FilterError):
    """The filter cannot answer (it exited, broke the protocol, or timed out)."""


def command_argv(proc: Proc, dirs: tuple[str, ...] = HELPER_DIRS) -> list[str]:
    """How the command of ``proc`` is run: ``/bin/sh -c COMMAND``, a relative
    program name first looked for in the helper directories (OpenSMTPD runs
    ``PATH_LIBEXEC/name``; Debian's filters live in /usr/libexec/opensmtpd)."""
    command = proc.command
    if not command.startswith("/"):
        try:
            words = shlex.split(command)
        except ValueError:
            words = []
        if words and "/" not in words[0]:
            for directory in dirs:
                path = os.path.join(directory, words[0])
                if os.path.isfile(path) and os.access(path, os.X_OK):
                    command = shlex.quote(path) + command[command.index(words[0]) + len(words[0]) :]
                    break
    return ["/bin/sh", "-c", command]


async def _gone(process: trio.Process, otherwise: str) -> str:
    """Why a filter went away: how it exited (waited for a moment), else ``otherwise``."""
    with trio.move_on_after(1):
        await process.wait()
    status = process.poll()
    if status is None:
        return otherwise
    return f"exited on signal {-status}" if status < 0 else f"exited with status {status}"


def _now() -> Timestamp:
    return Timestamp.of_ns(time.time_ns())


@attrs.frozen
class _Identity:
    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None
    enter: Callable[[], None] | None = None


class _Pending:
    """A request waiting for its ``filter-result``."""

    __slots__ = ("done", "result", "session")

    def __init__(self, session: int) -> None:
        self.session = session
        self.done = trio.Event()
        self.result: FilterResult | FilterFailed | None = None


class FilterProcess:
    """A started filter: see the module docstring.  Use :meth:`run` in a
    nursery (``await nursery.start(process.run)`` returns once it registered)."""

    def __init__(
        self,
        name: str,
        proc: Proc,
        handshake: Handshake,
        *,
        timeout: float = 300.0,
        argv: list[str] | None = None,
    ) -> None:
        self.name = name
        self.proc = proc
        self.handshake = handshake
        self.version: ProtocolVersion = handshake.version
        self.timeout = timeout
        self.argv = argv if argv is not None else command_argv(proc)
        self.registered: Registered | None = None
        self.failure: FilterFailed | None = None
        self._process: trio.Process | None = None
        self._write_lock = trio.Lock()
        self._pending: dict[int, _Pending] = {}  # by token
        self._data: dict[int, trio.MemorySendChannel[list[bytes | None]]] = {}  # by session
        self._registration = Registration()
        self._registered = trio.Event()
        self._scope: trio.CancelScope | None = None
        self._posted, self._to_write = trio.open_memory_channel[bytes](POST_BUFFER)

    # -- life --------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.failure is None and self.registered is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the process and serve it until it fails (FilterFailed is raised
        then, after every waiting request was failed) or the task is cancelled
        (the process is killed)."""
        try:
            identity = self._identity()
            process = await trio.lowlevel.open_process(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                user=identity.user,
                group=identity.group,
                extra_groups=identity.extra_groups,
                preexec_fn=identity.enter,
            )
        except KeyError as exc:
            raise self._fail(f"cannot start: no such user or group: {exc.args[0]}") from None
        except (OSError, ValueError) as exc:
            raise self._fail(f"cannot start: {exc}") from None
        self._process = process
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_stderr, process)
                    nursery.start_soon(self._read_stdout, process)
                    nursery.start_soon(self._write_posted)
                    await self._register(task_status)
                    await trio.sleep_forever()  # until _fail cancels the scope
        finally:
            if self.failure is None:
                self._fail("stopped")
            with contextlib.suppress(OSError):
                process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await process.wait()
        if self.failure is not None:
            raise self.failure

    async def _register(self, task_status: trio.TaskStatus[None]) -> None:
        """The handshake, then the registration within the timeout; started.
        A failure has cancelled the process's scope when this returns."""
        try:
            await self._send(encode_handshake(self.handshake))
        except FilterFailed:
            return
        with trio.move_on_after(self.timeout) as waited:
            await self._registered.wait()
        if waited.cancelled_caught:
            self._fail("no registration within the timeout")
            return
        task_status.started()

    def _identity(self) -> _Identity:
        """Who the filter runs as when the daemon is root: the proc's ``user``
        (``nobody`` when it names none: never root, as OpenSMTPD runs filters as
        its unprivileged user), in ``group`` or that user's own, no other group,
        in its ``chroot``.  Run unprivileged, everything is the daemon's.
        KeyError for an unknown user or group."""
        proc = self.proc
        if os.geteuid() != 0:
            return _Identity()
        entry = pwd.getpwnam(proc.user or DEFAULT_USER)
        gid = grp.getgrnam(proc.group).gr_gid if proc.group else entry.pw_gid
        enter: Callable[[], None] | None = None
        if proc.chroot:
            chroot = proc.chroot

            def enter() -> None:
                os.chroot(chroot)
                os.chdir("/")

        return _Identity(user=entry.pw_uid, group=gid, extra_groups=[], enter=enter)

    def _fail(self, reason: str) -> FilterFailed:
        """Fail every waiting request and every data stream; the failure."""
        if self.failure is None:
            self.failure = FilterFailed(f"filter {self.name}: {reason}")
            if reason != "stopped":
                log.warning("filter %s: %s", self.name, visible(reason))
        failure = self.failure
        for pending in self._pending.values():
            pending.result = failure
            pending.done.set()
        self._pending.clear()
        for channel in self._data.values():
            channel.close()
        self._data.clear()
        if self._scope is not None:
            self._scope.cancel()
        return failure

    # -- the filter's output --------------------------------------------------

    async def _read_stdout(self, process: trio.Process) -> None:
        """Read and dispatch the filter's output until it fails (then every
        waiter is failed and the process's scope cancelled: nothing is raised)."""
        assert process.stdout is not None
        parser = FilterOutputParser()
        while True:
            try:
                data = await process.stdout.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            try:
                if not data:
                    parser.close()
                    self._fail(await _gone(process, "closed its output"))
                    return
                parser.feed(bytes(data))
                await self._dispatch_all(parser)
            except FilterProtocolError as exc:
                self._fail(str(exc))
                return

    async def _dispatch_all(self, parser: FilterOutputParser) -> None:
        """Dispatch every whole message parsed; a session's data-lines go to it
        as one batch per read (before any other message, so order holds)."""
        lines: dict[int, list[bytes | None]] = {}
        while (message := parser.next_message()) is not None:
            if isinstance(message, FilterDataLine) and self.registered is not None:
                if message.session not in self._data:
                    raise FilterProtocolError("data-line output for no message", message.line[:100])
                batch = lines.setdefault(message.session, [])
                batch.append(None if message.line == b"." else message.line)
                continue
            if lines:
                await self._send_lines(lines)
                lines = {}
            await self._dispatch(message)
        if lines:
            await self._send_lines(lines)

    async def _send_lines(self, lines: dict[int, list[bytes | None]]) -> None:
        for session, batch in lines.items():
            channel = self._data.get(session)
            if channel is None:
                continue  # the session stopped listening since
            # a session that stopped reading is its own problem, not the filter's
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await channel.send(batch)

    async def _dispatch(self, message: FilterMessage) -> None:
        if self.registered is None:
            if self._registration.feed(message):
                self.registered = self._registration.result()
                self._registered.set()
            return
        if isinstance(message, FilterResult):
            pending = self._pending.pop(message.token, None)
            if pending is None or pending.session != message.session:
                raise FilterProtocolError("a result for no pending request", b"filter-result")
            pending.result = message
            pending.done.set()
        elif isinstance(message, FilterReport):
            log.info(
                "%016x filter %s report: %s", message.session, self.name, visible(message.message)
            )
        elif isinstance(message, RegisterReady):
            raise FilterProtocolError("registered twice", b"register|ready")
        else:
            raise FilterProtocolError("a registration after ready", b"register")

    async def _read_stderr(self, process: trio.Process) -> None:
        assert process.stderr is not None
        buffer = b""
        while True:
            data = await process.stderr.receive_some(READ_SIZE)
            if not data:
                if buffer:
                    self._log_stderr(buffer)
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._log_stderr(line)
            if len(buffer) > STDERR_LINE_MAX:
                self._log_stderr(buffer)
                buffer = b""

    def _log_stderr(self, line: bytes) -> None:
        text = line[:STDERR_LINE_MAX].decode("utf-8", "replace").rstrip("\r")
        log.info("filter %s: %s", self.name, visible(text, STDERR_LINE_MAX))

    # -- requests ------------------------------------------------------------

    def wants(self, phase: FilterPhase) -> bool:
        return self.registered is not None and phase in self.registered.phases

    def wants_report(self, subsystem: Subsystem, event: ReportEvent) -> bool:
        registered = self.registered
        return registered is not None and registered.wants_report(subsystem, event)

    async def _send(self, data: bytes) -> None:
        process = self._process
        if process is None or process.stdin is None or self.failure is not None:
            raise self.failure or FilterFailed(f"filter {self.name}: not running")
        async with self._write_lock:
            try:
                await process.stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise self._fail(await _gone(process, "stopped reading its input")) from None

    async def send_line(self, line: bytes) -> None:
        """Send one encoded line (a report); FilterFailed if it cannot be."""
        await self._send(line)

    def post(self, line: bytes) -> bool:
        """Queue one encoded line (a report) to be sent soon, in order, without
        waiting; False when it cannot be (the filter is not running, or its
        queue is full: it stopped reading)."""
        if not self.alive:
            return False
        try:
            self._posted.send_nowait(line)
        except trio.WouldBlock:
            return False
        return True

    async def _write_posted(self) -> None:
        """Write what :meth:`post` queued, once registered, until the filter fails."""
        await self._registered.wait()
        async for line in self._to_write:
            try:
                await self._send(line)
            except FilterFailed:
                return  # _fail has cancelled the process's scope

    async def request(self, phase: FilterPhase, session: int, param: str | bytes) -> FilterResult:
        """Ask the filter about ``phase`` of ``session``; its result, or
        FilterFailed (exited, broke the protocol, no answer within the timeout:
        then it is stopped, to be started again)."""
        return await self._ask(
            lambda token: encode_filter(self.version, _now(), phase, session, token, param),
            phase,
            session,
        )

    async def request_connect(self, session: int, rdns: str, src: Address) -> FilterResult:
        """The ``connect`` request (``rdns|src``)."""
        return await self._ask(
            lambda token: encode_filter_connect(self.version, _now(), session, token, rdns, src),
            FilterPhase.CONNECT,
            session,
        )

    async def _ask(
        self, encode: Callable[[int], bytes], phase: FilterPhase, session: int
    ) -> FilterResult:
        token = secrets.randbits(64)
        while token in self._pending:
            token = secrets.randbits(64)
        pending = self._pending[token] = _Pending(session)
        try:
            await self._send(encode(token))
            with trio.move_on_after(self.timeout) as waited:
                await pending.done.wait()
            if waited.cancelled_caught:
                raise self._fail(f"no answer to {phase.value} within {self.timeout:g}s")
        finally:
            self._pending.pop(token, None)
        result = pending.result
        if isinstance(result, FilterFailed):
            raise result
        assert result is not None
        return result

    # -- data-line ------------------------------------------------------------

    def open_data(self, session: int) -> trio.MemoryReceiveChannel[list[bytes | None]]:
        """Where the filter's ``data-line`` output for ``session`` arrives, in
        batches of lines (None for the final ``.``); close with :meth:`close_data`."""
        send, receive = trio.open_memory_channel[list[bytes | None]](DATA_BUFFER)
        old = self._data.pop(session, None)
        if old is not None:
            old.close()
        self._data[session] = send
        if self.failure is not None:
            send.close()
        return receive

    def close_data(self, session: int) -> None:
        channel = self._data.pop(session, None)
        if channel is not None:
            channel.close()

    async def data_line(self, session: int, token: int, line: bytes) -> None:
        """Send one line of the message (dot-escaped, without its newline)."""
        await self.data_lines(session, token, (line,))

    async def data_lines(self, session: int, token: int, lines: Sequence[bytes]) -> None:
        """Send lines of the message (each dot-escaped, without its newline) in
        one write: a message's lines cost one system call per chunk received."""
        if lines:
            await self._send(encode_data_lines(self.version, _now(), session, token, lines))
