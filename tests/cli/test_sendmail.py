"""``mta-sendmail`` end to end: a real daemon, the command run as a process."""

from __future__ import annotations

import os
import pwd
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.cli.sendmail import gecos_name, parse_args
from mta.config.hostname import server_name
from mta.enqueue.offline import is_offline_name, read_offline
from tests.e2e.daemon import Daemon
from tests.enqueue.daemons import SmtpPipe, queued, run_sendmail, running

USER = pwd.getpwuid(os.getuid()).pw_name
HOST = server_name()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("sendmail")) as d:
        yield d


def only_message(d: Daemon, rcpt: str) -> tuple[list[str], str, bytes]:
    """The one queued message that has ``rcpt``: its recipients, sender and content."""
    found = [
        (envs, content) for envs, content in queued(d) if any(str(e.rcpt) == rcpt for e in envs)
    ]
    assert len(found) == 1, found
    envs, content = found[0]
    return [str(e.rcpt) for e in envs], str(envs[0].sender), content


def headers_of(content: bytes) -> bytes:
    return content.partition(b"\r\n\r\n")[0] + b"\r\n"


def body_of(content: bytes) -> bytes:
    return content.partition(b"\r\n\r\n")[2]


def test_recipients_as_arguments_and_added_headers(daemon: Daemon) -> None:
    rcpt = "args@remote.example"
    result = run_sendmail([rcpt], b"Subject: hello\n\nbody line\n", daemon.spool)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"" and result.stderr == b""
    rcpts, sender, content = only_message(daemon, rcpt)
    assert rcpts == [rcpt]
    assert sender == f"{USER}@{HOST}"
    head = headers_of(content)
    assert head.startswith(b"Received: from localhost ")
    assert b"\r\nFrom: " in head and f"<{USER}@{HOST}>\r\n".encode() in head
    assert b"\r\nDate: " in head
    assert b"\r\nMessage-ID: <" in head and f"@{HOST}>\r\n".encode() in head
    assert b"\r\nSubject: hello\r\n" in head
    assert body_of(content) == b"body line\r\n"


def test_t_reads_to_cc_bcc_and_removes_bcc(daemon: Daemon) -> None:
    data = (
        b"To: Bob <t-to@remote.example>\nCc: t-cc@remote.example,\n t-cc2@remote.example\n"
        b"Bcc: t-bcc@remote.example\nSubject: t\n\nhi\n"
    )
    result = run_sendmail(["-t", "t-arg@remote.example"], data, daemon.spool)
    assert result.returncode == 0, result.stderr
    rcpts, _, content = only_message(daemon, "t-to@remote.example")
    assert rcpts == [
        "t-arg@remote.example",
        "t-bcc@remote.example",
        "t-cc2@remote.example",
        "t-cc@remote.example",
        "t-to@remote.example",
    ]
    assert b"Bcc" not in content and b"t-bcc" not in content
    assert b"Cc: t-cc@remote.example,\r\n t-cc2@remote.example\r\n" in content


def test_bcc_removed_without_t(daemon: Daemon) -> None:
    rcpt = "bcc-no-t@remote.example"
    data = b"Bcc: secret@remote.example\nSubject: s\n\nb\n"
    assert run_sendmail([rcpt], data, daemon.spool).returncode == 0
    rcpts, _, content = only_message(daemon, rcpt)
    assert rcpts == [rcpt]
    assert b"secret" not in content


def test_f_and_F(daemon: Daemon) -> None:
    rcpt = "f-opt@remote.example"
    result = run_sendmail(
        ["-f", "<list-owner@lists.example>", "-F", "The List", rcpt],
        b"Subject: s\n\nb\n",
        daemon.spool,
    )
    assert result.returncode == 0, result.stderr
    _, sender, content = only_message(daemon, rcpt)
    assert sender == "list-owner@lists.example"
    assert b"\r\nFrom: The List <list-owner@lists.example>\r\n" in content


def test_unqualified_f_gets_the_server_name_and_from_header_is_kept(daemon: Daemon) -> None:
    rcpt = "f-unq@remote.example"
    data = b"From: Someone <someone@else.example>\nSubject: s\n\nb\n"
    assert run_sendmail(["-f", "bounces", rcpt], data, daemon.spool).returncode == 0
    _, sender, content = only_message(daemon, rcpt)
    assert sender == f"bounces@{HOST}"
    assert content.count(b"From: ") == 1
    assert b"From: Someone <someone@else.example>\r\n" in content


