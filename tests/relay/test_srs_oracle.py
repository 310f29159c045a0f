"""SRS checked against the real OpenSMTPD 6.8: what it writes, we write; what
we write, it reads.  It runs in private mount and network namespaces
(``unshare -m -n``, root only) with its own spool, relaying to a recording
sink; the machine's own smtpd and queue are never touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mta.relay.srs import srs_decode, srs_encode, srs_timestamp

SMTPD = Path("/usr/sbin/smtpd")
DRIVER = Path(__file__).with_name("srs_oracle_driver.py")
KEY = "oracle-key"


def _namespaces() -> bool:
    """Whether private mount and network namespaces can be made here."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "-n", "true"], capture_output=True, check=False)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not SMTPD.exists() or not _namespaces(),
    reason="needs OpenSMTPD (scripts/setup --test installs it), root and unshare -m -n",
)


def relayed_by_opensmtpd(tmp_path: Path, messages: list[tuple[str, str]]) -> list[list[object]]:
    proc = subprocess.run(
        ["unshare", "-m", "-n", sys.executable, str(DRIVER), str(tmp_path), KEY],
        input=json.dumps(messages),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log = (
        (tmp_path / "smtpd.log").read_text(errors="replace")
        if (tmp_path / "smtpd.log").exists()
        else ""
    )
    assert proc.returncode == 0, f"{proc.stderr}\n{log}"
    received: list[list[object]] = json.loads(proc.stdout)["received"]
    return received


def test_opensmtpd_and_mta_agree_on_srs(tmp_path: Path) -> None:
    """6.8 decodes an SRS bounce into the envelope's ``rcpt`` but matches the
    rules on its ``dest``, so a bounce to an SRS address of a local domain is
    refused there (550); later versions (and mta) decode ``dest``.  So only
    the writing side is compared with 6.8; the reading side reads what 6.8 wrote."""
    now = time.time()
    hop = srs_encode("erin@example.com", "hop.test", "another forwarder", now)
    received = relayed_by_opensmtpd(
        tmp_path,
        [
            ("alice@example.org", "bob@localhost"),  # forwarded by alias: SRS0
            (hop, "bob@localhost"),  # an SRS0 sender forwarded again: SRS1
        ],
    )
    if srs_timestamp(now) != srs_timestamp(time.time()):
        pytest.skip("the day changed during the test")
    assert received[0] == [
        srs_encode("alice@example.org", "localhost", KEY, now),
        ["carol@far.test"],
    ]
    assert received[1] == [srs_encode(hop, "localhost", KEY, now), ["carol@far.test"]]
    assert srs_decode(str(received[0][0]), KEY, None, 4, now) == "alice@example.org"
    assert srs_decode(str(received[1][0]), KEY, None, 4, now) == hop
