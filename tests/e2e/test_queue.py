"""End to end: ``queue compression`` and ``queue encryption`` (a key in the
configuration, or ``stdin``).  The files the daemon commits are not plaintext,
have OpenSMTPD's framing, survive a restart, and the spool API reads them back."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mta.spool.msgfile import read_tail
from mta.spool.spool import Spool
from tests.e2e.daemon import Daemon
from tests.e2e.test_listeners import CLIENT, USERS, free_ports, send

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = b"the very secret body line"
BODY = b"From: alice@example.org\r\nSubject: private\r\n\r\n" + (SECRET + b"\r\n") * 200


def queue_config(port: int, queue: str) -> str:
    return f"""
{USERS}
{queue}
listen on 127.0.0.1 port {port}
action "local" maildir "/nonexistent/%{{user.username}}" userbase <users>
match from any for domain "localhost" action "local"
"""


def committed_files(d: Daemon) -> list[Path]:
    return sorted(p for p in (d.spool / "queue").rglob("*") if p.is_file())


def stored_content(path: Path) -> bytes:
    """The content part of a committed message file, as stored (encoded)."""
    with path.open("rb") as file:
        tail = read_tail(file, path.stat().st_size)
    return path.read_bytes()[: tail.content_length]


def decrypt(data: bytes, key: bytes) -> bytes:
    """OpenSMTPD's framing: version 0x01, 12-byte IV, AES-256-GCM ciphertext and tag."""
    assert data[0] == 0x01
    return AESGCM(key).decrypt(data[1:13], data[13:], None)


async def read_back(d: Daemon, key: bytes | None, compression: bool) -> list[bytes]:
    spool = await Spool.open(d.spool, compression=compression, key=key)
    assert spool.recovery.quarantined == []
    result = []
    for env in await spool.envelopes():
        assert str(env.rcpt) == "bob@localhost" and str(env.sender) == "alice@example.org"
        with await spool.open_message(env.msgid) as f:
            result.append(f.read())
    return result


async def test_compression(tmp_path: Path) -> None:
    [port] = free_ports(1)
    d = Daemon(tmp_path, queue_config(port, "queue compression"))
    d.start()
    try:
        assert send("127.0.0.1", port, "bob@localhost", message=BODY) == {}
    finally:
        d.stop()
    files = committed_files(d)
    assert len(files) == 1  # the message and its envelope
    message = stored_content(files[0])
    assert message[:2] == b"\x1f\x8b" and SECRET not in message
    assert SECRET in gzip.decompress(message)
    assert len(message) < len(BODY)
    [text] = await read_back(d, None, True)
    assert text.startswith(b"Received: from " + CLIENT.encode()) and SECRET in text


async def test_encryption_with_a_key_and_compression(tmp_path: Path) -> None:
    [port] = free_ports(1)
    d = Daemon(tmp_path, queue_config(port, f"queue compression\nqueue encryption {KEY.decode()}"))
    d.start()
    try:
        assert send("127.0.0.1", port, "bob@localhost", message=BODY) == {}
        d.stop()
        d.start()  # recovery with the key keeps the message
        assert len(d.queued()) == 1
        assert "quarantined=0" in d.log()
    finally:
        d.stop()
    [path] = committed_files(d)
    data = path.read_bytes()
    assert SECRET not in data and b"bob@localhost" not in data and b"alice@" not in data
    assert SECRET in gzip.decompress(decrypt(stored_content(path), KEY))  # gzip, then encryption
    [text] = await read_back(d, KEY, True)
    assert SECRET in text


async def test_encryption_key_from_stdin(tmp_path: Path) -> None:
    [port] = free_ports(1)
    d = Daemon(tmp_path, queue_config(port, "queue encryption stdin"))
    with pytest.raises(RuntimeError, match="exactly 32 bytes"):
        d.start(stdin=b"too short\n")
    d.start(stdin=KEY + b"\n")
    try:
        assert send("127.0.0.1", port, "bob@localhost", message=BODY) == {}
    finally:
        d.stop()
    message = stored_content(committed_files(d)[0])
    assert SECRET not in message
    assert SECRET in decrypt(message, KEY)  # no compression: the plaintext itself
    [text] = await read_back(d, KEY, False)
    assert SECRET in text
