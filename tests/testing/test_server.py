"""MailServer and serve, through the public names only, as a test suite uses them."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pathlib
import select
import signal
import smtplib
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage

import pytest
import trio

from mta.errors import ConfigErrors, MTAError
from mta.testing import MailServer, serve
from tests.testing.control import spool as spool_of


def send(server: MailServer, to: list[str], subject: str, sender: str = "a@example.org") -> None:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content(f"the body of {subject}\n")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.send_message(msg, from_addr=sender, to_addrs=to)


def test_the_smallest_test() -> None:
    with MailServer() as server, smtplib.SMTP(server.host, server.port) as smtp:
        smtp.sendmail("a@b.example", ["c@d.example"], "Subject: hi\n\nHello")
        assert server.inbox.wait(to="c@d.example").raw.endswith(b"\r\n\r\nHello\r\n")


def test_any_recipient_one_message_with_its_envelope() -> None:
    with MailServer() as server:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        rcpts = ["Zed@example.com", "root@localhost", "nobody-known@mta.test", "x@y.invalid"]
        send(server, rcpts, "envelope", sender="Someone@example.org")
        got = server.inbox.wait(subject="envelope")
        assert got.mail_from == "Someone@example.org"
        assert got.rcpt_tos == tuple(rcpts)  # the order the client gave them
        assert got.message["Subject"] == "envelope"
        assert got.message.get_content() == "the body of envelope\n"
        assert b"by mta.test" in got.raw  # the hostname in our Received: line
        assert len(server.inbox.messages) == 1


def test_wait_for_a_recipient_and_a_count_and_clear() -> None:
    with MailServer() as server:
        for n in range(3):
            send(server, [f"user{n % 2}@example.com"], f"number {n}")
        two = server.inbox.wait(to="USER0@example.com", count=2)
        assert [m.subject for m in two] == ["number 0", "number 2"]
        assert server.inbox.wait(subject="number 1").rcpt_tos == ("user1@example.com",)
        server.inbox.clear()
        assert server.inbox.messages == []


def test_wait_times_out_naming_what_arrived() -> None:
    with MailServer() as server:
        send(server, ["bob@example.com"], "for bob")
        server.inbox.wait(to="bob@example.com")
        with pytest.raises(TimeoutError, match=r"to alice@example.com.*for bob"):
            server.inbox.wait(to="alice@example.com", timeout=0.2)


def test_null_sender() -> None:
    with MailServer() as server:
        with smtplib.SMTP(server.host, server.port) as client:
            client.sendmail("<>", ["postmaster@example.com"], "Subject: bounce\r\n\r\nx\r\n")
        assert server.inbox.wait(subject="bounce").mail_from == ""


def test_start_stop_removes_the_spool_and_keeps_the_inbox() -> None:
    server = MailServer().start()
    try:
        spool = spool_of(server)
        assert spool.is_dir()
        assert spool.name.startswith("mta-test-")  # a private one
        with pytest.raises(MTAError, match="already running"):
            server.start()
        send(server, ["x@example.com"], "kept")
        server.inbox.wait()
    finally:
        server.stop()
    assert not spool.exists()
    assert [m.subject for m in server.inbox.messages] == ["kept"]
    with pytest.raises(MTAError, match="not running"):
        server.port  # noqa: B018
    server.stop()  # a second stop does nothing
    with server:  # and it starts again
        send(server, ["x@example.com"], "again")
        assert server.inbox.wait(subject="again")


def test_several_servers_at_once_keep_their_mail_and_their_logs_apart() -> None:
    with MailServer(hostname="one.test") as one, MailServer(hostname="two.test") as two:
        assert one.port != two.port
        send(one, ["a@example.com"], "to one")
        send(two, ["b@example.com"], "to two")
        assert one.inbox.wait().subject == "to one"
        assert two.inbox.wait().subject == "to two"
        assert [m.subject for m in one.inbox.messages] == ["to one"]
        assert [m.subject for m in two.inbox.messages] == ["to two"]
        ports = one.port, two.port
    ones = "\n".join(one.log_lines)
    twos = "\n".join(two.log_lines)
    assert f"listening on 127.0.0.1:{ports[0]}" in ones
    assert f"listening on 127.0.0.1:{ports[1]}" in twos
    assert f"127.0.0.1:{ports[1]}" not in ones
    assert "to=<a@example.com>" in ones and "to=<b@example.com>" not in ones
    assert "to=<b@example.com>" in twos and "to=<a@example.com>" not in twos


def test_log_lines_say_what_happened() -> None:
    with MailServer() as server:
        send(server, ["c@example.com"], "logged")
        server.inbox.wait()
        lines = server.log_lines
    assert any(" smtp connected address=127.0.0.1" in line for line in lines)
    assert any("smtp envelope" in line and "to=<c@example.com>" in line for line in lines)
    assert any(line.startswith("mta: ready") for line in lines)


def test_the_host_process_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    groups = os.getgroups()
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    mta_logger = logging.getLogger("mta")
    mta_state = (mta_logger.level, mta_logger.propagate, list(mta_logger.handlers))
    with MailServer() as server:
        send(server, ["d@example.com"], "quiet")
        server.inbox.wait()
        assert {s: signal.getsignal(s) for s in handlers} == handlers
        assert os.getgroups() == groups
    assert (root.level, list(root.handlers)) == root_state
    assert (mta_logger.level, mta_logger.propagate, list(mta_logger.handlers)) == mta_state


def test_a_host_that_logs_warnings_only_sees_no_info_line() -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root = logging.getLogger()
    keep = Keep(logging.NOTSET)
    saved = root.level
    root.addHandler(keep)
    root.setLevel(logging.WARNING)
    try:
        with MailServer() as server:
            send(server, ["e@example.com"], "info only")
            server.inbox.wait()
            logging.getLogger("mta.smtp").warning("a warning the host wants")
        assert server.log_lines  # the server collected its INFO lines
    finally:
        root.removeHandler(keep)
        root.setLevel(saved)
    assert [r.getMessage() for r in seen if r.name.startswith("mta")] == [
        "a warning the host wants"
    ]


def _delivery_config(shared: pathlib.Path) -> str:
    uid = os.getuid() or 65534  # as root, deliveries run as this user, never as root
    gid = os.getgid() or 65534
    home = shared / "alice"
    home.mkdir()
    os.chown(home, uid, gid)
    return (
        "listen on 127.0.0.1 port 0\n"
        f'table users {{ "alice" = "{uid}:{gid}:{home}" }}\n'
        f'action "local" maildir "{home}/Maildir" userbase <users>\n'
        'match from any for domain "example.com" action "local"\n'
    )


def test_a_configuration_with_port_zero_delivers_and_the_inbox_sees_it(
    shared: pathlib.Path,
) -> None:
    with MailServer(_delivery_config(shared), hostname="mx.example.com") as server:
        assert server.port > 0
        with smtplib.SMTP(server.host, server.port) as client:
            client.sendmail("s@example.org", ["alice@example.com"], "Subject: local\r\n\r\nhi\r\n")
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.sendmail("s@example.org", ["nobody@example.com"], "Subject: no\r\n\r\n")
        assert refused.value.recipients["nobody@example.com"][0] == 550
        got = server.inbox.wait(subject="local")
        assert got.rcpt_tos == ("alice@example.com",)
        files = list((shared / "alice" / "Maildir" / "new").iterdir())
        assert len(files) == 1  # delivered by the configured action, and seen
        assert b"Subject: local" in files[0].read_bytes()
        assert b"by mx.example.com" in got.raw


def test_a_bad_configuration_says_where() -> None:
    with pytest.raises(ConfigErrors, match=r"<MailServer config>:2: "):
        MailServer("listen on 127.0.0.1 port 0\nmatch bogus\n").start()


def test_a_configuration_without_listener_is_refused() -> None:
    with pytest.raises(MTAError, match="no 'listen on'"):
        MailServer('action "r" relay\nmatch from any for any action "r"\n').start()


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = f'listen on 127.0.0.1 port {port}\naction "l" mbox\nmatch for local action "l"\n'
        with pytest.raises(MTAError, match=f"cannot listen on 127.0.0.1:{port}"):
            MailServer(config).start()


def test_a_web_inbox_line_in_the_configuration_is_served(shared: pathlib.Path) -> None:
    if importlib.util.find_spec("mta.testing.web") is None:
        pytest.skip("the web extra is not installed")
    config = "web inbox on 127.0.0.1 port 0 keep 2\n" + _delivery_config(shared)
    with MailServer(config) as server:
        assert server.web_url.startswith("http://127.0.0.1:")
        for n in range(3):  # one at a time: the queue may deliver a batch in any order
            send(server, ["alice@example.com"], f"number {n}")
            server.inbox.wait(subject=f"number {n}")
        with urllib.request.urlopen(server.web_url + "api/messages", timeout=5) as response:
            listed = json.load(response)
        # the line's keep bounds the inbox: the oldest went first
        assert [m["subject"] for m in listed] == ["number 2", "number 1"]
        assert [m.subject for m in server.inbox.messages] == ["number 1", "number 2"]


def test_web_url_needs_web_true() -> None:
    with MailServer() as server, pytest.raises(MTAError, match="web=True"):
        server.web_url  # noqa: B018


def test_the_web_inbox_lists_what_the_server_received() -> None:
    if importlib.util.find_spec("mta.testing.web") is None:
        with pytest.raises(MTAError, match="web inbox is not available"):
            MailServer(web=True).start()
        return
    with MailServer(web=True) as server:
        assert server.web_url.startswith("http://127.0.0.1:")
        send(server, ["web@example.com"], "on the web")
        server.inbox.wait()
        with urllib.request.urlopen(server.web_url + "api/messages", timeout=5) as response:
            listed = json.load(response)
        assert [m["subject"] for m in listed] == ["on the web"]
        web_port = server.web_url.rsplit(":", 1)[1].rstrip("/")
    with socket.socket() as probe:  # stopped with the server
        assert probe.connect_ex(("127.0.0.1", int(web_port))) != 0


def test_a_server_in_another_thread_than_the_test() -> None:
    # a session fixture may start the server in one thread and stop it in another
    server = MailServer()
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join()
    try:
        send(server, ["f@example.com"], "threads")
        assert server.inbox.wait().subject == "threads"
    finally:
        server.stop()


async def _reply(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    """The next whole SMTP reply (its last line has a space after the code)."""
    while True:
        lines = bytes(buffer).split(b"\r\n")
        for n, line in enumerate(lines[:-1]):
            if line[3:4] == b" ":
                reply = b"\r\n".join(lines[: n + 1])
                del buffer[: len(reply) + 2]
                return reply
        chunk = await stream.receive_some()
        assert chunk, "the server closed the connection"
        buffer += chunk


async def test_serve_in_a_trio_test() -> None:
    with trio.fail_after(10):
        async with serve() as server:
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                buffer = bytearray()
                assert (await _reply(stream, buffer)).startswith(b"220 mta.test")
                for command, code in [
                    (b"EHLO trio.test", b"250"),
                    (b"MAIL FROM:<t@example.org>", b"250"),
                    (b"RCPT TO:<u@example.com>", b"250"),
                    (b"DATA", b"354"),
                    (b"Subject: from trio\r\n\r\nhello\r\n.", b"250"),
                    (b"QUIT", b"221"),
                ]:
                    await stream.send_all(command + b"\r\n")
                    assert (await _reply(stream, buffer)).startswith(code)
            seen = server.inbox.version
            while not server.inbox.messages:
                seen = await server.inbox.changed(seen)
            assert server.inbox.messages[0].subject == "from trio"
            assert server.inbox.messages[0].rcpt_tos == ("u@example.com",)
            assert any("smtp connected" in line for line in server.log_lines)
    with pytest.raises(MTAError, match="not running"):
        server.port  # noqa: B018


async def test_two_trio_servers_keep_their_logs_apart() -> None:
    with trio.fail_after(10):
        async with serve(hostname="one.test") as one, serve(hostname="two.test") as two:
            ports = one.port, two.port
        assert f"127.0.0.1:{ports[0]}" in "\n".join(one.log_lines)
        assert f"127.0.0.1:{ports[1]}" not in "\n".join(one.log_lines)
        assert f"127.0.0.1:{ports[1]}" in "\n".join(two.log_lines)


def _in_child_as(uid: int, job: Callable[[], str], timeout: float = 20.0) -> str:
    """What ``job`` returns, run in a forked child that dropped to ``uid``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to uid, run the job, report through the pipe
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.write(write, job().encode())
        except BaseException as exc:
            os.write(write, f"error: {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    try:
        chunks = []
        ready, _, _ = select.select([read], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)  # hung: what it wrote so far says enough
        while data := os.read(read, 4096):
            chunks.append(data)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="run unprivileged: every other test here is that")
