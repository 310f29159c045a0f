"""Mail addresses as tables see them: OpenSMTPD ``text_to_mailaddr``,
``hostname_match`` (the ``*`` domain glob) and ``mailaddr_match``, and an index
of table keys for it (:class:`MailAddrIndex`)."""

from __future__ import annotations

import functools
import heapq
from collections.abc import Sequence

import attrs

__all__ = ["MailAddr", "MailAddrIndex", "hostname_match", "mailaddr_match", "parse_mailaddr"]

MAX_LOCALPART = 255
MAX_DOMAINPART = 255


@attrs.frozen
class MailAddr:
    """A ``user@domain`` pair; either part may be empty (``user``, ``@domain``, ``@``)."""

    user: str
    domain: str

    def __str__(self) -> str:
        if not self.domain:
            return self.user
        return f"{self.user}@{self.domain}"


@functools.lru_cache(maxsize=4096)
def parse_mailaddr(text: str) -> MailAddr | None:
    """Split at the last ``@`` like ``text_to_mailaddr``; None when a part is too long."""
    user, at, domain = text.rpartition("@")
    if not at:
        user, domain = text, ""
    if len(user) > MAX_LOCALPART or len(domain) > MAX_DOMAINPART:
        return None
    return MailAddr(user, domain)


def hostname_match(hostname: str, pattern: str) -> bool:
    """OpenSMTPD ``hostname_match``: case-insensitive compare where ``*`` in the
    pattern skips hostname characters up to the next occurrence of the pattern's
    following character.

    The skip is not backtracking, exactly as in OpenSMTPD: ``*.example.com``
    matches ``a.example.com`` but not ``a.b.example.com``, and ``*`` never
    matches an empty hostname.
    """
    host = hostname.lower()
    pat = pattern.lower()
    h = p = 0
    while p < len(pat) and h < len(host):
        if pat[p] == "*":
            while p < len(pat) and pat[p] == "*":
                p += 1
            nxt = pat[p] if p < len(pat) else ""
            while h < len(host) and host[h] != nxt:
                h += 1
            continue
        if pat[p] != host[h]:
            return False
        p += 1
        h += 1
    return h == len(host) and p == len(pat)


def mailaddr_match(candidate: MailAddr, entry: MailAddr, delimiter: str = "+") -> bool:
    """OpenSMTPD ``mailaddr_match``: does the session address ``candidate`` match the
    table ``entry``?

    ``@`` (both parts empty) matches everything; an entry domain is a
    :func:`hostname_match` pattern; an entry user is compared case-insensitively,
    after stripping the ``delimiter`` tag from the candidate unless the entry
    itself carries a tag.
    """
    if not entry.user and not entry.domain:
        return True
    if entry.domain and not hostname_match(candidate.domain, entry.domain):
        return False
    if entry.user:
        user = candidate.user
        if delimiter and delimiter not in entry.user:
            user = user.partition(delimiter)[0]
        if user.lower() != entry.user.lower():
            return False
    return True


def mailaddr_text_match(candidate: str, entry: str, delimiter: str = "+") -> bool:
    """:func:`mailaddr_match` on texts (``table_mailaddr_match``)."""
    mine = parse_mailaddr(candidate)
    theirs = parse_mailaddr(entry)
    if mine is None or theirs is None:
        return False
    return mailaddr_match(mine, theirs, delimiter)


class MailAddrIndex:
    """Table keys indexed for :func:`mailaddr_match`, so that a lookup tests only
    the keys that can match: those of the candidate's domain (a domain without
    ``*`` matches only itself, case aside) and those with no domain or a
    wildcard one.  :meth:`first` gives the same answer as testing every key in
    order."""

    __slots__ = ("_by_domain", "_others", "_parsed")

    def __init__(self, keys: Sequence[str]) -> None:
        self._by_domain: dict[str, list[int]] = {}
        self._others: list[int] = []
        self._parsed: list[MailAddr | None] = []
        for position, key in enumerate(keys):
            parsed = parse_mailaddr(key)
            self._parsed.append(parsed)
            if parsed is None:
                continue  # too long: matches nothing
            if parsed.domain and "*" not in parsed.domain:
                self._by_domain.setdefault(parsed.domain.lower(), []).append(position)
            else:
                self._others.append(position)

    def first(self, candidate: str, delimiter: str = "+") -> int | None:
        """The position of the first key ``candidate`` matches, or None."""
        mine = parse_mailaddr(candidate)
        if mine is None:
            return None
        bucket = self._by_domain.get(mine.domain.lower(), [])
        positions = (
            heapq.merge(bucket, self._others)
            if self._others and bucket
            else (bucket or self._others)
        )
        for position in positions:
            entry = self._parsed[position]
            if entry is not None and mailaddr_match(mine, entry, delimiter):
                return position
        return None
