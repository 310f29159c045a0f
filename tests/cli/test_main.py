"""The ``mta`` command line: -n, -v, -D and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.cli.main import main

GOOD = """
listen on 127.0.0.1 port 2525
action "local" maildir "/tmp/x/%{user.username}"
match from any for local action "local"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "smtpd.conf"
    path.write_text(text)
    return str(path)


def test_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-n", "-f", write(tmp_path, GOOD)]) == 0
    out = capsys.readouterr()
    assert "configuration OK" in out.err
    assert out.out == ""


def test_check_verbose_prints_canonical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-n", "-v", "-f", write(tmp_path, GOOD)]) == 0
    out = capsys.readouterr().out
    assert 'listen on "127.0.0.1" port 2525' in out
    assert 'match from any for local action "local"' in out


def test_check_errors_name_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD + 'match for any action "nosuch"\n')
    assert main(["-n", "-f", path]) == 1
    err = capsys.readouterr().err
    assert f"{path}:5: no such dispatcher: nosuch" in err
    assert "configuration OK" not in err


def test_macro_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = 'lport = "2525"\nlisten on 127.0.0.1 port $lport\n' + GOOD.split("\n", 2)[2]
    path = write(tmp_path, text)
    assert main(["-n", "-v", "-f", path, "-D", "lport=2600"]) == 0
    assert "port 2600" in capsys.readouterr().out


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-n", "-f", str(tmp_path / "none.conf")]) == 1
    assert "cannot read configuration" in capsys.readouterr().err


def test_default_configuration_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    conf = Path(__file__).resolve().parents[2] / "conf" / "smtpd.conf"
    assert main(["-n", "-f", str(conf)]) == 0
