"""The aiosmtpd peer: an asyncio SMTP server whose handler delivers durably to a Maildir.

Run as ``python -m benchlib.aiosmtpd_peer --port N --maildir DIR``.  Each
message is written to ``tmp/``, fsynced, renamed into ``new/`` and ``new/`` is
fsynced before the 250 goes out, so the peer is as durable as ``mta``'s spool.
The blocking file work runs in asyncio's default thread pool so sessions keep
overlapping while one waits for the disk: the fairest aiosmtpd we can build.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["Maildir", "MaildirHandler", "main"]


class Maildir:
    """A Maildir (``tmp``, ``new``, ``cur``) with durable delivery of whole messages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._counter = itertools.count(1)

    def unique_name(self) -> str:
        now = time.time()
        micro = int(now * 1e6) % 1000000
        return f"{int(now)}.M{micro}P{os.getpid()}Q{next(self._counter)}.{self._host}"

    def deliver(self, name: str, data: bytes) -> Path:
        """Write, fsync, rename into ``new/``, fsync ``new/``; return the final path."""
        tmp = self.root / "tmp" / name
        final = self.root / "new" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        dfd = os.open(self.root / "new", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return final


class MaildirHandler:
    """aiosmtpd handler: every accepted message goes to the Maildir before the 250."""

    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content
        if content is None:
            raw = envelope.content
            content = raw.encode() if isinstance(raw, str) else (raw or b"")
        head = f"Return-Path: <{envelope.mail_from or ''}>\r\n"
        head += "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos)
        name = self.maildir.unique_name()
        try:
            await asyncio.to_thread(self.maildir.deliver, name, head.encode() + content)
        except OSError as exc:
            return f"451 4.3.0 cannot write the message: {exc.strerror}"
        return "250 2.0.0 Ok: queued"


async def serve(host: str, port: int, maildir: Path, backlog: int) -> None:
    loop = asyncio.get_running_loop()
    handler = MaildirHandler(Maildir(maildir))
    hostname = "bench.aiosmtpd"
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=hostname, loop=loop),
        host=host,
        port=port,
        backlog=backlog,
        reuse_address=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"aiosmtpd peer: listening on {host}:{port}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aiosmtpd_peer", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", type=Path, required=True)
    p.add_argument("--backlog", type=int, default=1024)
    args = p.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.maildir, args.backlog))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
