"""The web inbox: a read-only HTML view and JSON API of an :class:`Inbox`.

:func:`serve_web` serves :func:`~mta.testing.web.app.create_app` with
hypercorn's trio worker in the caller's trio event loop (no thread, no
process), until cancelled.  ``MailServer(web=True)`` and the daemon's ``--web``
listener call it; it is imported only then, so a server without a web inbox
never loads Starlette or hypercorn.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import cast

import trio

from mta.log import get_logger
from mta.testing.inbox import Inbox

__all__ = ["serve_web"]

WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


def _address(bind: str) -> tuple[str, int]:
    """``("127.0.0.1", 8025)`` from hypercorn's ``"http://127.0.0.1:8025"``."""
    hostport = bind.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


async def serve_web(
    inbox: Inbox,
    host: str,
    port: int,
    *,
    listening: socket.socket | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the web inbox of ``inbox`` on ``host``:``port`` (0: a port the
    OS picks) until cancelled; reports the bound ``(host, port)`` through
    ``task_status``.  Its log (errors only) goes to the ``mta.web`` logger;
    nothing is configured globally and no signal handler is installed.
    OSError when the address cannot be bound.  ``listening``: a socket already
    bound to ``host``:``port`` and listening, served instead (the daemon binds
    before it detaches); it is closed on return either way."""
    from hypercorn.config import Config, Sockets
    from hypercorn.trio.run import worker_serve
    from hypercorn.typing import ASGIFramework
    from hypercorn.utils import wrap_app

    from mta.testing.web.app import LOOPBACK_NAMES, create_app

    hosts = None if host in WILDCARDS else LOOPBACK_NAMES | {host.lower()}
    config = Config()
    config.accesslog = None
    config.errorlog = get_logger("web")
    config.graceful_timeout = 0.5
    app = cast("ASGIFramework", create_app(inbox, hosts=hosts))  # the same protocol, typed apart
    if listening is None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # bound here, not by hypercorn: an OSError is the caller's, not in a group
        listening = socket.create_server((host, port), family=family, backlog=config.backlog)
    sockets = Sockets(secure_sockets=[], insecure_sockets=[listening], quic_sockets=[])
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                partial(
                    worker_serve,
                    wrap_app(app, config.wsgi_max_body_size, "asgi"),
                    config,
                    sockets=sockets,
                )
            )
            task_status.started(_address(binds[0]))
    finally:
        listening.close()
