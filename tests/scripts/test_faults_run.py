"""The fault campaign (scripts/faultlib) against the real daemon: its daemon handling, and
a quick run of a few scenarios end to end, as ``scripts/faults`` runs them.

Whatever the daemon of today does, the campaign must measure it and say so;
these tests check that the figures are measured and consistent, not what
they are.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from tests import oracles


def _load(name: str) -> ModuleType:
    return oracles.scripts_module(f"faultlib.{name}")


daemon_mod = _load("daemon")
mail = _load("mail")
clients = _load("clients")
procs = oracles.scripts_module("benchlib.procs")


def test_daemon_is_killed_whole_and_restarts_on_its_spool(shared: Path) -> None:
    space = daemon_mod.Workspace.make(shared / "w")
    daemon = daemon_mod.Daemon(space, procs.free_port())
    with daemon:
        daemon.start(paused=("mda",))
        assert daemon.capacity() and daemon.capacity() > 0
        tok = mail.token("t", 0)
        client = mail.connect(daemon.port)
        assert mail.send(client, tok).accepted
        client.close()
        assert daemon.queued() == 1
        pid = daemon.pid
        daemon.kill()
        assert not daemon.alive() and daemon.exit_text() == "signal 9"
        assert not Path(f"/proc/{pid}").exists()
        daemon.start()  # delivering now
        assert clients.settle(space.spool, space.maildir, timeout=30.0, still=0.3)
        assert mail.scan(space.maildir).copies == {tok: 1}
    assert not daemon.alive()
    assert space.log.read_text().count("mta: ready") == 2


def test_a_lowered_descriptor_limit_lowers_the_session_cap(shared: Path) -> None:
    space = daemon_mod.Workspace.make(shared / "w")
    with daemon_mod.Daemon(space, procs.free_port(), nofile=96) as daemon:
        daemon.start()
        cap = daemon.capacity()
    assert cap is not None and 0 < cap < 48


def test_quick_campaign_measures_and_reports(shared: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(oracles.SCRIPTS), str(oracles.REPO)])
    env["TMPDIR"] = str(shared)
    argv = [sys.executable, "-m", "faultlib", "--quick", "--strict", "--seed", "3"]
    argv += ["--scenarios", "crash-receive,garbage,corrupt-spool"]
    argv += ["--trials", "1", "--garbage", "20", "--corrupt", "2"]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert time.monotonic() - started < 90
    out, err = proc.stdout, proc.stderr
    assert proc.returncode in (0, 1), err
    rows = {
        cells[0]: cells
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| scenario")
        for cells in [[c.strip() for c in line.strip("|").split(" | ")]]
    }
    assert set(rows) == {
        "crash while receiving",
        "garbage input",
        "corrupt spool",
        "Maildir tmp/ orphans",
    }
    verdicts = {name: cells[-1] for name, cells in rows.items()}
    assert set(verdicts.values()) == {"pass"}, out  # every promise of issue 15 is kept
    assert proc.returncode == 0
    assert out.splitlines()[0].startswith("Fault campaign: mta ")
    assert "quick run" in out and "seed 3" in out
    # each trial said its figure as it went
    assert re.search(
        r"crash while receiving 1/1: killed [\d.]+ s after the first 250, \d+ ack", err
    )
    assert "garbage input: 20/20 connections" in err
    assert len(re.findall(r"corrupt spool \d/2: c\.\d+\.2048: ", err)) == 2
    # the figures add up
    crash = rows["crash while receiving"][4]
    acked = re.search(r"(\d+) lost of ([\d,]+) acknowledged", crash)
    assert acked and int(acked.group(2).replace(",", "")) > 0
    fates = re.search(r"of 2: (\d+) quarantined, (\d+) delivered damaged, (\d+) lost", out)
    assert fates and sum(int(n) for n in fates.groups()) == 2
    garbage = re.search(r"([\d,]+) refusals read, ([\d,]+) logged", rows["garbage input"][4])
    assert garbage and int(garbage.group(1).replace(",", "")) > 0
    # nothing left behind
    assert not list(shared.glob("mta-faults-*"))
