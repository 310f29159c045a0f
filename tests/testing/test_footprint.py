"""What ``import mta.testing`` and a first test server load: only what a
server needs.  The relay side, DNS, cryptography, PAM, RE2 and syslog are
imported when a configuration or a message needs them, never before (the
startup figure of ``scripts/bench --sections startup`` depends on it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# modules a plain test server has no use for, and what needs each
NOT_NEEDED = {
    "mta.relay.agent": "a relay attempt",
    "mta.relay.client": "a relay attempt",
    "dns.resolver": "a DNS query",
    "cryptography": "a pki, a ca or a queue key",
    "pam": "authentication of system users",
    "re2": "a regex table",
    "logging.handlers": "logging to syslog",
    "mta.server.resubmit": "a file in the offline drop",
    "email.parser": "reading a message's headers",
}

SCRIPT = """
import json, smtplib, sys
import mta.testing
loaded = {"import": sorted(sys.modules)}
with mta.testing.MailServer() as server:
    with smtplib.SMTP(server.host, server.port) as client:
        client.sendmail("a@example.org", ["b@example.com"], "Subject: hi\\r\\n\\r\\nhello\\r\\n")
    assert server.inbox.wait(to="b@example.com").raw.endswith(b"hello\\r\\n")
    loaded["served"] = sorted(sys.modules)
print(json.dumps(loaded))
"""


def test_a_plain_test_server_loads_only_what_it_needs() -> None:
    env = {**os.environ, "MTA_DNS": "none"}  # (rDNS of 127.0.0.1 from the hosts file, or none)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    for when in ("import", "served"):
        present = {name: why for name, why in NOT_NEEDED.items() if name in loaded[when]}
        assert present == {}, f"loaded at {when} though only needed for: {present}"
    assert "mta.daemon.serve" in loaded["import"]  # (the check itself sees modules)
