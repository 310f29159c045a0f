"""Unit tests for the fault campaign's pieces (scripts/faultlib): the table, messages, parsing.

The harness lives outside the package, so it is imported from ``scripts/``.
The runs against the real daemon are in ``test_faults_run.py``.
"""

from __future__ import annotations

import random
import time
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from mta.spool.msgfile import encode_tail, read_tail
from tests import oracles


def _load(name: str) -> ModuleType:
    return oracles.scripts_module(f"faultlib.{name}")


report = _load("report")
mail = _load("mail")
wire = _load("wire")
flood = _load("flood")
fulldisk = _load("fulldisk")
fulldisk_run = _load("fulldisk_run")
corrupt = _load("corrupt")
attacks = _load("attacks")
clients = _load("clients")
daemon_mod = _load("daemon")
main_mod = _load("main")
crash = _load("crash")
orphans = _load("orphans")


def _row(verdict: str, result: str = "r") -> object:
    ok = verdict == "pass"
    return report.Row.judged("s", "1", "m", "p", result, ok)


def test_table_lines_up_and_keeps_cells_on_one_line() -> None:
    rows = [
        report.Row.judged("crash", "10 kills", "lost", "0 lost", "0 lost | of 5\nmore", True),
        report.Row.skipped("full disk", "replies", "4xx", "needs root"),
        report.Row.broken("flood", "time", "5 s", "mta did not start"),
    ]
    text = report.format_table(rows, "Caption line")
    lines = text.splitlines()
    assert lines[0] == "Caption line" and lines[1] == ""
    table = lines[2:]
    assert len(table) == 2 + len(rows)
    assert len({len(line) for line in table}) == 1  # every line padded to the same width
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["scenario", "trials", "measured", "promise", "result", "verdict"]
    assert set(table[1]) == {"|", "-"}
    assert "0 lost \\| of 5 more" in table[2]  # the pipe escaped, the newline gone
    assert table[2].rstrip().endswith("| pass    |")
    assert "skipped: needs root" in table[3] and table[3].rstrip().endswith("| skipped |")
    assert "error: mta did not start" in table[4]


def test_exit_status_follows_the_verdicts() -> None:
    passed, failed = _row("pass"), _row("FAIL")
    skipped = report.Row.skipped("s", "m", "p", "why")
    broken = report.Row.broken("s", "m", "p", "why")
    assert report.exit_status([passed, failed, skipped], strict=False) == 0
    assert report.exit_status([passed, failed], strict=True) == 1
    assert report.exit_status([passed, skipped], strict=True) == 0
    assert report.exit_status([passed, broken], strict=False) == 2
    assert report.exit_status([failed, broken], strict=True) == 2


def test_spread_and_held_figures() -> None:
    assert report.spread([3, 1, 39, 52]) == "median 21, max 52"
    assert report.spread([1, 2]) == "median 1.5, max 2"
    assert report.spread([]) == "-"
    assert report.held(36.0, 0.01) == "36.0 s (1.0 h unscaled)"
    assert report.held(3.0, 0.01) == "3.0 s (5.0 min unscaled)"
    assert report.held(0.2, 0.01) == "0.2 s (20 s unscaled)"


def test_body_is_a_function_of_the_token() -> None:
    tok = mail.token("x", 3, 500)
    assert tok == "x.3.500"
    body = mail.body_of(tok)
    assert body == mail.body_of(tok)
    assert body != mail.body_of(mail.token("x", 4, 500))
    assert len(body) == 500
    assert all(len(line) <= mail.LINE for line in body.splitlines())
    assert set(body) <= set(b"abcdefghijklmnopqrstuvwxyz\n")
    msg = mail.message(tok)
    assert b"\n" not in msg.replace(b"\r\n", b"")
    assert f"Subject: fault {tok}\r\n".encode() in msg


