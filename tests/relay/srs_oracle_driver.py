"""Run inside ``unshare -m -n`` by test_srs_oracle: the real OpenSMTPD 6.8 with
``srs``, relaying to a recording sink, and report what it sent.

Usage: python srs_oracle_driver.py WORKDIR KEY  (messages as JSON on stdin:
``[[sender, rcpt], ...]``).  Prints one JSON object: the MAIL FROM and RCPT TO
the sink received for each message, in order.  The private spool and /run are
set up by the benchmark's ``benchlib.opensmtpd.private_paths`` (scripts/), so
nothing needs to exist on (or is created on) the host.
"""

from __future__ import annotations

import importlib
import json
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

SINK_PORT = 2526
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class Sink(threading.Thread):
    """A minimal SMTP server that records each transaction's envelope."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", SINK_PORT))
        self.received: list[tuple[str, list[str]]] = []

    def run(self) -> None:
        while True:
            conn, _ = self.server.accept()
            with conn, conn.makefile("rb") as lines:
                self.session(conn, lines)

    def session(self, conn: socket.socket, lines: BinaryIO) -> None:
        conn.sendall(b"220 sink ESMTP\r\n")
        sender, rcpts = "", list[str]()
        for raw in lines:
            line = raw.decode("ascii", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                conn.sendall(b"250-sink\r\n250 8BITMIME\r\n")
            elif verb == "MAIL":
                sender, rcpts = line[line.index("<") + 1 : line.index(">")], []
                conn.sendall(b"250 ok\r\n")
            elif verb == "RCPT":
                rcpts.append(line[line.index("<") + 1 : line.index(">")])
                conn.sendall(b"250 ok\r\n")
            elif verb == "DATA":
                conn.sendall(b"354 go\r\n")
                for body in lines:
                    if body in (b".\r\n", b".\n"):
                        break
                self.received.append((sender, rcpts))
                conn.sendall(b"250 queued\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")


def main() -> int:
    workdir, key = Path(sys.argv[1]), sys.argv[2]
    messages = json.load(sys.stdin)
    run("ip", "link", "set", "lo", "up")
    sys.path.insert(0, str(SCRIPTS))
    importlib.import_module("benchlib.opensmtpd").private_paths(workdir / "smtpd-spool")
    conf = workdir / "smtpd.conf"
    conf.write_text(
        f'srs key "{key}"\n'
        'table aliases { bob = "carol@far.test" }\n'
        "listen on 127.0.0.1 port 25\n"
        'action "local" mbox alias <aliases>\n'
        f'action "out" relay host "smtp://127.0.0.1:{SINK_PORT}" srs\n'
        'match from any for domain "localhost" action "local"\n'
        'match from any for any action "out"\n'
    )
    sink = Sink()
    sink.start()
    log = open(workdir / "smtpd.log", "wb")  # noqa: SIM115 - the child's
    smtpd = subprocess.Popen(["/usr/sbin/smtpd", "-d", "-f", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", 25), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or smtpd.poll() is not None:
                    raise RuntimeError("smtpd did not start") from None
                time.sleep(0.1)
        for sender, rcpt in messages:
            with smtplib.SMTP("127.0.0.1", 25, timeout=10) as client:
                client.sendmail(sender, [rcpt], b"Subject: srs\r\n\r\nbody\r\n")
            deadline = time.monotonic() + 30
            count = len(sink.received)
            while len(sink.received) == count and len(sink.received) < len(messages):
                if time.monotonic() > deadline:
                    raise RuntimeError("nothing relayed")
                time.sleep(0.05)
        print(json.dumps({"received": sink.received}))
    finally:
        smtpd.terminate()
        smtpd.wait(10)
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
