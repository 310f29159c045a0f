"""Smoke tests for the benchmark harness (scripts/benchlib): each piece on loopback, fast.

The harness lives outside the package, so it is imported from ``scripts/``.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mta.config.load import load_config
from mta.config.model import LocalDelivery
from tests import oracles

SCRIPTS = oracles.SCRIPTS


def _load(name: str) -> ModuleType:
    return oracles.scripts_module(f"benchlib.{name}")


peers = _load("peers")
procs = _load("procs")
idle = _load("idle")
report = _load("report")
smtpsource = _load("smtpsource")
peer_mod = _load("aiosmtpd_peer")
opensmtpd = _load("opensmtpd")


def test_mta_config_is_valid_and_routes_the_bench_recipient(tmp_path: Path) -> None:
    conf = tmp_path / "smtpd.conf"
    conf.write_text(peers.mta_config(2525, tmp_path / "maildir"))
    result = load_config(str(conf))
    assert result.warnings == ()
    config = result.config
    assert [(lst.interface, lst.port) for lst in config.listeners] == [("127.0.0.1", 2525)]
    delivery = config.actions["recv"].method
    assert isinstance(delivery, LocalDelivery)
    assert (delivery.method, delivery.path) == ("maildir", str(tmp_path / "maildir"))
    assert delivery.userbase is not None
    assert [rule.action for rule in config.rules] == ["recv"]


def test_maildir_delivery_is_whole_and_in_new(tmp_path: Path) -> None:
    md = peer_mod.Maildir(tmp_path / "md")
    names = {md.unique_name() for _ in range(50)}
    assert len(names) == 50
    final = md.deliver(names.pop(), b"Subject: x\r\n\r\nbody\r\n")
    assert final.parent == tmp_path / "md" / "new"
    assert final.read_bytes() == b"Subject: x\r\n\r\nbody\r\n"
    assert list((tmp_path / "md" / "tmp").iterdir()) == []


@pytest.fixture
def peer_server(tmp_path: Path) -> Iterator[Any]:
    port = procs.free_port()
    server = peers.aiosmtpd_server(tmp_path, port, Path("/nonexistent/mta"))
    try:
        banner = server.start(timeout=20)
        assert banner.startswith("220 ")
        yield server
    finally:
        server.stop()
    assert server.process.returncode is not None
    assert not Path(f"/proc/{server.pid}").exists()


def test_aiosmtpd_peer_accepts_and_stores_durably(peer_server: Any, tmp_path: Path) -> None:
    server = peer_server
    port = server.port
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("bench@localhost", ["bench@localhost"], b"Subject: t\r\n\r\nhello\r\n")
    (stored,) = (tmp_path / "maildir" / "new").iterdir()
    data = stored.read_bytes()
    assert data.startswith(b"Return-Path: <bench@localhost>\r\nDelivered-To: bench@localhost\r\n")
    assert data.endswith(b"hello\r\n")
    assert server.rss_kib() > 0
    assert server.cpu_seconds() > 0


def test_idle_sessions_are_greeted_and_held(peer_server: Any) -> None:
    port = peer_server.port
    with idle.idle_sessions(port, 30, timeout=20) as result:
        assert (result.greeted, result.refused, result.failed) == (30, 0, 0)
        assert all(s.fileno() >= 0 for s in result.sockets)
    assert all(s.fileno() == -1 for s in result.sockets)


def test_idle_sessions_report_a_closed_port() -> None:
    port = procs.free_port()
    with idle.idle_sessions(port, 3, timeout=5) as result:
        assert (result.greeted, result.failed) == (0, 3)
        assert "connect" in result.first_problem


def _fake_source(tmp_path: Path, script: str) -> Any:
    binary = tmp_path / "smtp-source"
    binary.write_text("#!/bin/sh\n" + script + "\n")
    binary.chmod(0o755)
    return smtpsource.SmtpSource(binary, None, "fake")


def test_load_failure_and_timeout_are_reported(tmp_path: Path) -> None:
    failing = _fake_source(tmp_path, 'echo "smtp-source: fatal: 550 no"; exit 1')
    with pytest.raises(smtpsource.LoadError, match="550 no"):
        smtpsource.run_load(
            failing, 1, sessions=1, messages=1, size=1, sender="a@b", recipient="a@b", timeout=10
        )
    hanging = _fake_source(tmp_path, "exec sleep 30")
    with pytest.raises(smtpsource.LoadError, match="did not finish"):
        smtpsource.run_load(
            hanging, 1, sessions=1, messages=1, size=1, sender="a@b", recipient="a@b", timeout=0.3
        )


def test_command_sends_one_recipient_per_message() -> None:
    src = smtpsource.SmtpSource(Path("/x/smtp-source"), Path("/x/lib"), "v")
    argv = src.command(25, sessions=7, messages=9, size=4096, sender="s@h", recipient="r@h")
    pairs = dict(zip(argv[1:-1:2], argv[2:-1:2], strict=True))
    assert pairs == {
        "-s": "7",
        "-m": "9",
        "-l": "4096",
        "-r": "1",
        "-f": "s@h",
        "-t": "r@h",
        "-M": "bench.localhost",
    }
    assert argv[-1] == "127.0.0.1:25"
    assert src.env()["LD_LIBRARY_PATH"].split(":")[0] == "/x/lib"


def test_real_smtp_source_against_the_peer(peer_server: Any, tmp_path: Path) -> None:
    """Postfix's smtp-source, as scripts/setup --test (or scripts/bench) caches it."""
    src = oracles.scripts_module("oraclelib").smtp_source(oracles.CACHE)
    if src is None:
        oracles.missing(f"Postfix's smtp-source (apt-get download postfix) in {oracles.CACHE}")
    port = peer_server.port
    result = smtpsource.run_load(
        src, port, sessions=3, messages=12, size=512, sender="a@b", recipient="a@b", timeout=60
    )
    assert result.messages == 12
    assert result.rate > 0
    assert len(os.listdir(tmp_path / "maildir" / "new")) == 12


