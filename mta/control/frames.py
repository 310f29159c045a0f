"""The control socket's wire format, sans-IO.

``mtactl`` sends one request: its words as a JSON array on one line.  The
daemon answers with frames, each a header line ``KIND LENGTH`` followed by
exactly ``LENGTH`` bytes of payload:

- ``out``: bytes for the client's standard output (queue listings, a message);
- ``end``: the command succeeded (payload empty); the last frame;
- ``err``: the command failed, the payload says why (UTF-8); the last frame.

Lengths are bounded on both sides, so neither end can be made to buffer an
unbounded header, request or frame.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator

import attrs

from mta.errors import ControlError

__all__ = [
    "FRAME_MAX",
    "REQUEST_MAX",
    "Frame",
    "FrameKind",
    "FrameReader",
    "RequestReader",
    "encode_frame",
    "encode_request",
]

REQUEST_MAX = 4096  # one request line, JSON included
FRAME_MAX = 1 << 20  # one frame's payload; longer output is cut into several frames
_HEADER_MAX = 32


class FrameKind(enum.Enum):
    OUT = "out"
    END = "end"
    ERR = "err"


@attrs.frozen
class Frame:
    kind: FrameKind
    payload: bytes = b""


def encode_request(argv: list[str]) -> bytes:
    """The request line for ``argv``; ControlError if it is too long."""
    line = json.dumps(argv, ensure_ascii=True).encode("ascii") + b"\n"
    if len(line) > REQUEST_MAX:
        raise ControlError("request too long")
    return line


def encode_frame(kind: FrameKind, payload: bytes = b"") -> bytes:
    """One or more frames carrying ``payload`` (``out`` payloads are split at
    :data:`FRAME_MAX`; ``end`` and ``err`` must fit in one)."""
    if kind is not FrameKind.OUT:
        if len(payload) > FRAME_MAX:
            raise ValueError("a final frame's payload is too long")
        return f"{kind.value} {len(payload)}\n".encode("ascii") + payload
    out = bytearray()
    for start in range(0, len(payload), FRAME_MAX):
        chunk = payload[start : start + FRAME_MAX]
        out += f"out {len(chunk)}\n".encode("ascii") + chunk
    return bytes(out)


class RequestReader:
    """Collects the request line from the bytes a client sends."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[str] | None:
        """The request once the line is complete, else None; ControlError if
        it is too long or not a JSON array of strings."""
        self._buffer += data
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > REQUEST_MAX:
                raise ControlError("request too long")
            return None
        if end + 1 > REQUEST_MAX:
            raise ControlError("request too long")
        try:
            argv = json.loads(bytes(self._buffer[:end]).decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ControlError("malformed request") from None
        if not isinstance(argv, list) or not all(isinstance(word, str) for word in argv):
            raise ControlError("malformed request")
        return argv


class FrameReader:
    """Splits the daemon's answer into :class:`Frame` objects."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending: tuple[FrameKind, int] | None = None
        self.finished = False

    def feed(self, data: bytes) -> Iterator[Frame]:
        """The frames completed by ``data``; ControlError on a malformed stream."""
        self._buffer += data
        while not self.finished:
            if self._pending is None:
                end = self._buffer.find(b"\n")
                if end < 0:
                    if len(self._buffer) > _HEADER_MAX:
                        raise ControlError("malformed answer from the daemon")
                    return
                self._pending = self._header(bytes(self._buffer[:end]))
                del self._buffer[: end + 1]
            kind, length = self._pending
            if len(self._buffer) < length:
                return
            payload = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._pending = None
            if kind is not FrameKind.OUT:
                self.finished = True
            yield Frame(kind, payload)

    @staticmethod
    def _header(line: bytes) -> tuple[FrameKind, int]:
        kind, _, length = line.partition(b" ")
        try:
            frame_kind = FrameKind(kind.decode("ascii"))
            size = int(length.decode("ascii"))
        except ValueError:
            raise ControlError("malformed answer from the daemon") from None
        if not length.isdigit() or size > FRAME_MAX:
            raise ControlError("malformed answer from the daemon")
        return frame_kind, size
