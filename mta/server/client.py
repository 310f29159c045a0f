"""What an SMTP session knows of the client it serves.

Filled in before the banner (:mod:`mta.server.opening`: the address, possibly
from a PROXY header, the names, TLS) and as the client speaks (HELO, AUTH),
it is what the rules, the ``Received:`` header, the envelopes and the filters
see of the client.
"""

from __future__ import annotations

import attrs

from mta.net.tls import TlsInfo

__all__ = ["Client"]


@attrs.define
class Client:
    """What the session knows of its client: from before the banner (address,
    names, TLS) and from what the client said since (HELO, AUTH)."""

    smtpname: str  # the name we give ourselves in this session
    peer: str = "local"  # the client's address, or "local" (the enqueue socket)
    local_address: str = ""
    rdns: str | None = None
    fcrdns: bool = False
    helo: str = ""
    esmtp: bool = False
    auth_user: str | None = None
    tls: TlsInfo | None = None
