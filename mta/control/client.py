"""``mtactl``'s side of the control socket, and the queue listing it prints
when the daemon is not running (as smtpctl reads the spool itself then).

The client is plain blocking sockets: one request, frames read back until
the final one (:mod:`mta.control.frames`).
"""

from __future__ import annotations

import os
import socket
from typing import BinaryIO

from mta.control.frames import FrameKind, FrameReader, encode_request
from mta.control.queueview import RunState, queue_line
from mta.errors import ControlError, SpoolError
from mta.net.unixpath import socket_address
from mta.spool.paths import SpoolPaths
from mta.spool.store import Store

__all__ = ["DaemonNotRunning", "call", "offline_queue"]

CONNECT_TIMEOUT = 10.0


class DaemonNotRunning(ControlError):
    """Nothing answers on the control socket."""


def call(path: str, argv: list[str], out: BinaryIO, *, timeout: float | None = 60.0) -> None:
    """Send ``argv`` to the daemon listening on ``path``, copy its output to
    ``out``; ControlError with the daemon's message if the command failed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            with socket_address(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonNotRunning(f"mta is not running on this spool (no {path})") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror}") from None
        sock.settimeout(timeout)
        try:
            sock.sendall(encode_request(argv))
            _read_answer(sock, out)
        except TimeoutError:
            raise ControlError("timed out waiting for the daemon") from None
        except OSError as exc:
            raise ControlError(f"control connection failed: {exc.strerror or exc}") from None
    finally:
        sock.close()


def _read_answer(sock: socket.socket, out: BinaryIO) -> None:
    reader = FrameReader()
    while True:
        data = sock.recv(65536)
        if not data:
            raise ControlError("the daemon closed the connection without an answer")
        for frame in reader.feed(data):
            if frame.kind is FrameKind.OUT:
                out.write(frame.payload)
                out.flush()
            elif frame.kind is FrameKind.ERR:
                raise ControlError(frame.payload.decode("utf-8", "replace"))
            else:
                return


def offline_queue(spool_dir: str, out: BinaryIO) -> int:
    """``show queue`` read from the spool directly (the daemon is down);
    returns how many envelopes were listed."""
    paths = SpoolPaths(spool_dir)
    if not os.path.isdir(paths.queue):
        raise ControlError(f"{spool_dir}: not an mta spool")
    store = Store(paths, compress=False, key=None)
    count = 0
    try:
        for envelope in store.iter_envelopes():
            out.write((queue_line(envelope, RunState("offline")) + "\n").encode("utf-8", "replace"))
            count += 1
    except SpoolError as exc:
        raise ControlError(f"cannot read the queue: {exc}") from None
    out.flush()
    return count
