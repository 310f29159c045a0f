"""Unix socket paths of any length: short ones as they are, long ones through
a descriptor of their directory, for bind and connect alike."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from mta.net.unixpath import MAX_SOCKET_PATH, SocketPathError, socket_address


def test_a_short_path_is_used_as_it_is(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with socket_address(path) as address:
        assert address == path


def test_a_long_path_binds_and_connects(tmp_path: Path) -> None:
    directory = tmp_path / ("d" * 90) / ("e" * 90)
    directory.mkdir(parents=True)
    path = str(directory / "enqueue.sock")
    assert len(path) > MAX_SOCKET_PATH
    with socket.socket(socket.AF_UNIX) as plain, pytest.raises(OSError):
        plain.bind(path)  # what the helper is for
    with socket.socket(socket.AF_UNIX) as server:
        with socket_address(path) as address:
            assert address.startswith("/proc/self/fd/") and address.endswith("/enqueue.sock")
            server.bind(address)
        server.listen()
        assert os.listdir(directory) == ["enqueue.sock"]  # in the real directory
        with socket.socket(socket.AF_UNIX) as client, socket_address(path) as address:
            client.connect(address)
            conn, _ = server.accept()
            conn.close()


def test_no_descriptor_is_left_open(tmp_path: Path) -> None:
    directory = tmp_path / ("x" * 120)
    directory.mkdir()
    before = len(os.listdir("/proc/self/fd"))
    with socket_address(str(directory / "a.sock")):
        assert len(os.listdir("/proc/self/fd")) == before + 1
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_long_path_without_proc_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / ("x" * 120)
    directory.mkdir()
    monkeypatch.setattr(os.path, "isdir", lambda path: False)
    with (
        pytest.raises(
            SocketPathError, match=r"too long for a Unix socket \(\d+ bytes, at most 107\)"
        ),
        socket_address(str(directory / "a.sock")),
    ):
        pass
    missing = str(tmp_path / ("y" * 120) / "a.sock")
    with pytest.raises(SocketPathError, match="No such file"), socket_address(missing):
        pass
