"""One daemon per spool: the lock holds against another process, and is gone
with its holder, even when that holder is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mta.spool.lock import LOCK_FILE, SpoolInUse, spool_lock

HOLD = (
    "import sys, time; from mta.spool.lock import spool_lock\n"
    "with spool_lock(sys.argv[1]):\n"
    "    print('locked', flush=True); time.sleep(60)\n"
)


def hold(directory: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_another_process_holds_the_spool(tmp_path: Path) -> None:
    holder = hold(tmp_path)
    try:
        with (
            pytest.raises(
                SpoolInUse, match=rf"another mta is running on this spool \(pid {holder.pid}\)"
            ),
            spool_lock(str(tmp_path)),
        ):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    # killed: the kernel released it
    with spool_lock(str(tmp_path)):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_a_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    """A delivery child forked by the daemon must not hold a killed daemon's spool."""
    script = (
        "import os, sys, time; from mta.spool.lock import spool_lock\n"
        "with spool_lock(sys.argv[1]):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(30); os._exit(0)\n"
        "    print('locked', flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    assert parent.stdout.readline() == "locked\n"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    try:
        with spool_lock(str(tmp_path)):
            pass
    finally:
        subprocess.run(["pkill", "-KILL", "-f", f"spool_lock.*{tmp_path}"], check=False)


def test_an_unusable_spool(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(Exception, match="cannot open"), spool_lock(str(tmp_path)):
        pass
