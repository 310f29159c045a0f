"""Tables served by an external helper (``table-<backend>`` from
opensmtpd-extras and friends), driven synchronously over pipes with the
:mod:`mta.tables.proc` codec.

The helper is started lazily on first use (so ``mta -n`` never runs it), as
``argv[0]`` = table name and ``argv[1]`` = the configuration after ``:``.  Any
protocol failure or timeout kills it and raises TableError; the next request
starts a new one.  OpenSMTPD 6.8 helpers speak a binary imsg API instead and
simply fail here.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import time

from mta.errors import TableError
from mta.tables.base import Table
from mta.tables.proc import Operation, ProcCodec, Reply, ReplyStatus
from mta.tables.services import ALL_SERVICES, Service, TableType

__all__ = ["HELPER_DIRS", "ProcTable", "find_helper"]

HELPER_DIRS = (
    "/usr/libexec/opensmtpd",
    "/usr/lib/opensmtpd",
    "/usr/libexec/smtpd",
    "/usr/local/libexec/smtpd",
)


def find_helper(backend: str, dirs: tuple[str, ...] = HELPER_DIRS) -> str | None:
    """The path of an executable ``table-<backend>`` helper, or None."""
    if not backend or "/" in backend or backend.startswith("."):
        return None
    for directory in dirs:
        path = os.path.join(directory, f"table-{backend}")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


class ProcTable(Table):
    """A dynamic table answered by a helper process."""

    backend = "proc"

    def __init__(
        self,
        name: str,
        executable: str,
        argument: str | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name, ALL_SERVICES, TableType.DYNAMIC)
        self.executable = executable
        self.argument = argument
        self.config = argument
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._codec: ProcCodec | None = None
        self._buffer = b""

    def _start(self) -> ProcCodec:
        if self._process is not None and self._codec is not None:
            if self._process.poll() is None:
                return self._codec
            self.close()
        args = [self.name] if self.argument is None else [self.name, self.argument]
        try:
            self._process = subprocess.Popen(
                args,
                executable=self.executable,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            raise TableError(f"table {self.name}: cannot run {self.executable}: {exc}") from None
        self._buffer = b""
        codec = ProcCodec(self.name)
        try:
            self._send(codec.handshake())
            while not codec.receive_register(self._readline()):
                pass
        except TableError:
            self.close()
            raise
        self._codec = codec
        self.services = codec.services
        return codec

    def _send(self, data: bytes) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            process.stdin.write(data)
            process.stdin.flush()
        except OSError as exc:
            raise TableError(f"table {self.name}: helper write failed: {exc}") from None

    def _readline(self) -> str:
        process = self._process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TableError(f"table {self.name}: helper timed out")
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise TableError(f"table {self.name}: helper exited")
                self._buffer += chunk
                if len(self._buffer) > 65536:
                    raise TableError(f"table {self.name}: helper reply too long")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "surrogateescape")

    def _call(self, operation: Operation, service: Service | None, key: str | None) -> Reply:
        codec = self._start()
        try:
            self._send(codec.request(operation, service, key, timestamp=time.time()))
            reply = codec.receive_result(self._readline())
        except TableError:
            self.close()
            raise
        if reply.status is ReplyStatus.ERROR:
            raise TableError(f"table {self.name}: {operation.value} failed: {reply.value or ''}")
        return reply

    def _lookup(self, service: Service, key: str) -> str | None:
        reply = self._call(Operation.LOOKUP, service, key)
        return reply.value if reply.status is ReplyStatus.FOUND else None

    def _match(self, service: Service, key: str) -> bool:
        return self._call(Operation.CHECK, service, key).status is ReplyStatus.FOUND

    def _fetch(self, service: Service) -> str | None:
        reply = self._call(Operation.FETCH, service, None)
        return reply.value if reply.status is ReplyStatus.FOUND else None

    def reload(self) -> None:
        """Ask a running helper to reload (``update``); a stopped one starts fresh."""
        if self._process is None:
            return
        self._call(Operation.UPDATE, None, None)

    def close(self) -> None:
        """Stop the helper process, if running."""
        process, self._process, self._codec = self._process, None, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if process.poll() is None:
            process.kill()
        process.wait()
