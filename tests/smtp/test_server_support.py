"""Helpers for the sans-IO SMTP server tests: a scripted driver (no tests here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mta.reply import Reply
from mta.smtp import events as ev
from mta.smtp.server import ServerConnection, SessionSettings

HOST = "mx.example.org"
PEER = "192.0.2.1"

Decide = Callable[[ServerConnection, ev.Event], None]


def settings(**overrides: Any) -> SessionSettings:
    values: dict[str, Any] = {
        "hostname": HOST,
        "peer": PEER,
        "max_message_size": 1_000_000,
        "max_rcpt": 100,
        "max_mails": 10,
    }
    values.update(overrides)
    return SessionSettings(**values)


def accept_all(conn: ServerConnection, event: ev.Event) -> None:
    """Accept every request; a DataEnd gets msgid 0000abcd, or its own error."""
    if isinstance(event, ev.DataEnd):
        if event.error is not None:
            conn.reject(event.error)
        else:
            conn.accept_message("0000abcd")
    else:
        conn.accept()


def rejecting(kind: type, reply: Reply) -> Decide:
    """Accept everything but ``kind``, which gets ``reply``."""

    def decide(conn: ServerConnection, event: ev.Event) -> None:
        if isinstance(event, kind):
            conn.reject(reply)
        else:
            accept_all(conn, event)

    return decide


class Client:
    """Feed bytes, run every event through ``decide``, collect events and replies."""

    def __init__(self, decide: Decide = accept_all, **overrides: Any) -> None:
        self.conn = ServerConnection(settings(**overrides))
        self.decide = decide
        self.events: list[ev.Event] = []
        self.conn.banner()
        self.greeting = self.conn.data_to_send().decode()

    def pump(self) -> list[ev.Event]:
        """Run next_event() until it needs data or the session closed."""
        got: list[ev.Event] = []
        while True:
            event = self.conn.next_event()
            if event is ev.NEED_DATA:
                break
            got.append(event)
            if isinstance(event, ev.ConnectionClosed):
                break
            if isinstance(event, ev.REQUESTS):
                self.decide(self.conn, event)
            if self.conn.awaiting_tls:
                break
        self.events += got
        return got

    def feed(self, data: bytes) -> list[ev.Event]:
        self.conn.receive_data(data)
        return self.pump()

    def send(self, data: bytes | str) -> str:
        """Feed ``data`` and return the replies it produced, as text."""
        if isinstance(data, str):
            data = data.encode()
        self.feed(data)
        return self.conn.data_to_send().decode("utf-8", "replace")

    def lines(self, data: bytes | str) -> list[str]:
        return self.send(data).splitlines()

    def ehlo(self, domain: str = "client.example") -> str:
        return self.send(f"EHLO {domain}\r\n")

    def mail(self, sender: str = "<alice@example.net>") -> str:
        return self.send(f"MAIL FROM:{sender}\r\n")

    def rcpt(self, rcpt: str = "<bob@example.org>") -> str:
        return self.send(f"RCPT TO:{rcpt}\r\n")

    def ready_for_data(self) -> None:
        """EHLO, MAIL, RCPT, DATA accepted: the next bytes are content."""
        self.ehlo()
        self.mail()
        self.rcpt()
        assert self.send("DATA\r\n").startswith("354 ")

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def content(self) -> bytes:
        return b"".join(chunk.data for chunk in self.of(ev.DataChunk))


def run_session(data: list[bytes], **overrides: Any) -> tuple[list[ev.Event], bytes]:
    """Feed ``data`` piece by piece with accept_all; the events (chunks merged
    into one DataChunk per message) and every reply byte."""
    client = Client(**overrides)
    out = client.greeting.encode()
    for piece in data:
        client.feed(piece)
        out += client.conn.data_to_send()
        if client.conn.closed:
            break
    if not client.conn.closed:
        client.feed(b"")
        out += client.conn.data_to_send()
    merged: list[ev.Event] = []
    for event in client.events:
        if isinstance(event, ev.DataChunk) and merged and isinstance(merged[-1], ev.DataChunk):
            merged[-1] = ev.DataChunk(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged, out
