"""The benchmark's backlog figure (scripts/benchlib/backlog*.py): the configuration and
plan of a build, smtp-source's many recipients, the log wait that times startup, the
medians, verdicts and memory per envelope of the report, and one small run of the
whole section against a real daemon.  No timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from mta.config.load import load_config
from mta.config.model import LocalDelivery, Relay
from tests import oracles

backlog = oracles.scripts_module("benchlib.backlog")
breport = oracles.scripts_module("benchlib.backlog_report")
peers = oracles.scripts_module("benchlib.peers")
procs = oracles.scripts_module("benchlib.procs")
smtpsource = oracles.scripts_module("benchlib.smtpsource")


def test_the_config_makes_every_numbered_user_local_and_relays_the_relay_domain(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "smtpd.conf"
    conf.write_text(backlog.backlog_config(2525, 2526, tmp_path / "Maildir"))
    result = load_config(str(conf))
    assert result.warnings == ()
    config = result.config
    recv, out = config.actions["recv"].method, config.actions["out"].method
    assert isinstance(recv, LocalDelivery) and recv.path == str(tmp_path / "Maildir")
    assert isinstance(out, Relay)
    assert [rule.action for rule in config.rules] == ["out", "recv"]
    users = config.tables["users"]
    names = smtpsource.numbered_recipients("bench", backlog.RECIPIENTS)
    assert len(set(names)) == backlog.RECIPIENTS
    assert {key for key, _ in users.entries} == set(names)


def test_numbered_recipients_are_the_ones_smtp_source_sends(tmp_path: Path) -> None:
    """smtp-source -r 3 against the aiosmtpd peer, which writes a Delivered-To per recipient."""
    src = oracles.scripts_module("oraclelib").smtp_source(oracles.CACHE)
    if src is None:
        oracles.missing(f"Postfix's smtp-source (apt-get download postfix) in {oracles.CACHE}")
    server = peers.aiosmtpd_server(tmp_path, procs.free_port(), Path("/nonexistent/mta"))
    with server:
        server.start(timeout=20)
        smtpsource.run_load(
            src,
            server.port,
            sessions=1,
            messages=1,
            size=10,
            sender="a@b",
            recipient="bench@x",
            timeout=60,
            recipients=3,
        )
    (stored,) = (tmp_path / "maildir" / "new").iterdir()
    got = [
        line.split(b": ", 1)[1].decode()
        for line in stored.read_bytes().split(b"\r\n")
        if line.startswith(b"Delivered-To: ")
    ]
    assert got == [f"{n}@x" for n in smtpsource.numbered_recipients("bench", 3)]
    assert smtpsource.numbered_recipients("bench", 1) == ["bench"]


@pytest.mark.parametrize(
    ("envelopes", "retrying", "plan"),
    [(100_000, 0.1, (900, 100)), (1000, 0.5, (5, 5)), (200, 0.0, (2, 0)), (300, 1.0, (0, 3))],
)
def test_the_build_plan_makes_the_envelopes_asked_for(
    envelopes: int, retrying: float, plan: tuple[int, int]
) -> None:
    got = backlog.build_plan(envelopes, retrying)
    assert got == plan
    assert sum(got) * backlog.RECIPIENTS == envelopes


def test_a_large_build_is_given_more_time_than_a_run() -> None:
    assert backlog.build_timeout(1000, 300.0) == 300.0
    assert backlog.build_timeout(100_000, 300.0) == 100_000 / backlog.BUILD_RATE


@pytest.mark.parametrize(("envelopes", "retrying"), [(150, 0.1), (0, 0.1), (1000, 1.5)])
def test_a_build_plan_that_cannot_be_made_is_refused(envelopes: int, retrying: float) -> None:
    with pytest.raises(ValueError, match=r"between 0 and 1|multiple of"):
        backlog.build_plan(envelopes, retrying)


def test_wait_log_sees_the_line_when_it_is_written_and_fails_when_it_never_is(
    tmp_path: Path,
) -> None:
    script = "import sys, time; time.sleep(0.3); print('x: mta: ready', flush=True); time.sleep(30)"
    server = procs.Server("fake", [sys.executable, "-c", script], port=1, log_path=tmp_path / "log")
    with server:
        server.launch()
        seen = server.wait_log("mta: ready", timeout=20)
        assert seen - server.launched_at >= 0.3
        with pytest.raises(procs.ServerError, match=r"no 'never' in its log within 0\.2 s"):
            server.wait_log("never", timeout=0.2)
    dead = procs.Server("dead", [sys.executable, "-c", "pass"], port=1, log_path=tmp_path / "d")
    with dead, pytest.raises(procs.ServerError, match="exited with status 0"):
        dead.launch()
        dead.wait_log("mta: ready", timeout=20)


def test_the_line_counter_counts_each_whole_line_once(tmp_path: Path) -> None:
    log = tmp_path / "log"
    counter = backlog.LineCounter(log, " mta delivery evpid=")
    assert counter.count() == 0  # no log yet
    with open(log, "wb") as f:
        f.write(b"1 mta delivery evpid=1 result=TempFail\n2 smtp message\n3 mta deliv")
        f.flush()
        assert counter.count() == 1
        f.write(b"ery evpid=3 result=TempFail\n")
        f.flush()
        assert counter.count() == 2
        assert counter.count() == 2


def test_memory_per_envelope_is_the_difference_over_the_envelopes() -> None:
    assert breport.per_envelope_kib(40_960, 20_480, 10_000) == pytest.approx(2.048)
    assert breport.per_envelope_kib(20_000, 20_480, 1000) == pytest.approx(-0.48)
    with pytest.raises(ValueError, match="has envelopes"):
        breport.per_envelope_kib(1, 1, 0)


def _run(rate: float, startup: float, rss: int, attempts: int = 0) -> Any:
    return breport.BacklogRun(rate, startup, rss, 1.5, attempts)


def _pair(empty: list[Any], queued: list[Any], envelopes: int = 10_000) -> Any:
    return breport.BacklogPair(
        envelopes,
        envelopes // 10,
        breport.Series(0, runs=empty),
        breport.Series(envelopes, runs=queued),
        build_seconds=12.5,
    )


def test_verdicts_and_report_use_the_medians() -> None:
    pair = _pair(
        [_run(500.0, 0.4, 30_000), _run(100.0, 0.4, 31_000), _run(400.0, 0.5, 30_500)],
        [_run(380.0, 6.0, 60_000), _run(900.0, 2.0, 50_500), _run(350.0, 1.0, 50_000)],
    )
    # medians: 400 against 380 msg/s (0.95x); ready 2.0 s; RSS 30,500 and 50,500 KiB
    got = [(v.passed, v.text) for v in breport.backlog_verdicts(pair)]
    assert got == [
        (True, "10000 queued: acceptance = 0.95x >= 0.90x the empty queue's"),
        (True, "10000 queued: startup (exec to ready) = 2.00 s < 5 s"),
    ]
    slow = _pair([_run(400.0, 0.4, 1)], [_run(359.0, 5.0, 1)], 1000)
    assert [v.passed for v in breport.backlog_verdicts(slow)] == [False, False]
    pair.backlog.notes.append("round 2 of 3: 7 relay attempts (retries came due)")
    slow.backlog.fail("round 1 of 1", "boom")
    text = breport.format_backlog(
        [pair, slow], messages=2000, size=4096, sessions=4, tool="t", repeat=3
    )
    lines = text.splitlines()
    assert "median of 3 runs" in lines[0] and "-P mda" in lines[0]
    assert lines[2].split() == ["empty", "400.0", "1.00x", "0.40", "29.8", "1.50"]
    assert lines[3].split() == ["10000", "queued", "380.0", "0.95x", "2.00", "49.3", "1.50"]
    assert (
        "10000 queued: 9000 paused (local, -P mda), 1000 waiting for a retry (relayed, the"
        " first try failed); built in 12.5 s; daemon memory per queued envelope 2048 bytes"
    ) in text
    assert "10000, 10000 queued   380.0/s ready 6.00 s 58.6 MiB, 900.0/s" in text
    assert "FAIL  1000 queued: acceptance = 0.90x >= 0.90x the empty queue's" in text
    assert "Note: backlog 10000, 10000 queued: round 2 of 3: 7 relay attempts" in text
    assert "backlog 1000, 1000 queued: failed: round 1 of 1: boom" in text
    assert "backlog 10000, empty: ok" in text


def test_an_unbuilt_backlog_is_not_measured() -> None:
    pair = _pair([_run(400.0, 0.4, 1)], [])
    pair.build_seconds = None
    got = [(v.passed, v.text.endswith("not measured")) for v in breport.backlog_verdicts(pair)]
    assert got == [(False, True), (False, True)]
    text = breport.format_backlog([pair], messages=1, size=1, sessions=4, tool="t", repeat=1)
    assert "not built; daemon memory per queued envelope not measured" in text
    assert "median of 1 run;" not in text and "median of 1 run" in text
    skipped = breport.format_backlog(
        [], messages=1, size=1, sessions=4, tool="t", repeat=1, skipped="why"
    )
    assert skipped == "Backlog: skipped: why"


def test_a_small_backlog_is_built_once_and_every_round_starts_from_it(tmp_path: Path) -> None:
    """The whole section at 200 envelopes (half waiting for a retry), one round each."""
    src = oracles.scripts_module("oraclelib").smtp_source(oracles.CACHE)
    if src is None:
        oracles.missing(f"Postfix's smtp-source (apt-get download postfix) in {oracles.CACHE}")
    settings = backlog.BacklogSettings(
        sizes=[200],
        messages=20,
        size=512,
        sessions=2,
        repeat=2,
        timeout=120.0,
        mta=Path(sys.executable).parent / "mta",
        retrying=0.5,
        address="bench@localhost",
    )
    logged: list[str] = []
    (pair,) = backlog.measure_backlog(src, tmp_path, settings, logged.append)
    assert not pair.empty.failed and not pair.backlog.failed, (pair, logged)
    assert (pair.envelopes, pair.retrying) == (200, 100)
    assert len(pair.empty.runs) == len(pair.backlog.runs) == 2
    # the rounds recovered all 200 envelopes (else they failed) and tried no relay
    assert [r.relay_attempts for r in pair.backlog.runs] == [0, 0]
    assert all(r.rate > 0 and r.startup > 0 and r.rss_kib > 0 for r in pair.backlog.runs)
    built = tmp_path / "200" / "build"
    log = (built / "server.log").read_text()
    assert log.count(" smtp envelope evpid=") == 200
    assert log.count("result=TempFail") == 100  # each relayed envelope's first try
    # the copies are gone, the build is kept for the next round
    assert (built / "spool").is_dir()
    assert not any((tmp_path / "200").glob("*-*/spool"))


@pytest.mark.parametrize(
    "options",
    [
        ["--backlog", "150"],
        ["--backlog", "0"],
        ["--backlog", "1000,x"],
        ["--backlog-retrying", "1.5"],
        ["--relay-sessions", "4,x"],
    ],
)
def test_the_harness_refuses_a_backlog_it_cannot_build(
    options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything runs (exit status 2, the harness could not run)."""
    main = oracles.scripts_module("benchlib.main")
    assert main.main(["--sections", "backlog", *options]) == 2
    err = capsys.readouterr().err
    assert "--backlog" in err or "--relay-sessions" in err