def test_null_sender(daemon: Daemon) -> None:
    rcpt = "null@remote.example"
    assert run_sendmail(["-f", "<>", rcpt], b"Subject: s\n\nb\n", daemon.spool).returncode == 0
    _, sender, content = only_message(daemon, rcpt)
    assert sender == ""
    assert f"<{USER}@{HOST}>\r\n".encode() in content  # From: names the user, never <>
    assert b"From: <>" not in content


def test_lone_dot_ends_the_message_without_i(daemon: Daemon) -> None:
    rcpt = "dot-end@remote.example"
    data = b"Subject: s\n\n.leading\n..two\nx\n.\nnot part of it\n"
    assert run_sendmail([rcpt], data, daemon.spool).returncode == 0
    _, _, content = only_message(daemon, rcpt)
    assert body_of(content) == b".leading\r\n..two\r\nx\r\n"


@pytest.mark.parametrize(("flag", "name"), [(["-i"], "i"), (["-oi"], "oi"), (["-o", "i"], "o-i")])
def test_i_keeps_lone_dots(daemon: Daemon, flag: list[str], name: str) -> None:
    rcpt = f"dot-keep-{name}@remote.example"
    data = b"Subject: s\n\n.\n..\n.x\nend\n"
    assert run_sendmail([*flag, rcpt], data, daemon.spool).returncode == 0
    _, _, content = only_message(daemon, rcpt)
    assert body_of(content) == b".\r\n..\r\n.x\r\nend\r\n"


def test_crlf_input_and_no_final_newline(daemon: Daemon) -> None:
    rcpt = "crlf@remote.example"
    assert run_sendmail([rcpt], b"Subject: s\r\n\r\na\r\nlast", daemon.spool).returncode == 0
    _, _, content = only_message(daemon, rcpt)
    assert body_of(content) == b"a\r\nlast\r\n"


def test_message_without_headers(daemon: Daemon) -> None:
    rcpt = "nohead@remote.example"
    assert run_sendmail([rcpt], b"just text\n", daemon.spool).returncode == 0
    _, _, content = only_message(daemon, rcpt)
    assert b"\r\nFrom: " in headers_of(content)
    assert body_of(content) == b"just text\r\n"


def test_long_lines_are_quoted_printable(daemon: Daemon) -> None:
    rcpt = "long@remote.example"
    line = b"word " * 400
    assert run_sendmail([rcpt], b"Subject: s\n\n" + line + b"\n", daemon.spool).returncode == 0
    _, _, content = only_message(daemon, rcpt)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in headers_of(content)
    assert max(len(x) for x in content.split(b"\r\n")) <= 998


def test_large_message_streams_through(daemon: Daemon) -> None:
    rcpt = "large@remote.example"
    body = b"".join(b"%07d " % i + b"z" * 90 + b"\n" for i in range(40_000))  # ~3.9 MB
    assert run_sendmail([rcpt], b"Subject: big\n\n" + body, daemon.spool).returncode == 0
    _, _, content = only_message(daemon, rcpt)
    assert body_of(content) == body.replace(b"\n", b"\r\n")


def test_eight_bit_declared_and_verbose_dialogue(daemon: Daemon) -> None:
    rcpt = "eight@remote.example"
    result = run_sendmail(["-v", rcpt], "Subject: s\n\nd\u00e9j\u00e0\n".encode(), daemon.spool)
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "<<< 220 " in out
    assert ">>> EHLO localhost" in out
    assert "BODY=8BITMIME" in out
    assert "<<< 221 " in out
    _, _, content = only_message(daemon, rcpt)
    assert body_of(content) == "d\u00e9j\u00e0\r\n".encode()


def test_utf8_addresses_use_smtputf8(daemon: Daemon) -> None:
    rcpt = "j\u00f6rg@b\u00fccher.example"
    result = run_sendmail(["-v", "-f", "\u00e9l\u00e8ve@x.example", rcpt], b"s\n", daemon.spool)
    assert result.returncode == 0, result.stderr
    assert "SMTPUTF8" in result.stdout.decode()
    _, sender, _ = only_message(daemon, rcpt)
    assert sender == "\u00e9l\u00e8ve@x.example"


def test_dsn_options(daemon: Daemon) -> None:
    rcpt = "dsn@remote.example"
    result = run_sendmail(
        ["-N", "success,failure", "-R", "hdrs", "-V", "id 1+", "-v", rcpt], b"s\n", daemon.spool
    )
    assert result.returncode == 0, result.stderr
    assert "RET=HDRS ENVID=id+201+2B" in result.stdout.decode()
    assert "NOTIFY=SUCCESS,FAILURE" in result.stdout.decode()
    [envelope] = [e for envs, _ in queued(daemon) for e in envs if str(e.rcpt) == rcpt]
    assert envelope.dsn_envid == "id 1+"


