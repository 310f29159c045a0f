"""The web inbox over HTTP: ``serve_web`` on loopback, a stdlib client.

The inbox is fed directly (no SMTP server); each request runs in a thread
(``http.client`` blocks) while ``serve_web`` runs in the test's trio loop.
"""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from mta.testing import Inbox
from mta.testing.web import serve_web
from tests.testing.web.messages import HOSTILE_HTML, plain, rich

Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture
async def web(nursery: trio.Nursery) -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    host, port = await nursery.start(serve_web, inbox, "127.0.0.1", 0)
    assert host == "127.0.0.1" and port > 0
    yield inbox, port


def _request(port: int, method: str, path: str, host: str | None = None) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Host": host} if host is not None else {}
        connection.request(method, path, headers=headers)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


async def request(port: int, method: str, path: str, host: str | None = None) -> Answer:
    return await trio.to_thread.run_sync(_request, port, method, path, host)


async def get_json(port: int, path: str) -> Any:
    status, headers, body = await request(port, "GET", path)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    return json.loads(body)


async def test_the_api_lists_newest_first_and_shows_each_message(web: tuple[Inbox, int]) -> None:
    inbox, port = web
    assert await get_json(port, "/api/messages") == []
    inbox.add(plain("1", "first"))
    inbox.add(rich("2", "<p>the <i>HTML</i></p>", subject="second"))
    listed = await get_json(port, "/api/messages")
    assert [m["subject"] for m in listed] == ["second", "first"]
    assert listed[1]["rcpt_tos"] == ["bob@example.test"]
    one = await get_json(port, "/api/messages/2")
    assert one["text"] == "the text part\n"
    assert one["html"] == "<p>the <i>HTML</i></p>\n"
    assert one["attachments"][0]["filename"] == "report.pdf"
    assert ["Subject", "second"] in one["headers"]
    status, headers, body = await request(port, "GET", "/api/messages/1/raw")
    assert status == 200 and body == inbox.messages[0].raw
    assert headers["content-type"].startswith("text/plain")


async def test_unknown_messages_are_404(web: tuple[Inbox, int]) -> None:
    _, port = web
    for path in ("/api/messages/9", "/api/messages/9/raw", "/messages/9", "/messages/9/html"):
        status, _, _ = await request(port, "GET", path)
        assert status == 404, path


async def test_a_bounded_inbox_says_what_it_dropped(nursery: trio.Nursery) -> None:
    inbox = Inbox(keep=2)
    _, port = await nursery.start(serve_web, inbox, "127.0.0.1", 0)
    for n in range(1, 5):
        inbox.add(plain(str(n), f"number {n}"))
    status, headers, body = await request(port, "GET", "/api/messages")
    assert status == 200 and headers["x-mta-dropped"] == "2"
    assert [m["subject"] for m in json.loads(body)] == ["number 4", "number 3"]
    for path in ("/api/messages/1", "/api/messages/2/raw", "/messages/1"):
        status, _, _ = await request(port, "GET", path)
        assert status == 404, path
    assert (await get_json(port, "/api/messages/3"))["subject"] == "number 3"
    _, _, page = await request(port, "GET", "/")
    assert b'<span id="count">2 messages (2 older dropped)</span>' in page
    await request(port, "DELETE", "/api/messages")
    _, headers, _ = await request(port, "GET", "/api/messages")
    assert headers["x-mta-dropped"] == "0"
    _, _, page = await request(port, "GET", "/")
    assert b'<span id="count">0 messages</span>' in page


async def test_delete_clears_the_inbox(web: tuple[Inbox, int]) -> None:
    inbox, port = web
    inbox.add(plain("1", "first"))
    status, _, _ = await request(port, "DELETE", "/api/messages")
    assert status == 204
    assert inbox.messages == []
    assert await get_json(port, "/api/messages") == []


async def test_pages_escape_what_messages_say(web: tuple[Inbox, int]) -> None:
    inbox, port = web
    inbox.add(rich("1", HOSTILE_HTML, subject="<script>alert(1)</script>"))
    for path in ("/", "/messages/1"):
        status, headers, body = await request(port, "GET", path)
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"<script>alert" not in body
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert b"onerror" not in body  # the HTML part is only in its own frame
    _, _, page = await request(port, "GET", "/messages/1")
    assert b'<iframe id="html" sandbox=""' in page


async def test_every_answer_has_a_strict_policy(web: tuple[Inbox, int]) -> None:
    inbox, port = web
    inbox.add(rich("1", HOSTILE_HTML))
    for path in ("/", "/messages/1", "/api/messages", "/static/inbox.js", "/nothing"):
        _, headers, _ = await request(port, "GET", path)
        policy = headers["content-security-policy"]
        assert policy.startswith("default-src 'none'"), path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = await request(port, "GET", "/messages/1/html")
    assert status == 200 and body.startswith(b"<p>hostile</p><script>")
    policy = headers["content-security-policy"]
    assert policy.startswith("sandbox;") and "script-src" not in policy
    assert "default-src 'none'" in policy


async def test_a_foreign_host_name_is_refused(web: tuple[Inbox, int]) -> None:
    _, port = web
    status, _, _ = await request(port, "GET", "/api/messages", host=f"evil.example:{port}")
    assert status == 421
    for name in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        status, _, _ = await request(port, "GET", "/api/messages", host=name)
        assert status == 200, name


async def test_static_files_are_served_with_their_types(web: tuple[Inbox, int]) -> None:
    _, port = web
    status, headers, body = await request(port, "GET", "/static/inbox.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert b"EventSource" in body
    status, headers, _ = await request(port, "GET", "/static/inbox.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    status, _, _ = await request(port, "GET", "/static/../app.py")
    assert status == 404


def _read_events(port: int, count: int, arrive: trio.lowlevel.TrioToken, inbox: Inbox) -> list[str]:
    """The data of the first ``count`` change events; a message is added (in
    the trio thread) once the first one came."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/api/events")
        answer = connection.getresponse()
        assert answer.getheader("content-type", "").startswith("text/event-stream")
        data: list[str] = []
        while len(data) < count:
            line = answer.fp.readline().decode().rstrip("\r\n")
            if line.startswith("data: "):
                data.append(line[len("data: ") :])
                if len(data) == 1:
                    trio.from_thread.run_sync(inbox.add, plain("1", "live"), trio_token=arrive)
        return data
    finally:
        connection.close()


async def test_events_announce_each_change(web: tuple[Inbox, int]) -> None:
    inbox, port = web
    before = inbox.version
    token = trio.lowlevel.current_trio_token()
    with trio.fail_after(5):
        data = await trio.to_thread.run_sync(_read_events, port, 2, token, inbox)
    assert data == [str(before), str(inbox.version)]
    assert inbox.version != before


async def test_serve_web_stops_when_cancelled() -> None:
    inbox = Inbox()
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(serve_web, inbox, "127.0.0.1", 0)
        status, _, _ = await request(port, "GET", "/api/messages")
        assert status == 200
        nursery.cancel_scope.cancel()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


async def test_nothing_is_configured_in_the_host_process(web: tuple[Inbox, int]) -> None:
    _, port = web
    await request(port, "GET", "/nothing")
    assert logging.getLogger("hypercorn.error").handlers == []
    assert logging.getLogger("hypercorn.access").handlers == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # (SIGINT is trio.run's own)


async def test_an_address_in_use_is_an_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with trio.open_nursery() as nursery:
            with pytest.raises(OSError):
                await nursery.start(serve_web, Inbox(), "127.0.0.1", port)
