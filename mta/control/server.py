"""The control socket, ``SPOOL/mta.sock``: where ``mtactl`` talks to the daemon.

The socket is mode 0600 and every connection's peer is checked (SO_PEERCRED):
only root and the daemon's own user may control it, as smtpctl's privileged
verbs need root.  One request per connection (:mod:`mta.control.frames`);
the request must arrive within :data:`REQUEST_TIMEOUT` seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

import trio

from mta.control.commands import Controller
from mta.control.frames import FrameKind, RequestReader, encode_frame
from mta.errors import ControlError
from mta.log import get_logger
from mta.server.listeners import Bound, bind_unix

__all__ = ["CONTROL_SOCKET", "REQUEST_TIMEOUT", "bind_control", "serve_control"]

log = get_logger("control")

CONTROL_SOCKET = "mta.sock"
REQUEST_TIMEOUT = 10.0
_ERROR_MAX = 4000


async def bind_control(spool_dir: str) -> Bound:
    """Bind ``SPOOL/mta.sock`` (a stale socket is replaced, a live one refused)."""
    return await bind_unix(os.path.join(spool_dir, CONTROL_SOCKET), mode=0o600)


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


async def serve_control(bound: Bound, controller: Controller) -> None:
    """Serve control connections on ``bound`` until cancelled."""
    async with trio.open_nursery() as nursery:
        while True:
            conn, _ = await bound.accept()
            nursery.start_soon(_connection, conn, controller)


async def _connection(conn: socket.socket, controller: Controller) -> None:
    uid = _peer_uid(conn)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
    async with stream:
        try:
            # read the request even from a stranger: closing on unread data
            # could reset the connection before the refusal is read
            argv = await _request(stream)
        except ControlError as exc:
            await _send_error(stream, str(exc))
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if uid is None or uid not in (0, os.geteuid()):
            log.warning("control: connection refused for uid %s", uid)
            await _send_error(stream, "permission denied")
            return

        async def write(data: bytes) -> None:
            await stream.send_all(encode_frame(FrameKind.OUT, data))

        try:
            await controller.execute(argv, write)
        except ControlError as exc:
            await _send_error(stream, str(exc))
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # mtactl went away (monitor ends this way)
        except Exception:
            log.exception("control: %s failed", " ".join(argv)[:200])
            await _send_error(stream, "internal error (see the daemon's log)")
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(encode_frame(FrameKind.END))


async def _request(stream: trio.SocketStream) -> list[str]:
    reader = RequestReader()
    with trio.move_on_after(REQUEST_TIMEOUT):
        while True:
            data = await stream.receive_some(4096)
            if not data:
                raise ControlError("no request")
            argv = reader.feed(data)
            if argv is not None:
                return argv
    raise ControlError("timed out waiting for the request")


async def _send_error(stream: trio.SocketStream, message: str) -> None:
    payload = message.encode("utf-8", "replace")[:_ERROR_MAX]
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(encode_frame(FrameKind.ERR, payload))