def test_verdicts_follow_the_numbers() -> None:
    mta = report.PeerResult("mta", rates={4: 300.0, 100: 290.0})
    peer = report.PeerResult("aiosmtpd", rates={4: 100.0, 100: 250.0})
    got = [(v.passed, v.text.split(":")[0]) for v in report.verdicts(mta, peer, [4, 100])]
    assert got == [(True, "4 sessions"), (False, "100 sessions"), (False, "no collapse")]
    mta.rates[100] = 400.0
    assert all(v.passed for v in report.verdicts(mta, peer, [4, 100]))
    del mta.rates[4]
    assert [v.passed for v in report.verdicts(mta, peer, [4, 100])] == [False, True, False]


def test_report_shows_failures_and_ratios() -> None:
    mta = report.PeerResult("mta", failures=["start: did not start: boom"])
    peer = report.PeerResult(
        "aiosmtpd", rates={4: 100.0}, rss_before_kib=2048, rss_idle_kib=4096, idle_greeted=1024
    )
    text = report.format_report(
        [mta, peer], concurrencies=[4], messages=10, size=1, idle=1024, tool="t"
    )
    assert "mta: failed: start: did not start: boom" in text
    assert "aiosmtpd: ok" in text
    assert "per idle session: aiosmtpd 2.0 KiB" in text
    assert "FAIL  4 sessions" in text


def test_accepted_counts_read_what_each_server_records(tmp_path: Path) -> None:
    assert peers.mta_accepted(tmp_path) == 0
    (tmp_path / "server.log").write_text(
        "1 smtp connected address=127.0.0.1\n"
        "1 smtp message msgid=0a size=10 nrcpt=1 proto=ESMTP\n"
        "2 smtp message msgid=0b size=10 nrcpt=1 proto=ESMTP\n"
    )
    assert peers.mta_accepted(tmp_path) == 2
    assert peers.maildir_accepted(tmp_path) == 0
    md = peer_mod.Maildir(tmp_path / "maildir")
    md.deliver(md.unique_name(), b"x\r\n")
    assert peers.maildir_accepted(tmp_path) == 1


