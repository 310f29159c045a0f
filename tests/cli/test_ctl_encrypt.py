"""``mtactl encrypt``: hashes for a listener's credentials table, as smtpctl encrypt."""

from __future__ import annotations

import io

import pytest

from mta.auth.hashes import verify_password
from mta.cli import ctl


def test_encrypt_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["encrypt", "s3cret"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("$6$")
    assert verify_password(hashed, "s3cret")
    assert not verify_password(hashed, "other")


def test_encrypt_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("one\ntwo\n"))
    assert ctl.main(["encrypt"]) == 0
    first, second = capsys.readouterr().out.split()
    assert verify_password(first, "one") and verify_password(second, "two")
