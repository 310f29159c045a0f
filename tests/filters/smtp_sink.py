"""A minimal SMTP server that takes what a relay sends and records it; standard
library only (namespace_driver.py runs it inside ``unshare -m -n`` next to
OpenSMTPD 6.8, opensmtpd_oracle.run_mta next to ``mta -d``), so both servers
relay to the same remote, answering the same way.

It offers 8BITMIME alone (no PIPELINING, SIZE, DSN or STARTTLS: each
command is answered before the next is sent, by mta as by 6.8), refuses the
recipients in ``refuse`` (``550 5.1.1``), and records each transaction:
its sender, the recipients it accepted and the content as received
(dot-stuffed, CRLF line ends, without the final ``.`` line).
"""

from __future__ import annotations

import socket
import threading
from typing import Any, BinaryIO

__all__ = ["Sink"]


class Sink(threading.Thread):
    """The server on ``127.0.0.1:port`` (0: any free port, then see ``port``),
    serving until :meth:`close` (or the process ends)."""

    def __init__(self, port: int = 0, refuse: frozenset[str] = frozenset()) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", port))
        self.port: int = self.server.getsockname()[1]
        self.refuse = refuse
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def records(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received)

    def serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            try:
                self.session(conn, lines)
            except OSError:
                return

    def session(self, conn: socket.socket, lines: BinaryIO) -> None:
        conn.sendall(b"220 sink.test ESMTP sink\r\n")
        sender, rcpts = "", list[str]()
        for raw in lines:
            line = raw.decode("ascii", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                conn.sendall(b"250-sink.test Hello\r\n250 8BITMIME\r\n")
            elif verb == "MAIL":
                sender, rcpts = line[line.index("<") + 1 : line.index(">")], []
                conn.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                rcpt = line[line.index("<") + 1 : line.index(">")]
                if rcpt in self.refuse:
                    conn.sendall(b"550 5.1.1 No such user here\r\n")
                else:
                    rcpts.append(rcpt)
                    conn.sendall(b"250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                content = b""
                for body in lines:
                    if body == b".\r\n":
                        break
                    content += body
                with self.lock:
                    self.received.append(
                        {"sender": sender, "rcpts": rcpts, "content": content.decode("latin-1")}
                    )
                conn.sendall(b"250 2.0.0 Ok: queued\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"250 2.0.0 Ok\r\n")
