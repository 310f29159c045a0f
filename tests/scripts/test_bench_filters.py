"""The benchmark's filters figure (scripts/benchlib/filters*.py), its pure parts: the
configurations it generates (the builtin chain lets the benchmark's mail through and
refuses what it names, on a memory session), the key, the queue count, the outcome of
a run and the report.  No timing is asserted."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mta.config.load import load_config
from mta.config.model import FilterBuiltin, FilterChain, FilterProc, FilterRef
from tests import oracles
from tests.server.memory_session import make_generation, open_session


def _load(name: str) -> ModuleType:
    return oracles.scripts_module(f"benchlib.{name}")


filters = _load("filters")
filters_run = _load("filters_run")
freport = _load("filters_report")

ADDRESS = "bench@localhost"


def _builtin_text(tmp_path: Path) -> str:
    senders = tmp_path / "badsenders"
    senders.write_text(filters.bad_senders())
    text: str = filters.builtin_config(25, tmp_path / "Maildir", senders, ADDRESS)
    return text


def _check(text: str, tmp_path: Path) -> Any:
    conf = tmp_path / "smtpd.conf"
    conf.write_text(text)
    result = load_config(str(conf))
    assert result.warnings == ()
    return result.config


def test_the_three_configurations_differ_only_by_the_listeners_filter(tmp_path: Path) -> None:
    key = tmp_path / "dkim.key"
    plain = _check(filters.plain_config(25, tmp_path / "Maildir"), tmp_path)
    builtin = _check(_builtin_text(tmp_path), tmp_path)
    dkim = _check(filters.dkim_config(25, tmp_path / "Maildir", key), tmp_path)
    for config in (plain, builtin, dkim):
        assert [(lst.interface, lst.port) for lst in config.listeners] == [("127.0.0.1", 25)]
        assert [rule.action for rule in config.rules] == ["recv"]
    assert [lst.filter for lst in plain.listeners] == [None]
    assert [lst.filter for lst in builtin.listeners] == [FilterRef(("builtins",), False)]
    assert [lst.filter for lst in dkim.listeners] == [FilterRef(("dkim",), False)]

    assert dkim.filters["dkim"] == FilterProc("dkim", exec_=True)
    proc = dkim.procs["dkim"]
    assert proc.command == f"filter-dkimsign -d example.test -s sel1 -k {key}"
    assert (proc.user, proc.group) == ("_dkimsign", "_dkimsign")

    chain = builtin.filters["builtins"]
    assert isinstance(chain, FilterChain)
    assert list(chain.filters) == ["nets", "helos", "senders", "rcpts"]
    phases = []
    for name in chain.filters:
        entry = builtin.filters[name]
        assert isinstance(entry, FilterBuiltin)
        assert entry.table is not None  # every condition looks something up
        phases.append(entry.phase)
    assert phases == ["connect", "helo", "mail-from", "rcpt-to"]


def test_the_bad_senders_are_many_and_not_the_benchmarks() -> None:
    lines = filters.bad_senders().splitlines()
    assert len(lines) == len(set(lines)) == 100
    assert ADDRESS not in lines and all("@" in line for line in lines)


async def _dialogue(tmp_path: Path, helo: str, sender: str, rcpt: str) -> tuple[list[str], int]:
    """The builtin chain on a memory session from 127.0.0.1: the replies up to the
    first refusal (or the message's), and how many messages reached the spool."""
    generation = await make_generation(_builtin_text(tmp_path), tmp_path / "spool")
    replies: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            client, _ = await open_session(generation, nursery)
            for line in (
                f"HELO {helo}",
                f"MAIL FROM:<{sender}>",
                f"RCPT TO:<{rcpt}>",
                "DATA",
                "From: <bench@localhost>\r\n\r\nbody\r\n.",
            ):
                replies.append(await client.command(line))
                if replies[-1].startswith(("4", "5")):
                    break
            await client.command("QUIT")
        store = generation.services.spool.store
        stored = list(store.message_ids())
        for msgid in stored:
            with store.open_message(msgid) as stream:
                assert b"X-Spam" not in stream.read()
    finally:
        generation.tables.close()
    return replies, len(stored)


async def test_the_builtin_chain_lets_the_benchmarks_mail_through(tmp_path: Path) -> None:
    replies, stored = await _dialogue(tmp_path, "bench.localhost", ADDRESS, ADDRESS)
    assert [r[:3] for r in replies] == ["250", "250", "250", "354", "250"]
    assert stored == 1


@pytest.mark.parametrize(
    ("helo", "sender", "rcpt", "refusal"),
    [
        ("spam.example", ADDRESS, ADDRESS, "550 5.7.1 bad HELO"),
        ("host.invalid", ADDRESS, ADDRESS, "550 5.7.1 bad HELO"),
        ("bench.localhost", "spammer42@bulk0.example.org", ADDRESS, "550 5.7.1 sender blocked"),
        ("bench.localhost", ADDRESS, "other@localhost", "550 5.1.1 unknown user"),
    ],
)
async def test_the_builtin_chain_refuses_what_it_names(
    tmp_path: Path, helo: str, sender: str, rcpt: str, refusal: str
) -> None:
    """Each filter of the chain is live: its condition holds for other mail."""
    replies, stored = await _dialogue(tmp_path, helo, sender, rcpt)
    assert replies[-1] == refusal
    assert stored == 0


def test_the_key_is_private_to_its_owner_and_loads(tmp_path: Path) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    key = tmp_path / "dkim.key"
    filters.write_key(key, owner=me)
    st = key.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (os.getuid(), pwd.getpwnam(me).pw_gid)
    pem = key.read_bytes()
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")  # PKCS#1, as openssl genrsa
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey) and loaded.key_size == 2048
    with pytest.raises(FileExistsError):  # never overwrites
        filters.write_key(key, owner=me)


