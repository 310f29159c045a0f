"""STARTTLS (RFC 3207) and AUTH PLAIN / LOGIN (RFC 4954) in the server state machine."""

from __future__ import annotations

import base64

import pytest

from mta.config.model import AuthMode, TlsMode
from mta.reply import Reply
from mta.smtp import events as ev
from tests.smtp.test_server_support import Client, rejecting

NOT_ALLOWED = "503 5.5.1 Invalid command: Command not allowed at this point.\r\n"
NOT_SUPPORTED = "503 5.5.1 Invalid command: Command not supported\r\n"
SYNTAX = "501 5.5.2 Syntax error: Syntax error\r\n"
CANCELLED = "501 5.7.0 Authentication cancelled\r\n"
OK = "235 2.0.0 Authentication succeeded\r\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_client(**overrides: object) -> Client:
    values: dict[str, object] = {"tls": TlsMode.STARTTLS}
    values.update(overrides)
    return Client(**values)  # type: ignore[arg-type]


def auth_client(**overrides: object) -> Client:
    values: dict[str, object] = {"tls": TlsMode.SMTPS, "secure": True, "auth": AuthMode.REQUIRED}
    values.update(overrides)
    client = Client(**values)  # type: ignore[arg-type]
    client.ehlo()
    return client


# -- STARTTLS ------------------------------------------------------------------------


def test_starttls_then_the_session_starts_over() -> None:
    client = tls_client(auth=AuthMode.OPTIONAL)
    client.ehlo()
    client.mail()
    client.send("RSET\r\n")
    assert client.send("STARTTLS\r\n") == "220 2.0.0 Ready to start TLS\r\n"
    assert client.of(ev.StartTls) == [ev.StartTls()]
    with pytest.raises(RuntimeError):
        client.conn.next_event()
    client.conn.tls_established()
    assert client.conn.secure and client.conn.helo is None
    assert client.mail() == NOT_ALLOWED
    lines = client.ehlo().splitlines()
    assert "250-STARTTLS" not in lines
    assert "250-AUTH PLAIN LOGIN" in lines
    assert client.send("STARTTLS\r\n") == "503 5.5.1 Invalid command: Channel already secured\r\n"


def test_starttls_checks() -> None:
    client = tls_client()
    assert client.send("STARTTLS\r\n") == NOT_ALLOWED
    client.ehlo()
    assert client.send("STARTTLS now\r\n") == (
        "501 5.5.4 Invalid command arguments: No parameters allowed\r\n"
    )
    client.mail()
    assert client.send("STARTTLS\r\n") == NOT_ALLOWED
    plain = Client()
    plain.ehlo()
    assert plain.send("STARTTLS\r\n") == NOT_SUPPORTED
    smtps = Client(tls=TlsMode.SMTPS, secure=True)
    smtps.ehlo()
    assert smtps.send("STARTTLS\r\n") == NOT_SUPPORTED
    assert plain.of(ev.StartTls) == smtps.of(ev.StartTls) == []


def test_tls_require_is_met_after_starttls() -> None:
    client = tls_client(tls=TlsMode.REQUIRE)
    client.ehlo()
    assert client.mail().startswith("530 ")
    client.send("STARTTLS\r\n")
    client.conn.tls_established()
    client.ehlo()
    assert client.mail() == "250 2.0.0 Ok\r\n"


def test_driver_can_refuse_starttls() -> None:
    client = tls_client(decide=rejecting(ev.StartTls, Reply.of(454, "4.7.0", "TLS not available")))
    client.ehlo()
    assert client.send("STARTTLS\r\n") == "454 4.7.0 TLS not available\r\n"
    assert client.mail() == "250 2.0.0 Ok\r\n"


def test_tls_established_needs_an_accepted_starttls() -> None:
    with pytest.raises(RuntimeError):
        tls_client().conn.tls_established()


# -- AUTH ----------------------------------------------------------------------------


def test_auth_plain_with_initial_response() -> None:
    client = auth_client()
    assert client.mail().startswith("530 5.5.1 Invalid command: Must issue an AUTH")
    assert client.send("AUTH PLAIN " + b64(b"authz\0alice\0s3cret") + "\r\n") == OK
    assert client.of(ev.AuthCredentials) == [ev.AuthCredentials("PLAIN", "alice", "s3cret")]
    assert client.conn.authenticated
    assert client.send("AUTH PLAIN x\r\n") == (
        "503 5.5.1 Invalid command: Already authenticated\r\n"
    )
    assert client.mail() == "250 2.0.0 Ok\r\n"


def test_auth_plain_with_prompt() -> None:
    client = auth_client()
    assert client.send("auth plain\r\n") == "334 \r\n"
    assert client.send(b64(b"\0bob\0pw") + "\r\n") == OK
    assert client.of(ev.AuthCredentials) == [ev.AuthCredentials("PLAIN", "bob", "pw")]


def test_auth_login() -> None:
    client = auth_client()
    assert client.send("AUTH LOGIN\r\n") == "334 VXNlcm5hbWU6\r\n"
    assert client.send(b64(b"carol") + "\r\n") == "334 UGFzc3dvcmQ6\r\n"
    assert client.send(b64("p\xe4ss".encode()) + "\r\n") == OK
    assert client.of(ev.AuthCredentials) == [ev.AuthCredentials("LOGIN", "carol", "p\xe4ss")]


