"""What a session does before its banner: the PROXY header, TLS for
``smtps`` listeners, and who the client is.

- :func:`read_proxy`: a ``proxy-v2`` listener's PROXY protocol header
  (:mod:`mta.net.proxy`), which names the real client;
- :func:`start_tls`: the TLS handshake (``smtps``, and later STARTTLS);
- :func:`identify`: the client's name (:mod:`mta.net.rdns`: the hosts file,
  then reverse DNS) and the name the server gives itself (the listener's
  ``hostname``, or its ``hostnames`` table by local address).

Each fills in the session's :class:`~mta.server.client.Client`.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import cast

import attrs
import trio

from mta.errors import TemporaryFailure
from mta.log import get_logger, quote, visible
from mta.net.proxy import ProxyCommand, ProxyError, ProxyFamily, ProxyV2Parser
from mta.net.tls import TlsInfo, tls_summary
from mta.server.client import Client
from mta.server.services import Endpoint, Services
from mta.tables.lookups import lookup_addrname

__all__ = ["RECEIVE_SIZE", "Prefixed", "ProxyOutcome", "identify", "read_proxy", "start_tls"]

log = get_logger("smtp")

RECEIVE_SIZE = 65536


@attrs.frozen
class ProxyOutcome:
    """What reading the PROXY header gave: ``reason`` set when the session must
    end (``disconnect``, ``proxy-error``, ``timeout``); ``rest``: the bytes that
    came after the header."""

    reason: str | None
    rest: bytes = b""


async def read_proxy(
    stream: trio.abc.Stream, timeout: float, client: Client, session_id: int
) -> ProxyOutcome:
    """Read the PROXY v2 header; the real client's addresses go into ``client``."""
    parser = ProxyV2Parser()
    with trio.move_on_after(timeout):
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                return ProxyOutcome("disconnect")
            try:
                result = parser.feed(bytes(data))
            except ProxyError as exc:
                log.info("%016x smtp bad-input result=%s", session_id, quote(str(exc)))
                return ProxyOutcome("proxy-error")
            if result is None:
                continue
            header = result.header
            if header.command is ProxyCommand.PROXY:
                if header.family is ProxyFamily.UNIX:
                    client.peer = "local"
                elif header.source is not None:
                    client.peer = str(header.source)
                    if header.destination is not None:
                        client.local_address = str(header.destination)
            return ProxyOutcome(None, result.rest)
    return ProxyOutcome("timeout")


async def start_tls(
    stream: trio.abc.Stream, context: ssl.SSLContext, timeout: float
) -> tuple[trio.SSLStream[trio.abc.Stream], TlsInfo] | None:
    """The TLS handshake as the server; the TLS stream and what was agreed, or
    None when it failed (nothing more can be said on ``stream`` then)."""
    tls_stream = trio.SSLStream(stream, context, server_side=True)
    try:
        with trio.fail_after(timeout):
            await tls_stream.do_handshake()
    except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError):
        return None
    # trio's SSLStream forwards cipher(), version(), getpeercert() and context
    return tls_stream, tls_summary(cast(ssl.SSLObject, tls_stream))


async def identify(services: Services, endpoint: Endpoint, client: Client, session_id: int) -> None:
    """The client's name (and whether it is forward-confirmed), and ours."""
    if endpoint.is_socket:
        # as OpenSMTPD's smtp_session() names a local session: the server's name,
        # forward-confirmed (what link-connect reports and fcrdns conditions test)
        client.rdns = services.hostname
        client.fcrdns = True
        client.peer = "local"
    elif services.rdns is not None and services.rdns.enabled:
        with trio.move_on_after(services.timeouts.rdns):
            result = await services.rdns.lookup(client.peer)
            client.rdns = result.name
            client.fcrdns = result.fcrdns
    # the listener's hostname, unless its hostnames table names the local address
    if endpoint.listener is not None and endpoint.listener.hostname:
        client.smtpname = endpoint.listener.hostname
    if endpoint.hostnames is not None and client.local_address:
        table = endpoint.hostnames
        try:
            address = ipaddress.ip_address(client.local_address)
            found = await services.tables.call(table, lambda: lookup_addrname(table, address))
        except (ValueError, TemporaryFailure):
            found = None
        except Exception as exc:  # a table backend failing must not kill the session
            log.warning("%016x smtp hostnames lookup failed: %s", session_id, visible(str(exc)))
            found = None
        if found is not None:
            client.smtpname = found.name


class Prefixed(trio.abc.Stream):
    """A stream whose first bytes were already received (with the PROXY header)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if not self._prefix:
            return await self._stream.receive_some(max_bytes)
        await trio.lowlevel.checkpoint()
        size = len(self._prefix) if max_bytes is None else max_bytes
        data, self._prefix = self._prefix[:size], self._prefix[size:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()
