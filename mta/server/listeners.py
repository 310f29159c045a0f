"""Binding the listening sockets of ``listen on`` directives, and the session cap.

Each ``listen on`` names an interface, an address or a host name; every address
it resolves to gets its own socket, with a large backlog.  The local enqueue
socket is a Unix socket in the spool directory.  :class:`SessionGate` keeps the
number of sessions below what the file descriptor limit allows, holding some
descriptors in reserve (OpenSMTPD: ``(free fds) / 2 - reserve``); when it is
full, listeners stop accepting until a session ends, and clients wait in the
kernel's backlog instead of being refused.  A listener only takes a place with
a connection in hand, so idle listeners never hold places others need.  The
gate logs a warning when it fills up and a line when sessions are back below
nine tenths of the cap (so a gate that hovers at its cap does not log every
session), at most one warning a minute: a saturation that starts within a
minute of the last warning is reported by :meth:`SessionGate.check` once the
minute is over, if it still lasts.

Listening sockets are plain non-blocking :class:`socket.socket` objects: the
daemon's accept loop calls ``accept()`` itself and waits with trio only when
no connection is pending (:meth:`Bound.accept`).
"""

from __future__ import annotations

import errno
import math
import os
import resource
import socket
import stat
from collections.abc import Callable

import attrs
import trio

from mta.config.interfaces import BoundAddress, resolve_listen
from mta.config.model import Listener
from mta.errors import MTAError
from mta.log import get_logger
from mta.net.unixpath import socket_address

__all__ = [
    "BACKLOG",
    "Bound",
    "ListenError",
    "SessionGate",
    "bind_address",
    "bind_listener",
    "bind_unix",
    "listen_addresses",
    "raise_fd_limit",
    "session_capacity",
]

log = get_logger("smtpd")

BACKLOG = 4096
FD_RESERVE = 16
SATURATION_REPEAT = 60.0  # seconds between two "session limit reached" warnings
CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


Socket = socket.socket  # (the Bound field named ``socket`` hides the module in its body)


class ListenError(MTAError):
    """A listener could not be set up (address in use, no such interface...)."""


@attrs.frozen
class Bound:
    """A bound, listening, non-blocking socket and what it serves."""

    listener: Listener | None  # None: the local enqueue socket
    socket: Socket
    address: str  # IP address or Unix socket path
    port: int
    local: bool  # loopback or Unix: sessions count as local

    @property
    def key(self) -> tuple[str, int]:
        """What the socket is bound to: a reload keeps a socket whose key it
        binds again (and only gives it the new listener's settings)."""
        return (self.address, self.port)

    async def accept(self) -> tuple[Socket, object]:
        """The next connection and its peer address (a pending one at once)."""
        while True:
            try:
                return self.socket.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.socket)

    async def aclose(self) -> None:
        """Stop listening (a task waiting in :meth:`accept` gets ClosedResourceError)."""
        if self.socket.fileno() >= 0:
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()
        await trio.lowlevel.checkpoint()


def raise_fd_limit() -> int:
    """Raise the soft file descriptor limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    return soft


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def session_capacity() -> int:
    """How many sessions the descriptor limit allows: each can hold a socket and a
    spool file, and a reserve stays free for the spool, logs and deliveries."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, (soft - _open_fds()) // 2 - FD_RESERVE)