def test_an_unprivileged_user_runs_it_too() -> None:
    def job() -> str:
        with MailServer() as server:
            send(server, ["g@example.com", "root@localhost"], "unprivileged")
            got = server.inbox.wait(subject="unprivileged")
        return f"{os.getuid()} {got.rcpt_tos}"

    # once here first: the child cannot import what it has not (this interpreter
    # may live where uid 65534 cannot read)
    assert job() == "0 ('g@example.com', 'root@localhost')"
    assert _in_child_as(65534, job) == "65534 ('g@example.com', 'root@localhost')"


def test_faults_are_the_replies_a_client_sees_and_belong_to_one_server() -> None:
    with MailServer() as server, MailServer() as other:
        server.fail(rcpt="*@Example.ORG", reply="451 4.3.0 try again later")
        server.fail(at="commit", rcpt="late@example.com", reply="452 4.3.1 full", times=1)
        with smtplib.SMTP(server.host, server.port) as client:
            client.ehlo()
            client.mail("a@example.com")
            assert client.rcpt("ann@example.org") == (451, b"4.3.0 try again later")
            assert client.rcpt("bob@example.com")[0] == 250
            client.rset()
            with pytest.raises(smtplib.SMTPDataError) as full:
                client.sendmail("a@example.com", ["late@example.com"], "Subject: x\n\n")
            assert (full.value.smtp_code, full.value.smtp_error) == (452, b"4.3.1 full")
            client.sendmail("a@example.com", ["late@example.com"], "Subject: second\n\n")
        assert server.inbox.wait().subject == "second"  # times=1: the retry went through
        send(other, ["ann@example.org"], "not faulted")  # the other server has none
        server.clear_faults()
        send(server, ["ann@example.org"], "cleared")
        assert server.inbox.wait(subject="cleared")
        with pytest.raises(ValueError, match="at must be one of"):
            server.fail(at="helo", reply="451 no")


