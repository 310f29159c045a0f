"""``mta-sendmail -bs`` while the daemon is down: an SMTP server on standard input
and output that keeps each accepted message in the offline directory.

The session is the daemon's own state machine (:mod:`mta.smtp.server`) with
the settings of the local socket, so a client sees the same dialogue; each
message is written with :func:`~mta.enqueue.offline.write_offline` before its
``250``, and the daemon submits it when it starts.  Recipients are not checked
against the rules (they need the daemon); the daemon checks them then.  DSN
``RET`` and ``ENVID`` are kept, and ``NOTIFY`` when every recipient gave the
same one.  Blocking reads and writes: nothing else runs in the process.
"""

from __future__ import annotations

import os
import time
from typing import IO

from mta.enqueue.compose import Content
from mta.enqueue.offline import OfflineEnvelope, write_offline
from mta.enqueue.reader import spool_file
from mta.envelope import Body, DsnRet
from mta.reply import Reply
from mta.smtp.events import (
    NEED_DATA,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DataStart,
    Hello,
    MailFrom,
    RcptTo,
    TransactionReset,
)
from mta.smtp.params import encode_notify, encode_xtext
from mta.smtp.server import ServerConnection, SessionSettings

__all__ = ["MAX_RCPT", "serve_standin"]

MAX_RCPT = 1000
_READ = 64 * 1024
KEEP_FAILED = Reply.of(451, "4.3.0", "Temporary failure: cannot keep the message")
NOT_HERE = Reply.of(502, "5.5.1", "Command not implemented")


class _Transaction:
    def __init__(self, mail: MailFrom) -> None:
        self.mail = mail
        self.recipients: list[str] = []
        self.notify: set[str | None] = set()
        self.file: IO[bytes] | None = None
        self.size = 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def envelope(self) -> OfflineEnvelope:
        params = self.mail.params
        notify = self.notify.pop() if len(self.notify) == 1 else None
        return OfflineEnvelope(
            sender=str(self.mail.sender),
            recipients=tuple(dict.fromkeys(self.recipients)),
            uid=os.getuid(),
            created=int(time.time()),
            eight_bit=params.body is Body.EIGHTBITMIME,
            dsn_ret=params.ret.value if params.ret is not DsnRet.NONE else None,
            dsn_envid=encode_xtext(params.envid) if params.envid else None,
            dsn_notify=notify,
        )


def serve_standin(directory: str, hostname: str, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Serve one SMTP session on the descriptors, keeping messages in ``directory``;
    the exit status (0)."""
    conn = ServerConnection(
        SessionSettings(
            hostname=hostname,
            peer="local",
            max_message_size=0,
            max_rcpt=MAX_RCPT,
            max_mails=0,
            local=True,
        )
    )
    conn.banner()
    tx: _Transaction | None = None

    def flush() -> None:
        out = memoryview(conn.data_to_send())
        while out:
            out = out[os.write(stdout_fd, out) :]

    try:
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                flush()
                conn.receive_data(os.read(stdin_fd, _READ))
            elif isinstance(event, ConnectionClosed):
                flush()
                return os.EX_OK
            elif isinstance(event, Hello | DataStart):
                if isinstance(event, DataStart) and tx is not None:
                    tx.file = spool_file()
                conn.accept()
            elif isinstance(event, MailFrom):
                if tx is not None:
                    tx.close()
                tx = _Transaction(event)
                conn.accept()
            elif isinstance(event, RcptTo):
                assert tx is not None
                tx.recipients.append(str(event.rcpt))
                tx.notify.add(encode_notify(event.params.notify))
                conn.accept()
            elif isinstance(event, DataChunk):
                assert tx is not None and tx.file is not None
                tx.file.write(event.data)
                tx.size += len(event.data)
            elif isinstance(event, DataEnd):
                assert tx is not None and tx.file is not None
                done: _Transaction = tx
                tx = None
                try:
                    if event.error is not None:
                        conn.reject(event.error)
                        continue
                    try:
                        path = write_offline(
                            directory, done.envelope(), Content(b"", done.file, 0, done.size)
                        )
                    except (OSError, ValueError):
                        conn.reject(KEEP_FAILED)
                    else:
                        conn.accept_message(os.path.basename(path))
                finally:
                    done.close()
            elif isinstance(event, TransactionReset):
                if tx is not None:
                    tx.close()
                tx = None
            else:
                conn.reject(NOT_HERE)  # no STARTTLS or AUTH is offered here
    except OSError:
        return os.EX_IOERR
    finally:
        if tx is not None:
            tx.close()
