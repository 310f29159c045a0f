"""Differential tests: ``mta -n`` against OpenSMTPD 6.8's ``smtpd -n`` on a corpus.

Every ``corpus/NNN-name.conf`` starts with ``# expect: ok`` or ``# expect: error — why``.
Configurations that use features added after OpenSMTPD 6.8 carry a second line
``# after-6.8: feature``; for those only mta's verdict is checked.

Files the configurations refer to live in ``corpus/files/`` and are written as
``@FILES@/name``; the corpus is copied to a temporary directory and the placeholder is
replaced with that copy's absolute ``files`` path.

The two halves are separately selectable: ``-k test_opensmtpd_verdict`` checks that the
recorded expectations are honest (needs root and ``/usr/sbin/smtpd``, which
``scripts/test`` installs), ``-k test_mta_verdict`` checks mta itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from tests.config.corpus_util import CORPUS, copy_corpus

SMTPD = Path(os.environ.get("MTA_OPENSMTPD", "/usr/sbin/smtpd"))
TIMEOUT = 60.0
MIN_CORPUS = 60

EXPECT_RE = re.compile(r"^# expect: (?:(?P<ok>ok)|error \u2014 (?P<reason>\S.*))$")
AFTER_RE = re.compile(r"^# after-6\.8: (?P<feature>\S.*)$")
MTA_REFUSES_RE = re.compile(r"^# mta-refuses: (?P<text>\S.*)$")
NAME_RE = re.compile(r"^(?P<num>\d{3})-[a-z0-9][a-z0-9-]*\.conf$")

CONFIGS = sorted(CORPUS.glob("*.conf"))

Verdict = Literal["ok", "error"]


@dataclass(frozen=True)
class Expectation:
    verdict: Verdict
    reason: str | None
    after_68: str | None
    mta_refuses: str | None = None  # OpenSMTPD accepts it; mta cannot honour it yet


def read_expectation(path: Path) -> Expectation:
    """Parse the header of a corpus file; raise ValueError if it is malformed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{path.name}: empty file, no '# expect:' line")
    m = EXPECT_RE.match(lines[0])
    if m is None:
        raise ValueError(f"{path.name}: first line is not a valid '# expect:' line: {lines[0]!r}")
    after = AFTER_RE.match(lines[1]) if len(lines) > 1 else None
    verdict: Verdict = "ok" if m.group("ok") else "error"
    if after is not None and verdict != "ok":
        raise ValueError(f"{path.name}: '# after-6.8:' is only allowed on '# expect: ok' configs")
    refuses = next(filter(None, (MTA_REFUSES_RE.match(line) for line in lines[1:4])), None)
    return Expectation(
        verdict=verdict,
        reason=m.group("reason"),
        after_68=after.group("feature") if after else None,
        mta_refuses=refuses.group("text") if refuses else None,
    )


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the corpus with ``@FILES@`` replaced by the copy's ``files`` folder."""
    return copy_corpus(tmp_path_factory.mktemp("config-corpus"))


def run_check(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["MTA_SPOOL"] = str(cwd / "spool")
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def assert_verdict(
    who: str, expect: Expectation, proc: subprocess.CompletedProcess[str], path: Path
) -> None:
    output = f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    if expect.verdict == "ok":
        assert proc.returncode == 0, (
            f"{who} rejected {path.name} (exit {proc.returncode}), expected ok\n{output}"
        )
        # OpenSMTPD prints it on stderr (fprintf(stderr, ...)); accept either stream.
        said_ok = "configuration OK" in proc.stdout + proc.stderr
        assert said_ok, f"{who} did not print 'configuration OK'\n{output}"
    else:
        assert proc.returncode == 1, (
            f"{who} gave exit {proc.returncode} on {path.name}, "
            f"expected 1 ({expect.reason})\n{output}"
        )


def test_corpus_shape() -> None:
    assert len(CONFIGS) >= MIN_CORPUS, f"only {len(CONFIGS)} configs in {CORPUS}"
    numbers: set[str] = set()
    for path in CONFIGS:
        m = NAME_RE.match(path.name)
        assert m is not None, f"{path.name}: name must be NNN-short-name.conf"
        assert m.group("num") not in numbers, f"{path.name}: number used twice"
        numbers.add(m.group("num"))
        read_expectation(path)  # raises on a malformed header
    verdicts = [read_expectation(p).verdict for p in CONFIGS]
    assert "ok" in verdicts
    assert "error" in verdicts


def _ids(path: Path) -> str:
    return path.stem


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_opensmtpd_verdict(config: Path, corpus_copy: Path) -> None:
    """The recorded expectation is what OpenSMTPD 6.8's ``smtpd -n`` says."""
    expect = read_expectation(config)
    if expect.after_68 is not None:
        pytest.skip(f"feature added after OpenSMTPD 6.8: {expect.after_68}")
    if not SMTPD.exists():
        pytest.skip(f"{SMTPD} not installed (scripts/test installs Debian's opensmtpd)")
    if os.geteuid() != 0:
        pytest.skip("smtpd -n must run as root")
    path = corpus_copy / config.name
    proc = run_check([str(SMTPD), "-n", "-f", str(path)], corpus_copy)
    assert_verdict("OpenSMTPD smtpd -n", expect, proc, path)


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_mta_verdict(config: Path, corpus_copy: Path) -> None:
    """``mta -n`` agrees with the recorded expectation."""
    expect = read_expectation(config)
    path = corpus_copy / config.name
    proc = run_check([sys.executable, "-m", "mta", "-n", "-f", str(path)], corpus_copy)
    if expect.mta_refuses is not None:
        # accepted by OpenSMTPD, refused by mta with a clear message until it can honour it
        assert proc.returncode == 1, f"mta -n accepted {path.name}: {proc.stdout}{proc.stderr}"
        assert expect.mta_refuses in proc.stderr
        return
    assert_verdict("mta -n", expect, proc, path)