def test_a_fault_at_connect_can_disconnect() -> None:
    with MailServer() as server:
        server.fail(at="connect", disconnect=True)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtplib.SMTP(server.host, server.port, timeout=5)
        server.clear_faults()
        send(server, ["x@example.com"], "back")
        assert server.inbox.wait(subject="back")


def test_another_mta_relaying_to_it_sees_the_fault() -> None:
    with MailServer(hostname="target.test") as target:
        target.fail(rcpt="ann@example.org", reply="451 4.7.1 greylisted, come back later")
        relay = (
            "listen on 127.0.0.1 port 0\n"
            f'action "out" relay host "smtp://127.0.0.1:{target.port}"\n'
            'match from any for any action "out"\n'
        )
        with MailServer(relay, hostname="sender.test") as sender:
            send(sender, ["ann@example.org", "bob@example.org"], "relayed")
            assert target.inbox.wait(subject="relayed").rcpt_tos == ("bob@example.org",)
            deadline = time.monotonic() + 5
            while not any("result=TempFail" in line for line in sender.log_lines):
                assert time.monotonic() < deadline, sender.log_lines
                time.sleep(0.02)
        [failed] = [line for line in sender.log_lines if "result=TempFail" in line]
        assert "to=<ann@example.org>" in failed
        assert "451 4.7.1 greylisted, come back later" in failed
