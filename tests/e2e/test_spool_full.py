"""End to end: the spool's disk fills up during DATA.  The client gets a
temporary failure (452 4.3.1), nothing of the message stays behind, and the
daemon goes on accepting mail once there is room.  The spool is a small tmpfs
(root and CAP_SYS_ADMIN; skipped otherwise)."""

from __future__ import annotations

import os
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon
from tests.e2e.test_limits import config
from tests.e2e.test_listeners import CLIENT, MESSAGE, envelopes_for, free_ports


@pytest.fixture
def small_spool(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    spool = tmp_path / "spool"
    spool.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(spool)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield spool
    finally:
        subprocess.run(["umount", str(spool)], check=True)


def test_spool_full_during_data(tmp_path: Path, small_spool: Path) -> None:
    [port] = free_ports(1)
    d = Daemon(tmp_path, config(port))
    assert d.spool == small_spool
    d.start()
    try:
        big = MESSAGE + (b"x" * 998 + b"\r\n") * 3000  # 3 MB, the spool holds 2 MiB
        with smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT, timeout=30) as client:
            client.ehlo(CLIENT)
            client.mail("alice@example.org")
            client.rcpt("bob+big@localhost")
            code, text = client.data(big)
            assert (code, text) == (452, b"4.3.1 Insufficient system storage")
            # nothing half-written is left, and the session goes on
            assert list((d.spool / "incoming").rglob("*")) == []
            assert client.sendmail("alice@example.org", ["bob+small@localhost"], MESSAGE) == {}
        assert envelopes_for(d, "bob+big@localhost") == []
        assert len(envelopes_for(d, "bob+small@localhost")) == 1
    finally:
        d.stop()
