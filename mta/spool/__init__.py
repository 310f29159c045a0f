"""The on-disk queue: messages and envelopes, durable commits, recovery.

:class:`Spool` is the entry point (see :mod:`mta.spool.spool`); :class:`Store`
is the same queue read synchronously (for ``mtactl`` with the daemon down).
"""

from mta.spool.commit import CommitStats
from mta.spool.recovery import Quarantined, RecoveryReport
from mta.spool.spool import Spool
from mta.spool.store import Store
from mta.spool.transaction import Transaction
from mta.spool.writer import MessageWriter

__all__ = [
    "CommitStats",
    "MessageWriter",
    "Quarantined",
    "RecoveryReport",
    "Spool",
    "Store",
    "Transaction",
]
