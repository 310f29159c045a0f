"""scripts/setup's stamp: pip runs only when pyproject.toml, the script, the Python
of the venv or the extras wanted changed.  The script runs on a copy of the
repository's skeleton whose .venv/bin/python is a fake that records its calls
(no pip, no network, and MTA_SETUP_NO_APT=1: no apt-get)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import oracles

FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
if [ "$1 $2" = "-m pip" ] && [ -n "$FAKE_PIP_FAIL" ]; then
    echo "ERROR: boom from pip"
    exit 1
fi
case "$*" in
*db]) [ -n "$FAKE_DB_FAIL" ] && echo "error: berkeleydb did not build" && exit 1 ;;
esac
exit 0
"""
DB = ",db" if os.path.exists("/usr/include/db.h") else ""  # the rule of scripts/setup


class Checkout:
    """A repository skeleton with an installed (fake) venv."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "scripts").mkdir(parents=True)
        shutil.copy2(oracles.SCRIPTS / "setup", root / "scripts" / "setup")
        shutil.copy2(oracles.REPO / "pyproject.toml", root / "pyproject.toml")
        bindir = root / ".venv" / "bin"
        bindir.mkdir(parents=True)
        (bindir / "python").write_text(FAKE_PYTHON)
        (bindir / "mta").write_text("")
        for name in ("python", "mta"):
            (bindir / name).chmod(0o755)
        (root / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.7\n")
        self.calls = root / "calls"

    def setup(
        self, *args: str, fail: bool = False, db_fails: bool = False, path: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.calls.write_text("")
        env = {
            **os.environ,
            "FAKE_LOG": str(self.calls),
            "MTA_SETUP_NO_APT": "1",
            "PYTHON": sys.executable,
        }
        if fail:
            env["FAKE_PIP_FAIL"] = "1"
        if db_fails:
            env["FAKE_DB_FAIL"] = "1"
        if path is not None:
            env["PATH"] = path
        return subprocess.run(
            [str(self.root / "scripts" / "setup"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    def pip_installs(self) -> list[str]:
        return [
            line.removeprefix("-m pip install -e ")
            for line in self.calls.read_text().splitlines()
            if line.startswith("-m pip install -e ")
        ]

    def stamp(self) -> list[str]:
        return (self.root / ".venv" / "mta-setup.stamp").read_text().splitlines()


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    return Checkout(tmp_path / "repo")


def test_pip_runs_once_then_not_until_something_changes(checkout: Checkout) -> None:
    first = checkout.setup()
    assert first.returncode == 0, first.stderr
    assert checkout.pip_installs() == ["." + (f"[{DB[1:]}]" if DB else "")]
    assert "installing mta" in first.stderr
    assert checkout.stamp()[1] == DB[1:]
    again = checkout.setup()
    assert (again.returncode, again.stderr, checkout.calls.read_text()) == (0, "", "")
    pyproject = checkout.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# changed\n")
    assert checkout.setup().returncode == 0
    assert len(checkout.pip_installs()) == 1
    cfg = checkout.root / ".venv" / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace("3.11.7", "3.12.1"))
    assert checkout.setup().returncode == 0
    assert len(checkout.pip_installs()) == 1
    (checkout.root / ".venv" / "bin" / "mta").unlink()  # a venv that lost mta
    assert checkout.setup().returncode == 0
    assert len(checkout.pip_installs()) == 1


def test_the_test_extra_is_added_when_only_the_run_extras_are_in(checkout: Checkout) -> None:
    assert checkout.setup().returncode == 0
    assert checkout.setup("--test").returncode == 0
    assert checkout.pip_installs() == [f".[test{DB}]"]
    assert checkout.stamp()[1] == f"test{DB}"
    assert "-m oraclelib" in checkout.calls.read_text().splitlines()
    assert checkout.setup("--test").returncode == 0
    assert checkout.pip_installs() == []
    assert checkout.setup().returncode == 0  # the test extra includes what a run needs
    assert checkout.calls.read_text() == ""
    script = checkout.root / "scripts" / "setup"
    script.write_text(script.read_text() + "\n")
    assert checkout.setup().returncode == 0
    assert checkout.stamp()[1] == DB[1:]  # pyproject may have changed the test extra


def test_a_failed_install_shows_pip_and_keeps_no_stamp(checkout: Checkout) -> None:
    failed = checkout.setup(fail=True)
    assert failed.returncode != 0
    assert "ERROR: boom from pip" in failed.stderr
    assert not (checkout.root / ".venv" / "mta-setup.stamp").exists()
    log = checkout.root / ".cache" / "setup.log"
    assert "ERROR: boom from pip" in log.read_text()
    assert checkout.setup().returncode == 0
    assert len(checkout.pip_installs()) == 1
    assert "ERROR" not in log.read_text()  # each run that works begins it afresh
    assert checkout.setup().returncode == 0
    assert "==> env BERKELEYDB_DIR=/usr .venv/bin/python -m pip install -e ." in log.read_text()


def test_unknown_arguments_are_refused(checkout: Checkout) -> None:
    refused = checkout.setup("--tests")
    assert (refused.returncode, refused.stderr) == (2, "usage: scripts/setup [--test]\n")
    assert checkout.calls.read_text() == ""


@pytest.mark.skipif(not DB, reason="the db extra is only tried with /usr/include/db.h")
def test_without_berkeley_db_it_installs_the_rest_and_does_not_retry(checkout: Checkout) -> None:
    done = checkout.setup("--test", db_fails=True)
    assert done.returncode == 0, done.stderr
    assert "the Berkeley DB extra did not build" in done.stderr
    assert "berkeleydb did not build" not in done.stderr  # that is in the log
    assert checkout.pip_installs() == [".[test,db]", ".[test]"]
    assert checkout.stamp()[1] == "test,db"  # tried: not again until something changes
    assert checkout.setup("--test", db_fails=True).returncode == 0
    assert checkout.pip_installs() == []


def test_missing_debian_packages_are_named_when_apt_get_cannot_run(
    checkout: Checkout, tmp_path: Path
) -> None:
    """MTA_SETUP_NO_APT=1 (as without root): it says what to install, then goes on."""
    bindir = tmp_path / "bin"  # the tools the script uses, but no swaks, cc or dpkg-source
    bindir.mkdir()
    for tool in "bash env dirname mkdir cat sha256sum cut wc tail head sed".split():
        found = shutil.which(tool)
        assert found is not None, tool
        (bindir / tool).symlink_to(found)
    assert checkout.setup().returncode == 0
    done = checkout.setup("--test", path=str(bindir))
    assert done.returncode == 0, done.stderr
    (install,) = [line for line in done.stderr.splitlines() if "apt-get install" in line]
    assert install.startswith("scripts/setup: as root, run: apt-get install ")
    assert {"swaks", "gcc", "dpkg-dev"} <= set(install.split()[6:])
    assert checkout.pip_installs() == [f".[test{DB}]"]