def _message(path: Path, head: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + b"\r\n\r\nbody\r\nDKIM-Signature: in the body, not counted\r\n")


def test_the_queue_count_reads_each_servers_layout(tmp_path: Path) -> None:
    signed = b"DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=xyz\r\nReceived: from x\r\nFrom: <a@b>"
    plain = b"Received: from x\r\nFrom: <a@b>"
    junk = b"X-Spam: Yes\r\nReceived: from x"
    mta = filters_run.spool_of("mta", tmp_path / "m")
    _message(mta / "queue" / "0a" / "0a000001", signed)
    _message(mta / "queue" / "0a" / "0a000002", plain)
    _message(mta / "queue" / "1b" / "1b000003", junk)
    _message(mta / "queue" / "1b" / "1b000004.tmp", signed)  # not committed
    _message(mta / "incoming" / "0c000005", signed)
    assert filters_run.count_queue("mta", mta) == filters_run.QueueCount(3, 1, 1)

    smtpd = filters_run.spool_of("opensmtpd", tmp_path / "o")
    assert smtpd == tmp_path / "o" / "smtpd-spool"
    _message(smtpd / "queue" / "5f" / "5f000001" / "message", signed)
    _message(smtpd / "queue" / "5f" / "5f000002" / "message", signed)
    (smtpd / "queue" / "5f" / "5f000003").mkdir()  # no message yet
    _message(smtpd / "incoming" / "60000004" / "message", signed)
    assert filters_run.count_queue("opensmtpd", smtpd) == filters_run.QueueCount(2, 2, 0)
    assert filters_run.count_queue("mta", tmp_path / "none") == filters_run.QueueCount()


def test_an_outcome_counts_only_with_every_message_queued_as_expected() -> None:
    outcome = filters_run.AcceptOutcome
    count = filters_run.QueueCount
    ok = outcome(seconds=2.0, cpu_seconds=1.0, queued=count(10, 10, 0))
    again = outcome.from_json(ok.to_json())
    assert again == ok and isinstance(again.queued, count)
    assert filters.check_outcome(ok, 10, signed=True) is None
    assert "10 of 10 queued messages signed, 0 expected" in filters.check_outcome(ok, 10, False)
    cases = [
        (outcome(error="smtp-source: 421", queued=count(3)), "smtp-source: 421 (3 queued)"),
        (outcome(seconds=1.0, queued=count(9, 9)), "9 messages queued for 10 accepted"),
        (outcome(seconds=1.0, queued=count(10, 7)), "7 of 10 queued messages signed"),
        (outcome(seconds=1.0, queued=count(10, 10, 1)), "1 of 10 queued messages marked junk"),
    ]
    for case, why in cases:
        assert why in filters.check_outcome(case, 10, signed=True)


