"""mta-sendmail finds the spool, socket and offline directory where the daemon puts them."""

from __future__ import annotations

import os

import pytest

from mta.cli.main import default_spool as daemon_default_spool
from mta.daemon import ENQUEUE_SOCKET as DAEMON_SOCKET
from mta.enqueue.location import ENQUEUE_SOCKET, default_spool, offline_dir, socket_path
from mta.spool.paths import SpoolPaths


def test_socket_name_is_the_daemons() -> None:
    assert ENQUEUE_SOCKET == DAEMON_SOCKET


def test_offline_dir_is_the_spools(tmp_path: os.PathLike[str]) -> None:
    assert offline_dir(str(tmp_path)) == SpoolPaths(str(tmp_path)).offline
    assert socket_path(str(tmp_path)) == os.path.join(str(tmp_path), DAEMON_SOCKET)


@pytest.mark.parametrize("value", [None, "", "/some/spool"])
def test_default_spool_is_the_daemons(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("MTA_SPOOL", raising=False)
    else:
        monkeypatch.setenv("MTA_SPOOL", value)
    assert default_spool() == daemon_default_spool()
