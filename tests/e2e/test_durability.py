"""Durability: SIGKILL right after the 250 loses nothing; SIGKILL before it leaves
nothing behind (RFC 5321 section 6.1)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.e2e.daemon import Daemon, free_port
from tests.e2e.test_receive import MESSAGE, base_config


def _read_reply(f: BinaryIO) -> bytes:
    return f.readline()


def _open(port: int) -> tuple[socket.socket, BinaryIO]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220 ")
    sock.sendall(b"EHLO client.example\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    return sock, f


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, int]]:
    port = free_port()
    d = Daemon(tmp_path, base_config(port))
    d.start()
    yield d, port
    d.stop()


def test_sigkill_after_250_keeps_the_message(daemon: tuple[Daemon, int]) -> None:
    d, port = daemon
    sock, f = _open(port)
    try:
        sock.sendall(b"MAIL FROM:<alice@example.org>\r\n")
        assert _read_reply(f).startswith(b"250 ")
        sock.sendall(b"RCPT TO:<bob@localhost>\r\n")
        assert _read_reply(f).startswith(b"250 ")
        sock.sendall(b"DATA\r\n")
        assert _read_reply(f).startswith(b"354 ")
        sock.sendall(MESSAGE + b".\r\n")
        reply = _read_reply(f)
        d.kill()  # the very moment the client has its 250
        assert reply.startswith(b"250 2.0.0 "), reply
        msgid = reply.split()[2].decode()
    finally:
        f.close()
        sock.close()
    d.start()
    queued = d.queued()
    assert [p.name for p in queued] == [msgid]
    [content] = d.contents()
    assert b"Hello.\r\n" in content
    assert len(d.store().envelope_ids(int(msgid, 16))) == 1


def test_sigkill_before_250_leaves_nothing(daemon: tuple[Daemon, int]) -> None:
    d, port = daemon
    sock, f = _open(port)
    try:
        sock.sendall(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@localhost>\r\n")
        assert _read_reply(f).startswith(b"250 ")
        assert _read_reply(f).startswith(b"250 ")
        sock.sendall(b"DATA\r\n")
        assert _read_reply(f).startswith(b"354 ")
        # more than the spool keeps in memory (128 KiB), so the body reaches the disk
        sock.sendall(MESSAGE + (b"x" * 998 + b"\r\n") * 400)  # no final dot: still in DATA
        incoming = d.spool / "incoming"
        deadline = time.monotonic() + 10
        while not any(incoming.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(incoming.iterdir())
        d.kill()
    finally:
        f.close()
        sock.close()
    d.start()
    assert d.queued() == []
    assert _files(d.spool / "incoming") == []