def test_auth_login_with_initial_user() -> None:
    client = auth_client()
    assert client.send("AUTH LOGIN " + b64(b"dave") + "\r\n") == "334 UGFzc3dvcmQ6\r\n"
    assert client.send(b64(b"pw") + "\r\n") == OK
    assert client.of(ev.AuthCredentials) == [ev.AuthCredentials("LOGIN", "dave", "pw")]


@pytest.mark.parametrize(
    "exchange",
    [["AUTH PLAIN"], ["AUTH LOGIN"], ["AUTH LOGIN", b64(b"erin")]],
)
def test_auth_cancel(exchange: list[str]) -> None:
    client = auth_client()
    for line in exchange:
        assert client.send(line + "\r\n").startswith("334 ")
    assert client.send("*\r\n") == CANCELLED
    assert client.of(ev.AuthCredentials) == []
    assert client.send("NOOP\r\n") == "250 2.0.0 Ok\r\n"


@pytest.mark.parametrize(
    "command",
    [
        "AUTH PLAIN !!!!",
        "AUTH PLAIN " + b64(b"alice"),  # no NUL separators
        "AUTH PLAIN " + b64(b"\0alice\0"),  # empty password
        "AUTH PLAIN " + b64(b"\0\0pw"),  # empty user
        "AUTH PLAIN " + b64(b"\0al\nice\0pw"),
        "AUTH PLAIN " + b64(b"\0alice\0p\rw"),
        "AUTH PLAIN " + b64(b"\0alice\0pw\0more"),
        "AUTH PLAIN " + b64(b"\0al\xffice\0pw"),
        "AUTH PLAIN =",
        "AUTH LOGIN " + b64(b"x\ny"),
        "AUTH LOGIN " + b64(b"x\0y"),
        f"AUTH LOGIN {b64(b'xy')[:-1]}",
    ],
)
def test_auth_syntax_errors(command: str) -> None:
    client = auth_client()
    assert client.send(command + "\r\n") == SYNTAX
    assert client.of(ev.AuthCredentials) == []
    assert not client.conn.authenticated


def test_auth_bad_password_field() -> None:
    client = auth_client()
    client.send("AUTH LOGIN " + b64(b"frank") + "\r\n")
    assert client.send(b64(b"a\rb") + "\r\n") == SYNTAX
    assert client.send("NOOP\r\n") == "250 2.0.0 Ok\r\n"


def test_auth_failure_allows_a_retry() -> None:
    client = auth_client(decide=rejecting(ev.AuthCredentials, Reply.of(535, "5.7.8", "Nope")))
    assert client.send("AUTH PLAIN " + b64(b"\0a\0b") + "\r\n") == "535 5.7.8 Nope\r\n"
    assert not client.conn.authenticated
    assert client.send("AUTH PLAIN " + b64(b"\0a\0c") + "\r\n") == "535 5.7.8 Nope\r\n"
    assert len(client.of(ev.AuthCredentials)) == 2


def test_auth_checks() -> None:
    client = auth_client()
    assert client.send("AUTH\r\n") == "501 5.5.4 Invalid command arguments: No parameters given\r\n"
    assert client.send("AUTH CRAM-MD5\r\n") == (
        '504 5.7.4 Security features not supported: AUTH method "CRAM-MD5" not supported\r\n'
    )
    before_helo = Client(tls=TlsMode.SMTPS, secure=True, auth=AuthMode.OPTIONAL)
    assert before_helo.send("AUTH PLAIN\r\n") == NOT_ALLOWED
    in_tx = auth_client(auth=AuthMode.OPTIONAL)
    in_tx.mail()
    assert in_tx.send("AUTH PLAIN\r\n") == NOT_ALLOWED
    no_tls = Client(auth=AuthMode.OPTIONAL)
    no_tls.ehlo()
    assert no_tls.send("AUTH PLAIN\r\n") == NOT_SUPPORTED
    no_auth = auth_client(auth=AuthMode.NONE)
    assert no_auth.send("AUTH PLAIN\r\n") == NOT_SUPPORTED
    local = Client(local=True, peer="local", auth=AuthMode.OPTIONAL, secure=True)
    local.ehlo()
    assert local.send("AUTH PLAIN\r\n") == "503 5.5.1 Invalid command: Already authenticated\r\n"


def test_credentials_are_not_in_the_repr() -> None:
    assert "s3cret" not in repr(ev.AuthCredentials("PLAIN", "alice", "s3cret"))


def test_authentication_is_forgotten_after_starttls() -> None:
    client = tls_client(auth=AuthMode.OPTIONAL, secure=False)
    client.ehlo()
    client.send("STARTTLS\r\n")
    client.conn.tls_established()
    client.ehlo()
    assert client.send("AUTH PLAIN " + b64(b"\0a\0b") + "\r\n") == OK
    assert client.conn.authenticated


def test_commands_inside_an_exchange_are_responses() -> None:
    client = auth_client()
    client.send("AUTH PLAIN\r\n")
    assert client.send("QUIT\r\n") == SYNTAX
    assert not client.conn.closed
    client.send("AUTH LOGIN\r\n")
    assert client.send(b"a\rb\r\n") == "501 5.5.2 Syntax error: Invalid character in command\r\n"
    assert client.send("NOOP\r\n") == "250 2.0.0 Ok\r\n"
