"""What the store remembers of the messages it used last: their envelopes as
committed, decoded, and which of them are deleted.

A message file never changes once committed, so its envelopes need decoding
only once; without this, each load, update or deletion of one of ``k``
envelopes decoded all ``k`` and looked at ``k`` envelope files, so that
delivering a message to ``k`` recipients cost O(k²) decodes and system calls.
With it, each costs O(1) after the first (O(k)).

The deleted ids of a message are known once :meth:`Known.deleted` was filled
from the envelope files, under the message's lock; the store adds each
deletion it makes (also under that lock: nothing else changes the spool while
the daemon holds it).  A message is dropped when it leaves the queue.  At
most :data:`LIMIT` envelopes are remembered (the least recently used messages
go first; one message of more is remembered alone): about 1.5 KB each.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import attrs

from mta.envelope import Envelope

__all__ = ["LIMIT", "Known", "MessageIndex"]

LIMIT = 2048


@attrs.define
class Known:
    """One message: its envelopes as committed (by id, in commit order) and,
    once looked at, the ids whose envelope file marks them deleted."""

    envelopes: dict[int, Envelope]
    deleted: set[int] | None = None


class MessageIndex:
    """The messages used last, safe to share between worker threads."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._known: OrderedDict[int, Known] = OrderedDict()
        self._size = 0  # envelopes remembered
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._known)

    @property
    def size(self) -> int:
        """How many envelopes are remembered."""
        return self._size

    def get(self, msgid: int) -> Known | None:
        """What is remembered of ``msgid`` (now the most recently used), or None."""
        with self._lock:
            known = self._known.get(msgid)
            if known is not None:
                self._known.move_to_end(msgid)
            return known

    def put(self, msgid: int, envelopes: dict[int, Envelope]) -> Known:
        """Remember the committed ``envelopes`` of ``msgid``; the least recently
        used messages go while more than :attr:`limit` envelopes are kept."""
        known = Known(envelopes)
        with self._lock:
            old = self._known.pop(msgid, None)
            if old is not None:
                self._size -= len(old.envelopes)
            self._known[msgid] = known
            self._size += len(envelopes)
            while self._size > self.limit and len(self._known) > 1:
                _msgid, gone = self._known.popitem(last=False)
                self._size -= len(gone.envelopes)
        return known

    def drop(self, msgid: int) -> None:
        """``msgid`` left the queue (removed, quarantined)."""
        with self._lock:
            known = self._known.pop(msgid, None)
            if known is not None:
                self._size -= len(known.envelopes)