def _delivered(tok: str) -> bytes:
    """What a Maildir file looks like: headers added on top, LF line ends."""
    sent: bytes = mail.message(tok)
    return b"Return-Path: <a@b>\nDelivered-To: a@b\n" + sent.replace(b"\r\n", b"\n")


def test_check_tells_intact_from_damaged() -> None:
    tok = mail.token("c", 1)
    data = _delivered(tok)
    assert mail.check(data) == (tok, True)
    assert mail.check(data.replace(b"\n", b"\r\n")) == (tok, True)
    at = data.index(b"\n\n") + 10
    flipped = data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1 :]
    assert mail.check(flipped) == (tok, False)
    assert mail.check(data[:-5]) == (tok, False)
    assert mail.check(b"Subject: a bounce\n\nbody\n") == (None, False)


def test_scan_counts_copies_damage_and_orphans(tmp_path: Path) -> None:
    md = tmp_path / "md"
    for sub in ("new", "cur", "tmp"):
        (md / sub).mkdir(parents=True)
    a, b, c = (mail.token("s", i) for i in range(3))
    (md / "new" / "1").write_bytes(_delivered(a))
    (md / "cur" / "2").write_bytes(_delivered(a))
    (md / "new" / "3").write_bytes(_delivered(b).replace(b"\n\n", b"\n\nX"))
    (md / "new" / "4").write_bytes(b"Subject: bounce\n\nx\n")
    (md / "tmp" / "5").write_bytes(b"half")
    found = mail.scan(md)
    assert found.copies == {a: 2, b: 1}
    assert found.damaged == {b: 1}
    assert found.other == 1
    assert found.lost({a, b, c}) == {c}
    assert found.duplicates({a, b, c}) == 1
    assert mail.delivered_count(md) == 4
    assert mail.orphans(md) == 1
    assert mail.orphans(tmp_path / "none") == 0


def test_reply_codes_are_read_from_complete_replies() -> None:
    data = b"220 hi\r\n250-a\r\n250-b\r\n250 c\r\n500 5.5.1 no\r\n421-x\r\n421 bye\r\n554\r\n"
    assert wire.final_codes(data) == [220, 250, 500, 421, 554]
    assert wire.refusals(data) == 3
    assert wire.final_codes(b"250-partial\r\n") == []


def test_cap_lines_ignore_the_per_session_lines() -> None:
    text = (
        "abc smtp connected address=127.0.0.1 host=full.example\n"
        'abc smtp failed-command command="RCPT" result="452 Too many recipients"\n'
        "smtp: session limit reached (41), new connections wait\n"
        "abc smtp disconnected reason=quit\n"
    )
    assert flood.cap_lines(text) == [
        'abc smtp failed-command command="RCPT" result="452 Too many recipients"',
        "smtp: session limit reached (41), new connections wait",
    ]
    assert flood.cap_lines("x smtp connected address=1 host=limit\n") == []


def _outcome(**fields: object) -> object:
    base = {
        "acked": ["a", "b", "c"],
        "filled": 2,
        "first_refusal": "data 452 4.3.1 Insufficient system storage",
        "full_replies": ["mail 452 4.3.1 x", "mail 452 4.3.1 x", "rcpt 451 y"],
        "recovered": "data 250",
    }
    base.update(fields)
    return fulldisk_run.Outcome(**base)


def test_full_disk_verdicts() -> None:
    row = fulldisk.judge(_outcome(), 4096)
    assert row.verdict is report.Verdict.PASS
    assert "after 2 accepted: data 452" in row.result
    assert "2x mail 452 4.3.1 x, rcpt 451 y" in row.result
    assert "0 lost of 3" in row.result
    for bad in (
        {"first_refusal": "data 554 5.3.4 too big"},
        {"full_replies": ["session broke: SMTPServerDisconnected"]},
        {"lost": ["a"]},
        {"recovered": "mail 452 4.3.1 x"},
        {"died": "signal 9"},
        {"error": "2 message(s) still queued"},
    ):
        assert fulldisk.judge(_outcome(**bad), 4096).verdict is report.Verdict.FAIL, bad
    broken = fulldisk.judge(fulldisk_run.Outcome(error="mount: permission denied"), 4096)
    assert broken.verdict is report.Verdict.ERROR


