"""The envelope builder the tests share: one set of defaults, and each test names
only the fields it is about."""

from __future__ import annotations

from typing import Any

import attrs

from mta.envelope import Address, Envelope, EnvelopeKind


def make_envelope(rcpt: str = "bob@example.org", /, **changes: Any) -> Envelope:
    """An unassigned envelope (ids 0) for ``rcpt`` (also its ``dest``) as the SMTP
    server would hand it over to the relay action.

    ``changes`` replace fields (``Any``: each value has its own field's type);
    ``rcpt`` is positional so that ``rcpt=Address(...)`` changes the field alone.
    tests/spool/test_codec.py holds a file written from these defaults.
    """
    address = Address.parse(rcpt)
    envelope = Envelope(
        msgid=0,
        kind=EnvelopeKind.MTA,
        dispatcher="relay",
        smtpname="mx.example.net",
        helo="client.example.com",
        hostname="client.example.com",
        sockaddr="192.0.2.7",
        sender=Address("alice", "example.com"),
        rcpt=address,
        dest=address,
        ctime=1_700_000_000,
    )
    return attrs.evolve(envelope, **changes)
