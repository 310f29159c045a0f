"""What is checked before anything is touched: the spool and the ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mta.config.model import Config, Listener
from mta.daemon.startup import bind_network, check_spool
from mta.errors import SpoolError
from mta.server.listeners import ListenError
from mta.spool.lock import SpoolInUse


def test_a_spool_to_create_or_an_empty_directory(tmp_path: Path) -> None:
    check_spool(str(tmp_path / "a" / "b" / "spool"))  # created later, parents too
    check_spool(str(tmp_path))
    assert os.listdir(tmp_path) == []  # nothing made


def test_what_cannot_be_a_spool(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match=r"^spool .*/file: not a directory$"):
        check_spool(str(tmp_path / "file"))
    with pytest.raises(
        SpoolError, match=r"cannot create the spool .*/file/x/spool: .*/file is not"
    ):
        check_spool(str(tmp_path / "file" / "x" / "spool"))


def test_a_spool_in_use(tmp_path: Path) -> None:
    # another process holds the lock (POSIX record locks are per process)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from mta.spool.lock import spool_lock\n"
            "with spool_lock(sys.argv[1]):\n print('locked', flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(SpoolInUse, match=f"pid {holder.pid}"):
            check_spool(str(tmp_path))
    finally:
        holder.communicate("", timeout=10)
    check_spool(str(tmp_path))  # free again


def test_bind_network_closes_what_it_bound_when_one_fails() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        config = Config(
            listeners=(Listener("127.0.0.1", port=free), Listener("127.0.0.1", port=busy))
        )
        with pytest.raises(ListenError, match=f"127.0.0.1:{busy}: Address already in use"):
            bind_network(config)
    with socket.create_server(("127.0.0.1", free)):
        pass  # the first one was closed again