def _results(rates: dict[Any, dict[int, list[float | None]]], messages: int) -> Any:
    results = {v: freport.VariantResult(v) for v in freport.VARIANTS}
    for variant, by_c in rates.items():
        for c, values in by_c.items():
            for rate in values:
                results[variant].record(c, messages / rate if rate else None, 2.5)
    return results


def test_the_report_prints_every_run_medians_and_ratios() -> None:
    n = 1000
    results = _results(
        {
            freport.NONE: {4: [500.0, 400.0, 450.0], 20: [600.0, 600.0, 600.0]},
            freport.BUILTIN: {4: [480.0, 390.0, 420.0], 20: [500.0, 510.0, 505.0]},
            freport.DKIM_MTA: {4: [300.0, 200.0, 250.0], 20: [300.0, None]},
            freport.DKIM_OPENSMTPD: {4: [200.0, 250.0, 225.0], 20: [100.0, 100.0, 100.0]},
        },
        n,
    )
    results[freport.DKIM_MTA].fail("20 sessions, run 2 of 3", "smtp-source: 421")
    text = freport.format_filters(
        results,
        concurrencies=[4, 20],
        messages=n,
        size=4096,
        tool="smtp-source X",
        reference="OpenSMTPD 6.8.0p2",
        repeat=3,
        chain="a chain",
    )
    assert "median of 3 runs" in text and "builtin: a chain;" in text
    assert "4 sessions, mta none           500.0, 400.0, 450.0" in text
    assert "20 sessions, mta dkimsign       300.0, failed" in text
    # medians: none 450 / builtin 420 at 4; mta 250 / opensmtpd 225
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if "messages/s, median: sessions" in line)
    labels = " ".join(lines[head].split()[3:])
    assert labels == "mta none mta builtin mta dkimsign opensmtpd dkimsign"
    assert lines[head + 1].split() == ["4", "450.0", "420.0", "250.0", "225.0"]
    assert lines[head + 2].split() == ["20", "600.0", "505.0", "300.0", "100.0"]
    assert "dkimsign mta/opensmtpd 1.11x [1.50, 0.80, 1.11]" in text
    assert "mta builtin/none 0.933x, cost 6.7% [0.96, 0.97, 0.93]" in text
    assert "dkimsign mta/opensmtpd 3.00x [3.00, -]" in text
    assert "mta builtin/none 0.842x, cost 15.8%" in text
    assert "PASS  dkimsign at 4 sessions: mta/opensmtpd = 1.11x >= 1.00x" in text
    assert "PASS  dkimsign at 20 sessions: mta/opensmtpd = 3.00x >= 1.00x" in text
    assert "PASS  builtin filters at 4 sessions: mta's cost = 6.7% < 10%" in text
    assert "FAIL  builtin filters at 20 sessions: mta's cost = 15.8% < 10%" in text
    assert "mta dkimsign filters: failed: 20 sessions, run 2 of 3: smtp-source: 421" in text
    assert "opensmtpd dkimsign filters: ok" in text
    assert "mta none 2.50 at 4, 2.50 at 20" in text


def test_verdicts_fail_when_a_side_was_not_measured() -> None:
    results = _results({freport.NONE: {4: [100.0]}, freport.DKIM_MTA: {4: [None]}}, 100)
    verdicts = freport.filter_verdicts(results, [4], 100)
    assert [(v.passed, v.text.endswith("not measured")) for v in verdicts] == [
        (False, True),
        (False, True),
    ]
    skipped = freport.format_filters(
        results,
        concurrencies=[4],
        messages=100,
        size=1,
        tool="t",
        reference="r",
        repeat=1,
        chain="c",
        skipped="needs root",
    )
    assert skipped == "Filters: skipped: needs root"