def test_refused_recipient_exit_code_and_nothing_sent(daemon: Daemon) -> None:
    before = len(queued(daemon))
    result = run_sendmail(["nobody@localhost", "bob@localhost"], b"s\n", daemon.spool)
    assert result.returncode == os.EX_NOUSER
    assert b"<nobody@localhost>: 550 " in result.stderr
    assert len(queued(daemon)) == before


def test_t_refused_recipient_in_header(daemon: Daemon) -> None:
    result = run_sendmail(["-t"], b"To: ghost@localhost\n\nb\n", daemon.spool)
    assert result.returncode == os.EX_NOUSER
    assert b"ghost@localhost" in result.stderr


def test_local_recipients_and_alias(daemon: Daemon) -> None:
    assert run_sendmail(["team@localhost"], b"Subject: team\n\nb\n", daemon.spool).returncode == 0
    rcpts, _, _ = only_message(daemon, "team@localhost")
    assert rcpts.count("team@localhost") == 2  # the alias expands to bob and carol


@pytest.mark.parametrize(
    ("args", "data"),
    [([], b"Subject: no rcpt\n\nb\n"), (["-t"], b"Subject: no header rcpt\n\nb\n")],
)
def test_no_recipients(daemon: Daemon, args: list[str], data: bytes) -> None:
    result = run_sendmail(args, data, daemon.spool)
    assert result.returncode == os.EX_USAGE
    assert b"no recipients" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-f", "<a@b", "x@remote.example"],
        ["-f", "a\r\nRCPT TO:<evil@x>", "x@remote.example"],
        ["bad\naddr@x"],
        ["-R", "SOME", "x@remote.example"],
    ],
)
def test_bad_arguments(daemon: Daemon, args: list[str]) -> None:
    before = len(queued(daemon))
    result = run_sendmail(args, b"s\n", daemon.spool)
    assert result.returncode == os.EX_USAGE
    assert len(queued(daemon)) == before


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run_sendmail(["-q", "x@remote.example"], b"s\n", tmp_path)
    assert result.returncode == os.EX_USAGE
    assert b"usage: mta-sendmail" in result.stderr


def test_unsupported_mode(tmp_path: Path) -> None:
    result = run_sendmail(["-bp"], b"", tmp_path)
    assert result.returncode == os.EX_USAGE
    assert b"unsupported mode -bp" in result.stderr


def test_bad_address_header_with_t(daemon: Daemon) -> None:
    result = run_sendmail(["-t"], b"To: <broken@\n\nb\n", daemon.spool)
    assert result.returncode == os.EX_DATAERR


def test_bs_relays_smtp(daemon: Daemon) -> None:
    with SmtpPipe(daemon.spool) as smtp:
        banner = smtp.reply()
        assert banner.startswith(b"220 ")
        assert b"250 " in smtp.say(b"EHLO client")
        assert smtp.say(b"MAIL FROM:<bs@sender.example>").startswith(b"250")
        assert smtp.say(b"RCPT TO:<bs@remote.example>").startswith(b"250")
        assert smtp.say(b"RCPT TO:<nobody@localhost>").startswith(b"550")  # the daemon's rules
        assert smtp.say(b"DATA").startswith(b"354")
        assert smtp.say(b"Subject: bs\r\n\r\nover -bs\r\n.").startswith(b"250")
        assert smtp.say(b"QUIT").startswith(b"221")
        assert smtp.finish() == 0
    _, sender, content = only_message(daemon, "bs@remote.example")
    assert sender == "bs@sender.example"
    assert body_of(content) == b"over -bs\r\n"


def test_gecos_name() -> None:
    entry = pwd.struct_passwd(("bob", "x", 1, 1, "& Smith,Room 1,555", "/home/bob", "/bin/sh"))
    assert gecos_name(entry) == "Bob Smith"


def test_parse_args_combined_flags() -> None:
    args = parse_args(["-ti", "-oi", "-f", "a@b", "-bm", "x@y"])
    assert args.t and args.i and args.o == ["i"] and args.f == "a@b" and args.b == "m"
    assert args.recipients == ["x@y"]


# -- the daemon is down --------------------------------------------------------------------


def offline_files(spool: Path) -> list[Path]:
    return sorted(p for p in (spool / "offline").iterdir() if is_offline_name(p.name))