def test_full_disk_says_why_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fulldisk.os, "geteuid", lambda: 1000)
    assert fulldisk.unavailable() == "needs root (a tmpfs spool in a private mount namespace)"


def test_damage_flips_body_letters_and_keeps_the_frame(tmp_path: Path) -> None:
    tok = mail.token("d", 0, 3000)
    content = b"Received: by x\r\n" + mail.message(tok)
    path = tmp_path / "0a000001"
    path.write_bytes(
        content + encode_tail(len(content), [b"sealed envelope"], crc=zlib.crc32(content))
    )
    assert corrupt.damage(path, [0.0, 0.5, 0.99]) == tok
    data = path.read_bytes()
    with open(path, "rb") as f:
        assert read_tail(f, len(data)).content_length == len(content)  # still a valid frame
    changed = [i for i in range(len(content)) if data[i] != content[i]]
    assert len(changed) == 3
    assert all(i > content.index(b"\r\n\r\n") for i in changed)
    assert all(data[i] ^ content[i] == 0x20 for i in changed)
    assert mail.check(data[: len(content)]) == (tok, False)
    other = tmp_path / "0a000002"
    other.write_bytes(b"not ours\r\n\r\nbody" + encode_tail(16, [b"e"], crc=0))
    assert corrupt.damage(other, [0.5]) is None


def test_attacks_are_bytes_and_replay_from_a_seed() -> None:
    names = [a.name for a in attacks.ATTACKS]
    assert len(names) == len(set(names))
    first = [a.make(random.Random(5)) for a in attacks.ATTACKS]
    again = [a.make(random.Random(5)) for a in attacks.ATTACKS]
    assert first == again
    assert all(isinstance(b, bytes) and b for b in first)


def test_settle_waits_for_an_empty_queue(tmp_path: Path) -> None:
    spool, md = tmp_path / "spool", tmp_path / "md"
    (md / "new").mkdir(parents=True)
    started = time.monotonic()
    assert clients.settle(spool, md, timeout=5.0, still=0.2)
    assert time.monotonic() - started < 2.0
    bucket = spool / "queue" / "0a"
    bucket.mkdir(parents=True)
    (bucket / "0a000001").write_bytes(b"x")
    (bucket / "0a0000010000beef").write_bytes(b"")  # an envelope file: not a message
    assert [p.name for p in daemon_mod.queued_messages(spool)] == ["0a000001"]
    assert not clients.settle(spool, md, timeout=0.5, still=0.2)


def test_bad_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_mod.main(["--scenarios", "crash-receive,nonsense"]) == 2
    assert "--scenarios must name some of crash-receive" in capsys.readouterr().err
    assert main_mod.main(["--trials", "0"]) == 2


def test_crash_tally_keeps_the_promise_only_without_loss_or_excess_repeats() -> None:
    tally = crash._Tally(kills=2, acked=10, dups=[0, 3])
    assert tally.kept
    assert "0 lost of 10 acknowledged" in tally.result()
    assert not crash._Tally(kills=1, acked=10, lost=1, dups=[0]).kept
    assert not crash._Tally(kills=1, acked=10, damaged=1, dups=[0]).kept
    too_many = daemon_mod.MDA_PER_USER + 1
    assert not crash._Tally(kills=1, acked=10, dups=[too_many]).kept
    assert not crash._Tally(kills=1, acked=10, dups=[0], failure="did not restart").kept


def test_orphans_are_aged_past_the_maildir_conventions_36_hours(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / "b").write_bytes(b"y")
    assert orphans._age(tmp_path) == 2
    for name in ("a", "b"):
        st = (tmp_path / name).stat()
        assert time.time() - st.st_mtime > 36 * 3600 and time.time() - st.st_atime > 36 * 3600