class SessionGate:
    """A counter of open sessions with a ceiling: wait for a free place before
    accept, take it once a connection is accepted.  ``detail`` says who holds
    the sessions, for the warning when the gate fills up."""

    def __init__(self, capacity: int, detail: Callable[[], str] | None = None) -> None:
        self.capacity = capacity
        self.detail = detail
        self._semaphore = trio.Semaphore(capacity)
        self._running = trio.Event()
        self._running.set()
        self._low = capacity - max(1, capacity // 10)  # below the cap again at 90 %
        self._saturated = False
        self._since = 0.0  # when the gate filled up
        self._reported = False  # the log's last word on it is "reached"
        self._warned = -math.inf  # when it last said so
        self._unreported = 0  # saturations since then that it did not report

    @property
    def paused(self) -> bool:
        """True while new sessions are not accepted (``pause smtp``)."""
        return not self._running.is_set()

    def pause(self) -> None:
        if not self.paused:
            self._running = trio.Event()

    def resume(self) -> None:
        self._running.set()

    async def wait_running(self) -> None:
        await self._running.wait()

    @property
    def active(self) -> int:
        return self.capacity - self._semaphore.value

    async def acquire(self) -> None:
        await self._semaphore.acquire()
        if self._semaphore.value == 0:
            self._filled()

    async def wait_free(self) -> None:
        """Wait until a session could start, without taking the place: an idle
        listener must not hold one while other listeners need it."""
        await self._semaphore.acquire()
        self._semaphore.release()

    def try_acquire(self) -> bool:
        """Take a place if one is free (no waiting, no checkpoint)."""
        try:
            self._semaphore.acquire_nowait()
        except trio.WouldBlock:
            return False
        if self._semaphore.value == 0:
            self._filled()
        return True

    @property
    def full(self) -> bool:
        return self._semaphore.value == 0

    def release(self) -> None:
        self._semaphore.release()
        if self._saturated and self.capacity - self._semaphore.value <= self._low:
            self._saturated = False
            if self._reported:
                self._reported = False
                log.info(
                    "smtp: sessions below the limit again (%d of %d), after %.1f s at the limit",
                    self.active,
                    self.capacity,
                    trio.current_time() - self._since,
                )

    @property
    def saturated(self) -> bool:
        """True from the moment every place is taken until nine tenths are free again."""
        return self._saturated

    def _filled(self) -> None:
        if not self._saturated:
            self._saturated = True
            self._since = trio.current_time()
            self._unreported += 1
            self.check()

    def check(self) -> None:
        """Warn of a saturation not reported yet, unless the last warning is
        less than a minute old (run now and then, and when the gate fills up)."""
        if not self._saturated or self._reported:
            return
        now = trio.current_time()
        if now - self._warned < SATURATION_REPEAT:
            return
        self._reported = True
        self._warned = now
        again = self._unreported - 1
        self._unreported = 0
        detail = self.detail() if self.detail is not None else ""
        log.warning(
            "smtp: session limit reached: all %d sessions taken%s, new connections wait%s%s",
            self.capacity,
            f" {now - self._since:.0f} s ago" if now - self._since >= 1 else "",
            f" ({detail})" if detail else "",
            f"; {again} more time(s) since the last warning" if again else "",
        )


def bind_listener(listener: Listener, backlog: int = BACKLOG) -> list[Bound]:
    """Bind every address ``listener`` resolves to; ListenError if one fails (the
    others are closed then).  Synchronous: the daemon binds before it starts."""
    bound: list[Bound] = []
    try:
        for address in listen_addresses(listener):
            bound.append(bind_address(listener, address, backlog))
    except BaseException:
        for b in bound:
            b.socket.close()  # never handed to trio yet
        raise
    return bound


def listen_addresses(listener: Listener) -> list[BoundAddress]:
    """The addresses ``listener`` binds; ListenError if it names none."""
    addresses = resolve_listen(listener.interface, listener.family)
    if not addresses:
        raise ListenError(f"listen on {listener.interface}: no address to listen on")
    return addresses


def bind_address(listener: Listener, address: BoundAddress, backlog: int = BACKLOG) -> Bound:
    """Bind and listen on one of ``listener``'s addresses; ListenError naming it."""
    port = listener.effective_port
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.address, port))  # a numeric address: no lookup
        sock.listen(backlog)
        port = sock.getsockname()[1]  # the one the system picked for port 0
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"listen on {listener.interface}: cannot listen on "
            f"{_show(address.address)}:{port}: {exc.strerror}"
        ) from None
    return Bound(listener, sock, address.address, port, address.local)


def _show(address: str) -> str:
    return f"[{address}]" if ":" in address else address


async def bind_unix(path: str, backlog: int = BACKLOG, mode: int = 0o666) -> Bound:
    """Bind the local enqueue socket at ``path``, replacing a stale one (but never
    another kind of file, nor a socket a running server still answers on)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ListenError(f"{path}: exists and is not a socket")
        if await _answers(path):
            raise ListenError(f"{path}: another server is running on this spool")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        with socket_address(path) as address:
            sock.bind(address)
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {path}: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return Bound(None, sock, path, 0, True)


async def _answers(path: str) -> bool:
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with trio.move_on_after(1), socket_address(path) as address:
            await probe.connect(address)
            return True
        return False
    except OSError:
        return False
    finally:
        probe.close()