def stopped_daemon(directory: Path) -> Daemon:
    """A daemon that ran once (so the spool exists) and is now stopped."""
    with running(directory) as d:
        pass
    assert not (d.spool / "enqueue.sock").exists()
    return d


def test_daemon_down_message_kept_offline(tmp_path: Path) -> None:
    d = stopped_daemon(tmp_path)
    data = b"To: off1@remote.example\nBcc: off2@remote.example\nSubject: off\n\nkept\n.\nignored\n"
    result = run_sendmail(["-t", "-f", "me@here.example", "-F", "Me"], data, d.spool)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    [path] = offline_files(d.spool)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with path.open("rb") as f:
        checked = read_offline(f)
        message = checked.content(f).read_all()
    envelope = checked.envelope
    assert envelope.sender == "me@here.example"
    assert envelope.recipients == ("off1@remote.example", "off2@remote.example")
    assert envelope.uid == os.getuid()
    assert abs(envelope.created - time.time()) < 60
    assert message.startswith(b"From: Me <me@here.example>\r\nDate: ")
    assert message.endswith(b"Subject: off\r\n\r\nkept\r\n")
    assert b"Bcc" not in message


def test_daemon_down_and_no_spool(tmp_path: Path) -> None:
    result = run_sendmail(["x@remote.example"], b"s\n", tmp_path / "nothing")
    assert result.returncode == os.EX_TEMPFAIL
    assert b"nothing was sent" in result.stderr


def test_stale_socket_file_counts_as_down(tmp_path: Path) -> None:
    import socket

    d = stopped_daemon(tmp_path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(d.spool / "enqueue.sock"))  # bound, never listening: refuses connections
    try:
        result = run_sendmail(["x@remote.example"], b"s\n", d.spool)
    finally:
        stale.close()
    assert result.returncode == 0
    assert len(offline_files(d.spool)) == 1


def test_bs_without_daemon_or_spool(tmp_path: Path) -> None:
    result = run_sendmail(["-bs"], b"EHLO x\r\n", tmp_path / "nothing")
    assert result.returncode == os.EX_TEMPFAIL
    assert result.stdout.startswith(b"421 ")


def test_bs_with_daemon_down_keeps_messages_offline(tmp_path: Path) -> None:
    d = stopped_daemon(tmp_path)
    with SmtpPipe(d.spool) as smtp:
        assert smtp.reply().startswith(b"220 ")
        assert b"250 " in smtp.say(b"EHLO client")
        for n in (1, 2):
            assert smtp.say(b"MAIL FROM:<bs@sender.example> RET=HDRS ENVID=e+2B").startswith(b"250")
            assert smtp.say(b"RCPT TO:<bs%d@remote.example> NOTIFY=NEVER" % n).startswith(b"250")
            assert smtp.say(b"RCPT TO:<local%d>" % n).startswith(b"250")
            assert smtp.say(b"DATA").startswith(b"354")
            accepted = smtp.say(b"Subject: %d\r\n\r\n..dot\r\n." % n)
            assert accepted.startswith(b"250 ")
        assert smtp.say(b"MAIL FROM:<x@y.example>").startswith(b"250")
        assert smtp.say(b"RSET").startswith(b"250")  # a reset transaction keeps nothing
        assert smtp.say(b"QUIT").startswith(b"221")
        assert smtp.finish() == 0
    files = offline_files(d.spool)
    assert len(files) == 2
    for n, path in enumerate(files, 1):
        with path.open("rb") as f:
            checked = read_offline(f)
            message = checked.content(f).read_all()
        envelope = checked.envelope
        assert envelope.sender == "bs@sender.example"
        assert envelope.recipients == (f"bs{n}@remote.example", f"local{n}@{HOST}")
        assert (envelope.dsn_ret, envelope.dsn_envid, envelope.dsn_notify) == ("HDRS", "e+2B", None)
        assert message == b"Subject: %d\r\n\r\n.dot\r\n" % n


def test_offline_message_submitted_when_the_daemon_starts(tmp_path: Path) -> None:
    d = stopped_daemon(tmp_path)
    result = run_sendmail(["later@remote.example"], b"Subject: later\n\nb\n", d.spool)
    assert result.returncode == 0
    assert len(offline_files(d.spool)) == 1
    d.start()
    try:
        deadline = time.monotonic() + 20
        while offline_files(d.spool) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert offline_files(d.spool) == []
        rcpts, _, content = only_message(d, "later@remote.example")
        assert rcpts == ["later@remote.example"]
        assert b"Subject: later\r\n" in content
    finally:
        d.stop()
