"""The web inbox as an ASGI application (Starlette): pages, JSON API, live feed.

Routes (read-only but for ``DELETE /api/messages``):

- ``/``: the list, newest first, kept live by ``/static/inbox.js``;
- ``/messages/<id>``: one message; ``/messages/<id>/html`` its HTML part,
  shown there in a sandboxed frame;
- ``/api/messages`` (``GET`` the list, newest first, with how many older
  messages a bounded inbox dropped in ``X-Mta-Dropped``; ``DELETE`` clears the
  inbox), ``/api/messages/<id>`` (envelope, headers, text, html, attachments),
  ``/api/messages/<id>/raw`` (the bytes as received);
- ``/api/events``: server-sent events, one ``change`` event when the client
  connects and one each time the inbox changes (:meth:`Inbox.changed`).

Every answer carries a strict Content-Security-Policy and ``nosniff``; a
request whose ``Host`` is not the address served or a loopback name is
refused (421), so a web page elsewhere cannot read the inbox through DNS
rebinding.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mta.testing.inbox import Inbox, ReceivedMessage
from mta.testing.web import page, view

__all__ = ["DROPPED_HEADER", "create_app"]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DROPPED_HEADER = "X-Mta-Dropped"  # of /api/messages: older messages a bound dropped
_STATIC_TYPES = {"inbox.js": "text/javascript", "inbox.css": "text/css"}


def _static() -> dict[str, bytes]:
    folder = importlib.resources.files("mta.testing.web") / "static"
    return {name: (folder / name).read_bytes() for name in _STATIC_TYPES}


def _host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port or IPv6 brackets."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Guard:
    """Security headers on every answer; a ``Host`` not ours refused."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = hosts  # None: any name (the server listens on a wildcard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if self.hosts is not None and _host_name(host).lower() not in self.hosts:
            refused = Response("unknown host name\n", status_code=421, media_type="text/plain")
            await refused(scope, receive, send)
            return

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", page.PAGE_POLICY.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, guarded)


def create_app(inbox: Inbox, *, hosts: frozenset[str] | None = LOOPBACK_NAMES) -> ASGIApp:
    """The web inbox over ``inbox``.  ``hosts``: the names a request's ``Host``
    may give (loopback ones by default), None for any."""
    static = _static()

    def find(request: Request) -> ReceivedMessage | None:
        return inbox.get(request.path_params["id"])

    def newest_first() -> list[view.Summary]:
        return [view.summary(m) for m in reversed(inbox.messages)]

    async def home(request: Request) -> Response:
        return HTMLResponse(page.inbox_page(newest_first(), inbox.dropped))

    async def message_html(request: Request) -> Response:
        found = find(request)
        if found is None:
            return HTMLResponse(page.not_found_page("no such message"), status_code=404)
        return HTMLResponse(page.message_page(view.detail(found)))

    async def part_html(request: Request) -> Response:
        found = find(request)
        html = None if found is None else view.detail(found)["html"]
        if html is None:
            return HTMLResponse(page.not_found_page("no HTML part"), status_code=404)
        return HTMLResponse(html, headers={"Content-Security-Policy": page.PART_POLICY})

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return Response(static[name], media_type=_STATIC_TYPES[name])

    async def api_list(request: Request) -> Response:
        if request.method == "DELETE":
            inbox.clear()
            return Response(status_code=204)
        return JSONResponse(newest_first(), headers={DROPPED_HEADER: str(inbox.dropped)})

    async def api_message(request: Request) -> Response:
        found = find(request)
        if found is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        return JSONResponse(view.detail(found))

    async def api_raw(request: Request) -> Response:
        found = find(request)
        if found is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        return Response(found.raw, media_type="text/plain; charset=utf-8")

    async def api_events(request: Request) -> Response:
        async def changes() -> AsyncIterator[str]:
            seen = -1  # the first notice at once: the page may have missed one
            while True:
                seen = await inbox.changed(seen)
                yield f"retry: 1000\nevent: change\ndata: {seen}\n\n"

        return StreamingResponse(
            changes(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    routes = [
        Route("/", home),
        Route("/messages/{id}", message_html),
        Route("/messages/{id}/html", part_html),
        Route("/static/{name}", asset),
        Route("/api/messages", api_list, methods=["GET", "DELETE"]),
        Route("/api/messages/{id}", api_message),
        Route("/api/messages/{id}/raw", api_raw),
        Route("/api/events", api_events),
    ]
    return _Guard(Starlette(routes=routes), hosts)