def test_floor_peer_stores_durably_and_speaks_enough_smtp(tmp_path: Path) -> None:
    server = peers.floor_server(tmp_path, procs.free_port(), Path("/nonexistent/mta"))
    try:
        assert server.start(timeout=20).startswith("220 ")
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            body = b"Subject: t\r\n\r\nhello\r\n..dotted\r\n"
            client.sendmail("bench@localhost", ["bench@localhost"], body)
            client.sendmail("bench@localhost", ["bench@localhost"], b"second\r\n")
            assert client.docmd("VRFY x")[0] == 500
    finally:
        server.stop()
    stored = sorted(p.read_bytes() for p in (tmp_path / "maildir" / "new").iterdir())
    # the floor does no dot-unstuffing: it stores the data as it came
    assert stored == [b"Subject: t\r\n\r\nhello\r\n...dotted\r\n", b"second\r\n"]
    assert peers.maildir_accepted(tmp_path) == 2
    assert list((tmp_path / "maildir" / "tmp").iterdir()) == []


def test_report_compares_with_every_peer_and_the_floor() -> None:
    results = [
        report.PeerResult("mta", rates={4: 300.0}),
        report.PeerResult("aiosmtpd", rates={4: 200.0}),
        report.PeerResult("floor", rates={4: 400.0}),
    ]
    text = report.format_report(results, concurrencies=[4], messages=10, size=1, idle=0, tool="t")
    assert "mta/aiosmtpd" in text and "mta/floor" in text
    assert "1.50x" in text and "0.75x" in text
    assert "floor/aiosmtpd (the most any server this durable could reach): 2.00x at 4" in text
    assert "PASS  4 sessions: mta/aiosmtpd = 1.50x" in text


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return (
        subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False).returncode == 0
    )


PRIVATE_PATHS_PROBE = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from benchlib.opensmtpd import private_paths
private_paths(Path(sys.argv[2]))
Path("/var/spool/smtpd/probe").write_text("written in the namespace")
st = os.stat("/var/spool/smtpd")
print(json.dumps({"spool": [oct(st.st_mode & 0o7777), st.st_uid, st.st_gid],
                  "var_spool": os.listdir("/var/spool"), "run": os.listdir("/run")}))
"""


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m")
def test_private_paths_give_smtpd_its_spool_and_leave_the_host_alone(tmp_path: Path) -> None:
    """/var/spool/smtpd need not exist on the host (Debian's package does not make
    it), and nothing is made or mounted there: whatever the host has is the same after."""

    def host() -> tuple[bool, list[str], str]:
        mounts = Path("/proc/self/mountinfo").read_text()
        return os.path.lexists(opensmtpd.SPOOL), sorted(os.listdir("/var/spool")), mounts

    before = host()
    spool = tmp_path / "smtpd-spool"
    proc = subprocess.run(
        ["unshare", "-m", sys.executable, "-c", PRIVATE_PATHS_PROBE, str(SCRIPTS), str(spool)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # smtpd's own check: root-owned, mode 0711; the rest of /var/spool and /run hidden
    assert json.loads(proc.stdout) == {
        "spool": ["0o711", 0, 0],
        "var_spool": ["smtpd"],
        "run": [],
    }
    assert (spool / "probe").read_text() == "written in the namespace"  # on disk, the run's own
    assert host() == before


def test_private_paths_refuse_the_callers_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts: list[tuple[str, ...]] = []
    monkeypatch.setattr(opensmtpd, "_mount", lambda *args: mounts.append(args))
    with pytest.raises(opensmtpd.NamespaceError, match="not in a private mount namespace"):
        opensmtpd.private_paths(tmp_path / "smtpd-spool")
    monkeypatch.setattr(opensmtpd, "_check_private", lambda: None)
    for hidden in ("/run/mta-bench/smtpd-spool", "/var/spool/x/smtpd-spool"):
        with pytest.raises(opensmtpd.NamespaceError, match="which a tmpfs hides here"):
            opensmtpd.private_paths(Path(hidden))
    assert mounts == []
    assert not (tmp_path / "smtpd-spool").exists()
