"""protocol_filter.py spoken to directly, as a server would, over its stdin and
stdout: the handshake of protocol 0.6 (OpenSMTPD 6.8) and 0.7 (7.x), the
answers its script asks for, data-line changes and misbehaviours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

FILTER = Path(__file__).with_name("protocol_filter.py")
SESSION = "de49ca932ceadb56"
TOKEN = "146e95a85d08b965"

HANDSHAKE_68 = [
    "config|smtpd-version|6.8.0p2",
    "config|smtp-session-timeout|300",
    "config|subsystem|smtp-in",
    "config|admd|mx.test",
    "config|ready",
]
HANDSHAKE_7 = [
    "config|smtpd-version|7.6.0",
    "config|protocol|0.7",
    "config|smtp-session-timeout|300",
    "config|subsystem|smtp-in",
    "config|admd|mx.test",
    "config|ready",
]


def request(phase: str, param: str, version: str = "0.6") -> str:
    return f"filter|{version}|1796663008.663825|smtp-in|{phase}|{SESSION}|{TOKEN}|{param}"


def report(event: str, params: str, version: str = "0.6") -> str:
    return f"report|{version}|1796663008.663741|smtp-in|{event}|{SESSION}|{params}"


def run_filter(
    tmp_path: Path, script: dict[str, Any], lines: list[str], timeout: float = 10
) -> tuple[list[str], list[str], int]:
    """The filter's output lines, its log lines and its exit status, when fed ``lines``
    (and then end of input)."""
    (tmp_path / "script.json").write_text(json.dumps(script))
    log = tmp_path / "filter.log"
    proc = subprocess.run(
        [sys.executable, str(FILTER), str(log), str(tmp_path / "script.json")],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.stdout.splitlines(), log.read_text().splitlines(), proc.returncode


def test_registers_every_phase_and_report_by_default(tmp_path: Path) -> None:
    out, log, status = run_filter(tmp_path, {}, HANDSHAKE_68)
    assert status == 0
    assert out[0] == "register|report|smtp-in|*"
    assert out[1:-1] == [
        f"register|filter|smtp-in|{phase}"
        for phase in (
            *("connect", "helo", "ehlo", "starttls", "auth", "mail-from", "rcpt-to"),
            *("data", "data-line", "rset", "quit", "noop", "help", "wiz", "commit"),
        )
    ]
    assert out[-1] == "register|ready"
    assert log[: len(HANDSHAKE_68)] == [f"< {line}" for line in HANDSHAKE_68]
    assert log[len(HANDSHAKE_68) :] == [f"> {line}" for line in out]


def test_registers_what_the_script_names(tmp_path: Path) -> None:
    script = {"reports": ["link-connect", "tx-commit"], "phases": ["mail-from"]}
    out, _, _ = run_filter(tmp_path, script, HANDSHAKE_7)
    assert out == [
        "register|report|smtp-in|link-connect",
        "register|report|smtp-in|tx-commit",
        "register|filter|smtp-in|mail-from",
        "register|ready",
    ]


@pytest.mark.parametrize(("handshake", "version"), [(HANDSHAKE_68, "0.6"), (HANDSHAKE_7, "0.7")])
def test_answers_with_the_session_before_the_token(
    tmp_path: Path, handshake: list[str], version: str
) -> None:
    script = {"responses": {"mail-from": "reject|550 5.7.1 not you", "rcpt-to": "junk"}}
    lines = [
        *handshake,
        report("link-connect", "localhost|pass|127.0.0.1:39760|127.0.0.1:25", version),
        request("connect", "localhost|127.0.0.1", version),
        request("mail-from", "a@ext.test", version),
        request("rcpt-to", "b@ext.test", version),
    ]
    out, log, _ = run_filter(tmp_path, script, lines)
    assert out[-3:] == [
        f"filter-result|{SESSION}|{TOKEN}|proceed",
        f"filter-result|{SESSION}|{TOKEN}|reject|550 5.7.1 not you",
        f"filter-result|{SESSION}|{TOKEN}|junk",
    ]
    assert f"< {lines[5 if version == '0.6' else 6]}" in log


def test_before_protocol_05_the_token_comes_first(tmp_path: Path) -> None:
    """As libopensmtpd does for servers older than 0.5 (known from their first line)."""
    out, _, _ = run_filter(tmp_path, {}, ["config|ready", request("helo", "x.test", "0.4")])
    assert out[-1] == f"filter-result|{TOKEN}|{SESSION}|proceed"


def test_a_list_gives_each_request_its_answer_the_last_repeating(tmp_path: Path) -> None:
    script = {"responses": {"rcpt-to": ["proceed", "rewrite|<c@d.test>", "report|many"]}}
    rcpts = [request("rcpt-to", f"r{i}@x.test", "0.7") for i in range(4)]
    out, _, _ = run_filter(tmp_path, script, [*HANDSHAKE_7, *rcpts])
    assert [line.split("|", 3)[3] for line in out[-4:]] == [
        "proceed",
        "rewrite|<c@d.test>",
        "report|many",
        "report|many",
    ]


def data_lines(lines: list[str]) -> list[str]:
    return [request("data-line", line) for line in lines]


MESSAGE = ["Received: from x", "\tby mx.test", "Subject: s", "", "body|with|pipes", "..dot", "."]


def test_data_lines_echoed_with_pipes_and_dots_kept(tmp_path: Path) -> None:
    out, _, _ = run_filter(tmp_path, {}, [*HANDSHAKE_68, *data_lines(MESSAGE)])
    assert out[-len(MESSAGE) :] == [f"filter-dataline|{SESSION}|{TOKEN}|{line}" for line in MESSAGE]


def test_data_lines_with_a_header_and_a_new_body(tmp_path: Path) -> None:
    script = {"data_line": {"header": ["X-Filtered: yes"], "body": ["new", "..body"]}}
    lines = [*HANDSHAKE_68, *data_lines(MESSAGE), *data_lines(MESSAGE)]
    out, _, _ = run_filter(tmp_path, script, lines)
    prefix = f"filter-dataline|{SESSION}|{TOKEN}|"
    sent = [line.removeprefix(prefix) for line in out if line.startswith(prefix)]
    one = ["X-Filtered: yes", *MESSAGE[:4], "new", "..body", "."]
    assert sent == one + one  # each message of the session is changed alike


def test_exit_at_a_phase(tmp_path: Path) -> None:
    script = {"misbehave": {"phase": "mail-from", "mode": "exit", "status": 3}}
    lines = [
        *HANDSHAKE_68,
        request("helo", "x"),
        request("mail-from", "a@b"),
        request("rcpt-to", "c@d"),
    ]
    out, log, status = run_filter(tmp_path, script, lines)
    assert status == 3
    assert out[-1] == f"filter-result|{SESSION}|{TOKEN}|proceed"  # helo's answer, then nothing
    assert log[-1] == "# exit 3 at mail-from"


def test_garbage_at_a_phase_and_at_the_handshake(tmp_path: Path) -> None:
    script = {"misbehave": {"phase": "mail-from", "mode": "garbage", "text": "what|ever"}}
    out, _, _ = run_filter(tmp_path, script, [*HANDSHAKE_68, request("mail-from", "a@b")])
    assert out[-1] == "what|ever"
    script = {"misbehave": {"phase": "ready", "mode": "garbage"}}
    out, _, _ = run_filter(tmp_path, script, HANDSHAKE_68)
    assert out == ["garbage from the filter"]  # instead of registering


def test_slow_answers(tmp_path: Path) -> None:
    script = {"misbehave": {"phase": "data-line", "mode": "slow", "delay": 0.2}}
    started = time.monotonic()
    out, _, _ = run_filter(tmp_path, script, [*HANDSHAKE_68, *data_lines(["a", "b", "."])])
    assert time.monotonic() - started >= 0.6
    assert len([line for line in out if line.startswith("filter-dataline|")]) == 3


def test_hang_keeps_reading_and_never_answers(tmp_path: Path) -> None:
    (tmp_path / "script.json").write_text(
        json.dumps({"misbehave": {"phase": "mail-from", "mode": "hang"}})
    )
    log = tmp_path / "filter.log"
    with subprocess.Popen(
        [sys.executable, str(FILTER), str(log), str(tmp_path / "script.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        hang(proc, log)


def hang(proc: subprocess.Popen[bytes], log: Path) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    try:
        text = "".join(f"{line}\n" for line in [*HANDSHAKE_68, request("mail-from", "a@b")])
        proc.stdin.write(text.encode())
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while "# hang at mail-from" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.stdin.write(f"{report('link-disconnect', '')}\n".encode())
        proc.stdin.flush()
        while "|link-disconnect|" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        assert proc.poll() is None
        proc.stdin.close()
        assert proc.wait(10) == 0
        out = proc.stdout.read().decode().splitlines()
        assert out[-1] == "register|ready"  # nothing after it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_runs_on_debians_python_from_the_standard_library_alone(tmp_path: Path) -> None:
    """OpenSMTPD runs it with /usr/bin/python3, outside the venv, as its own user."""
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("no /usr/bin/python3 (scripts/setup --test installs Debian's python3)")
    (tmp_path / "script.json").write_text("{}")
    proc = subprocess.run(
        [
            "/usr/bin/python3",
            "-I",
            "-S",
            str(FILTER),
            str(tmp_path / "log"),
            str(tmp_path / "script.json"),
        ],
        input="config|ready\n",
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "register|ready"
