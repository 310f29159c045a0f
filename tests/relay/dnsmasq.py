"""Debian's dnsmasq as a real DNS server for tests: started on a free port of
127.0.0.1 with the records given on its command line, never reading the
machine's configuration or resolvers, and stopped when the test ends.

:func:`run_dnsmasq` is for trio tests; :func:`serve_dnsmasq` is its synchronous
counterpart for end-to-end tests, which can also run it under a command prefix
(``nsenter --net=...``: inside a network namespace of the test's own)."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.message
import pytest
import trio

from mta.net.resolver import Nameserver

__all__ = ["dnsmasq_path", "run_dnsmasq", "serve_dnsmasq"]

HOST = "127.0.0.1"


def dnsmasq_path() -> str | None:
    """The dnsmasq binary (``/usr/sbin`` is not on every user's PATH)."""
    found = shutil.which("dnsmasq")
    if found is None and os.access("/usr/sbin/dnsmasq", os.X_OK):
        found = "/usr/sbin/dnsmasq"
    return found


def _argv(path: str, host: str, port: int, records: Sequence[str]) -> list[str]:
    """dnsmasq in the foreground on ``host``:``port`` alone, logging to stderr,
    answering ``records`` and nothing from the machine's configuration."""
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return [
        path,
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--keep-in-foreground",
        "--bind-interfaces",
        f"--listen-address={host}",
        f"--port={port}",
        "--pid-file=",
        f"--user={user}",
        f"--group={group}",
        "--log-facility=-",
        "--log-queries",
        *records,
    ]


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
    with tempfile.TemporaryFile() as log:
        for _ in range(5):  # the free port may be taken before dnsmasq binds it
            port = _free_port()
            argv = _argv(path, HOST, port, records)
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


@contextlib.contextmanager
def serve_dnsmasq(
    records: Sequence[str],
    *,
    host: str = HOST,
    port: int = 53,
    prefix: Sequence[str] = (),
    timeout: float = 10.0,
) -> Iterator[Nameserver]:
    """Run dnsmasq with ``records`` on ``host``:``port`` under ``prefix`` (a
    command put before it) until the block ends; skips the test when dnsmasq is
    not installed.

    It is ready once it logs "started": dnsmasq binds its sockets before that
    and exits when it cannot.  No query checks it, as the caller may not reach
    it (``prefix`` may enter another network namespace), so ``port`` is given,
    not free: 53 suits a network namespace of the test's own."""
    path = dnsmasq_path()
    if path is None:
        pytest.skip("dnsmasq is not installed (scripts/setup --test installs dnsmasq-base)")
    with tempfile.TemporaryFile() as log:

        def output() -> bytes:
            log.seek(0)
            return log.read()

        process = subprocess.Popen(
            [*prefix, *_argv(path, host, port, records)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + timeout
            while b": started, version " not in output():
                if process.poll() is not None or time.monotonic() > deadline:
                    text = output().decode(errors="replace")
                    raise RuntimeError(f"dnsmasq did not start:\n{text}")
                time.sleep(0.02)
            yield Nameserver(host, port)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
