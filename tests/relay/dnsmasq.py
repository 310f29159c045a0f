"""Debian's dnsmasq as a real DNS server for tests: started on a free port of
127.0.0.1 with the records given on its command line, never reading the
machine's configuration or resolvers, and stopped when the test ends."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Sequence

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.message
import pytest
import trio

from mta.net.resolver import Nameserver

__all__ = ["dnsmasq_path", "run_dnsmasq"]

HOST = "127.0.0.1"


def dnsmasq_path() -> str | None:
    """The dnsmasq binary (``/usr/sbin`` is not on every user's PATH)."""
    found = shutil.which("dnsmasq")
    if found is None and os.access("/usr/sbin/dnsmasq", os.X_OK):
        found = "/usr/sbin/dnsmasq"
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


async def _answers(port: int) -> bool:
    query = dns.message.make_query("ready.probe.", "A")
    backend = dns.asyncbackend.get_backend("trio")
    try:
        await dns.asyncquery.udp(query, HOST, timeout=0.05, port=port, backend=backend)
    except (dns.exception.DNSException, OSError):
        return False
    return True


async def _stop(process: trio.Process) -> None:
    """SIGTERM, then SIGKILL after 5 s; reaped even when the test is cancelled."""
    if process.poll() is None:
        process.terminate()
    with trio.CancelScope(shield=True):
        with trio.move_on_after(5):
            await process.wait()
        if process.poll() is None:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def run_dnsmasq(records: Sequence[str]) -> AsyncIterator[Nameserver]:
    """Run dnsmasq with ``records`` (``--mx-host=...``, ``--host-record=...``,
    ``--local=/test/``...); skips the test when dnsmasq is not installed."""
    path = dnsmasq_path()
    if path is None:
        pytest.skip("dnsmasq is not installed (scripts/setup --test installs dnsmasq-base)")
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    with tempfile.TemporaryFile() as log:
        for _ in range(5):  # the free port may be taken before dnsmasq binds it
            port = _free_port()
            argv = [
                path,
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--keep-in-foreground",
                "--bind-interfaces",
                f"--listen-address={HOST}",
                f"--port={port}",
                "--pid-file=",
                f"--user={user}",
                f"--group={group}",
                "--log-facility=-",
                "--log-queries",
                *records,
            ]
            process = await trio.lowlevel.open_process(argv, stdout=log, stderr=log)
            try:
                with trio.move_on_after(5):
                    while process.poll() is None and not await _answers(port):
                        await trio.sleep(0.02)
                if process.poll() is None and await _answers(port):
                    yield Nameserver(HOST, port)
                    return
            finally:
                await _stop(process)
        log.seek(0)
        output = log.read().decode(errors="replace")
    raise RuntimeError(f"dnsmasq did not start:\n{output}")
