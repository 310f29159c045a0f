"""Logs: nothing a client sends can forge a log line, and no line is lost
for want of syslog."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.log import _escaped, get_logger, quote, setup_logging, syslog_available, visible


def test_visible_escapes_controls() -> None:
    assert visible("a\r\nb\tc\x00") == "a\\r\\nb\\tc\\000"
    assert visible("back\\slash") == "back\\\\slash"
    assert visible("x" * 300, limit=5) == "xxxxx..."


def test_visible_escapes_bytes_that_were_no_utf8() -> None:
    line = b"XYZ \xff\xe9t\xc3\xa9".decode("utf-8", "surrogateescape")
    shown = visible(line)
    assert shown == "XYZ \\377\\351t\u00e9"
    shown.encode("utf-8")  # a log handler can write it


def test_quote() -> None:
    assert quote('say "hi"\n') == '"say \\"hi\\"\\n"'


@given(st.text(max_size=40), st.integers(min_value=0, max_value=50))
def test_visible_fast_path_agrees_with_escaping(text: str, limit: int) -> None:
    assert visible(text, limit) == _escaped(text, limit)


def test_syslog_available_only_when_a_daemon_answers(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    assert not syslog_available(path)  # missing
    (tmp_path / "log").write_text("")
    assert not syslog_available(path)  # not a socket
    (tmp_path / "log").unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as daemon:
        daemon.bind(path)
        assert syslog_available(path)
    assert not syslog_available(path)  # a socket nobody reads


def test_detached_without_syslog_writes_stamped_lines_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging(foreground=False, syslog=False)
    try:
        get_logger("test").info("mta: hello")
        line = capsys.readouterr().err.rstrip("\n")
        assert line.endswith(" mta: hello") and line != "mta: hello"
        setup_logging(foreground=True)
        get_logger("test").info("mta: plain")
        assert capsys.readouterr().err == "mta: plain\n"
    finally:
        for handler in list(logging.getLogger("mta").handlers):
            logging.getLogger("mta").removeHandler(handler)
        logging.getLogger("mta").propagate = True
        logging.getLogger("mta").setLevel(logging.NOTSET)
