"""How a test server's messages reach its inbox, through the public names and
``mtactl``: a message damaged in the queue is no delivery (it goes to
``corrupt/``, logged, as in the daemon), and the next one arrives as usual."""

from __future__ import annotations

import smtplib
import time

from mta.testing import MailServer
from tests.testing.control import mtactl, spool

DAMAGED = b"Subject: damaged\r\n\r\nThe body, to be damaged.\r\n"


def test_a_damaged_message_goes_to_corrupt_and_the_log_says_so() -> None:
    with MailServer() as server:
        assert mtactl(server, "pause", "mda").returncode == 0
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.org"], DAMAGED)
        queue = spool(server) / "queue"
        [message] = [p for b in queue.iterdir() for p in b.iterdir() if len(p.name) == 8]
        data = message.read_bytes()
        at = data.index(b"to be damaged") + 3
        with open(message, "r+b") as file:  # one bit flipped in the body
            file.seek(at)
            file.write(bytes([data[at] ^ 0x01]))
        assert mtactl(server, "resume", "mda").returncode == 0
        deadline = time.monotonic() + 10
        while not any("queue: quarantine" in line for line in server.log_lines):
            assert time.monotonic() < deadline, server.log_lines
            time.sleep(0.02)
        lines = server.log_lines
        # moved by a worker thread, which logged it to this server
        [moved] = [line for line in lines if line.startswith("spool: quarantine")]
        assert f"corrupt/{message.name}" in moved and "checksum" in moved
        assert not any("result=TempFail" in line for line in lines)  # never retried
        assert (spool(server) / "corrupt" / message.name / message.name).is_file()  # kept
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: sound\r\n\r\nx\r\n")
        assert server.inbox.wait().subject == "sound"
        assert [m.subject for m in server.inbox.messages] == ["sound"]
