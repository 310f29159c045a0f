"""What the relay client is asked to send: messages as SMTP transactions.

A :class:`Transaction` is one message for one or more recipients of one
relay: the reverse-path, the recipients with their RFC 3461 parameters, and
what the message needs from the remote host (its size for SIZE, 8-bit content
for 8BITMIME, SMTPUTF8), and the queue's ids of the message and of each
envelope (for the ``smtp-out`` reports: ``tx-begin``, ``tx-envelope``).
Addresses are text as they go between ``<>``; DSN values are decoded (the
client xtext-encodes them).
"""

from __future__ import annotations

import attrs

from mta.envelope import DsnNotify, DsnRet

__all__ = ["Recipient", "Transaction"]


@attrs.frozen
class Recipient:
    """``RCPT TO:<address>`` with ``NOTIFY=`` and ``ORCPT=`` (``type;address``);
    ``evpid`` is its envelope's id (0: none)."""

    address: str
    notify: DsnNotify = DsnNotify.NONE
    orcpt: str = ""
    evpid: int = 0


@attrs.frozen
class Transaction:
    """One message to relay.

    ``size`` is the content's size in octets (CRLF line ends, before
    dot-stuffing), None when unknown.  ``eight_bit``: the content is
    8BITMIME (declared, or seen); ``smtputf8``: the envelope or the headers
    need SMTPUTF8 (non-ASCII addresses always do, whatever this says).
    ``msgid`` is the queue's 32-bit message id (0: none).
    """

    sender: str
    recipients: tuple[Recipient, ...]
    size: int | None = None
    eight_bit: bool = False
    smtputf8: bool = False
    ret: DsnRet = DsnRet.NONE
    envid: str = ""
    msgid: int = 0
