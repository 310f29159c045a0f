"""The contract tests of mta.testing, run as an ordinary user would run them.

CI runs the suite as root, from a checkout and a venv (under /root) that no other user
can read. So, as root, this builds mta's wheel, installs it with pytest into a fresh
venv made by the system's Python in a world-readable directory, copies the contract
tests there and runs them as uid/gid 65534 (nobody/nogroup), importing mta from the
wheel. Run as an ordinary user, the ordinary run of those tests is this test already.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.testing.test_plugin import ROOT, build_wheel

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="not root: the ordinary run of the contract tests is this test"
)

NOBODY = 65534
# an interpreter every user can run (scripts/setup --test installs it, with its venv module)
SYSTEM_PYTHON = pathlib.Path("/usr/bin/python3")
HERE = pathlib.Path(__file__)
# the contract tests: every test module here but this one (tests/testing/web needs a
# browser: it has its own run); with them, the modules of tests/ they import (found
# in their imports) and these: the package markers, the shared fixtures, and from the
# top the pytest settings, the README's examples, the source test_plugin builds from
CONTRACT = tuple(sorted(p.name for p in HERE.parent.glob("test_*.py") if p != HERE))
ALWAYS = ("tests/__init__.py", "tests/conftest.py", "tests/testing/__init__.py")
TOP = ("pyproject.toml", "README.md")
# the test tools, at the versions this suite runs with
TOOLS = ("pytest", "pytest-trio")
# what the nested pip (test_plugin's wheel) needs to find packages as this run does
PASSED_ON = ("LANG", "LC_ALL", "SSL_CERT_FILE", "http_proxy", "https_proxy", "no_proxy")

# the copied tests must import the wheel's mta, never the copy of the source beside them
WHEELS_MTA = f"""\
import os
import sys

import mta


def test_the_suite_runs_the_wheels_mta_as_nobody():
    assert mta.__file__.startswith(sys.prefix + os.sep), mta.__file__
    assert (os.getuid(), os.getgid(), os.getgroups()) == ({NOBODY}, {NOBODY}, [])
"""


@pytest.fixture
def world_readable() -> Iterator[pathlib.Path]:
    """A directory in /tmp that uid 65534 can read (pytest's tmp_path is root's, 0700)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="mta-unprivileged-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _run(
    argv: list[str | os.PathLike[str]],
    *,
    env: dict[str, str] | None = None,
    cwd: pathlib.Path | None = None,
    nobody: bool = False,
    timeout: float = 300,
) -> str:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env=env,
        user=NOBODY if nobody else None,
        group=NOBODY if nobody else None,
        extra_groups=[] if nobody else None,
    )
    if proc.returncode != 0:
        pytest.fail(f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}", False)
    return proc.stdout


def _without_checkout() -> dict[str, str]:
    """This environment less what points at the checkout or the suite's venv."""
    drop = ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _venv(into: pathlib.Path, wheel: pathlib.Path) -> pathlib.Path:
    """A venv of the system's Python with the wheel (and its web extra) and the test tools.

    Its dependencies are constrained to the versions this suite runs with, so both runs
    test the same code; pip gets them as scripts/setup does (its cache, its indexes)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} is missing: scripts/setup --test installs it", False)
    venv = into / "venv"
    _run([SYSTEM_PYTHON, "-m", "venv", venv])
    here = {
        dist.metadata["Name"]: dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower() != "mta"
    }
    constraints = into / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in here.items()))
    tools = [f"{name}=={importlib.metadata.version(name)}" for name in TOOLS]
    env = _without_checkout() | {"PIP_ROOT_USER_ACTION": "ignore"}
    python = venv / "bin" / "python"
    _run(
        [python, "-m", "pip", "install", "-q", "-c", constraints, f"{wheel}[web]", *tools], env=env
    )
    return venv


def _helpers(modules: list[pathlib.Path]) -> set[pathlib.Path]:
    """The files of tests/ that ``modules`` import, and theirs in turn."""
    found: set[pathlib.Path] = set()
    todo = list(modules)
    while todo:
        tree = ast.parse(todo.pop().read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                path = ROOT.joinpath(*name.split(".")).with_suffix(".py")
                if name.startswith("tests.") and path.is_file() and path not in found:
                    found.add(path)
                    todo.append(path)
    return found


def _suite(into: pathlib.Path) -> pathlib.Path:
    """The contract tests and what they need, as a user's checkout has them."""
    suite = into / "suite"
    (suite / "tests" / "testing").mkdir(parents=True)
    for name in TOP:
        shutil.copy(ROOT / name, suite / name)
    shutil.copytree(ROOT / "mta", suite / "mta", ignore=shutil.ignore_patterns("__pycache__"))
    tests = [HERE.parent / name for name in CONTRACT]
    for path in {*tests, *_helpers(tests), *(ROOT / name for name in ALWAYS)}:
        (suite / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, suite / path.relative_to(ROOT))
    (suite / "tests" / "testing" / "test_wheels_mta.py").write_text(WHEELS_MTA)
    return suite


def test_the_contract_tests_pass_as_nobody_from_the_wheel(
    world_readable: pathlib.Path,
) -> None:
    venv = _venv(world_readable, build_wheel(world_readable))
    suite = _suite(world_readable)
    home, tmp = world_readable / "home", world_readable / "tmp"
    for path in (home, tmp):
        path.mkdir()
        os.chown(path, NOBODY, NOBODY)
    env = {k: v for k, v in os.environ.items() if k in PASSED_ON or k.startswith("PIP_")} | {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
    }
    # --import-mode=append and -P (no working directory on sys.path): the copied
    # source (there for test_plugin's wheel) comes after the venv's mta
    argv: list[str | os.PathLike[str]] = [venv / "bin" / "python", "-P", "-m", "pytest", "-q"]
    argv += ["-p", "no:cacheprovider"]
    argv += ["--import-mode=append", "--rootdir", suite, "-c", suite / "pyproject.toml"]
    argv += [suite / "tests" / "testing"]
    out = _run(argv, env=env, cwd=home, nobody=True)
    assert " passed" in out.splitlines()[-1], out
    # nothing left out for want of a part of the wheel (the web inbox's examples skip
    # then): the only skips are the tests of what root does (test_server's "run
    # unprivileged")
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert all("run unprivileged" in line for line in skipped), out
