"""RFC 5322 address lists in ``To:`` / ``Cc:`` / ``From:`` headers, parsed to
rewrite them in place.

OpenSMTPD qualifies every address of those headers that has no domain
(``bob`` -> ``bob@<listener hostname>``) and, with ``senders ... masquerade``,
replaces the ``From:`` addresses with the envelope sender.  This module finds
the addresses with a real parser (comments, quoted strings, domain literals,
display names, angle addresses, source routes, groups and the obsolete forms
RFC 5322 section 4 asks receivers to accept) and edits only those bytes:
folding, comments and spacing stay as they were.  A value that does not parse
is left untouched.

Values are bytes as they came in the message (folded lines included, CRLF
between them); 8-bit bytes are accepted in atoms (RFC 6532).
"""

from __future__ import annotations

import re

import attrs

__all__ = ["MailboxSpan", "parse_address_list", "rewrite_address_header"]

_TOKEN = re.compile(
    rb"""
    (?P<ws>[ \t\r\n]+)
    | (?P<a>[^\x00-\x20\x7f()<>\[\]:;@\\,."]+)
    | (?P<q>"(?:[^"\\]|\\[\s\S])*")
    | (?P<d>\[(?:[^\[\]\\]|\\[\s\S])*\])
    | (?P<s>[<>:;@,.])
    | (?P<c>\()
    """,
    re.VERBOSE,
)
_COMMENT_STOP = re.compile(rb"[()\\]")

# Fast path: without quotes, comments, escapes or colons (groups, routes), a
# list whose every comma-separated piece holds an "@" has nothing to qualify
# (each mailbox's "@" would have to be its own: anywhere else the list does
# not parse, and is left as it is either way).
_ALL_QUALIFIED = re.compile(rb'[^,"(\\:@]*+@[^,"(\\:]*+(?:,[^,"(\\:@]*+@[^,"(\\:]*+)*+')

_WORDS = frozenset("aq")


@attrs.frozen
class MailboxSpan:
    """Where one mailbox's address sits in a header value.

    ``start``/``end`` delimit the address (for an angle address: everything
    between ``<`` and ``>``); ``local_end`` is where ``@domain`` goes when
    ``has_domain`` is false.  ``empty`` is ``<>``.
    """

    start: int
    local_end: int
    end: int
    has_domain: bool
    empty: bool = False


_Token = tuple[str, int, int]  # kind ("a", "q", "d" or the special character), start, end


def _tokenize(value: bytes) -> list[_Token] | None:
    tokens: list[_Token] = []
    pos = 0
    size = len(value)
    match = _TOKEN.match
    while pos < size:
        m = match(value, pos)
        if m is None:
            return None
        kind = m.lastgroup
        if kind == "c":
            end = _skip_comment(value, pos)
            if end < 0:
                return None
            pos = end
            continue
        end = m.end()
        if kind == "s":
            tokens.append((chr(value[pos]), pos, end))
        elif kind != "ws":
            assert kind is not None
            tokens.append((kind, pos, end))
        pos = end
    return tokens


def _skip_comment(value: bytes, pos: int) -> int:
    """The index just past the (possibly nested) comment opening at ``pos``; -1 if unclosed."""
    depth = 0
    search = _COMMENT_STOP.search
    while True:
        m = search(value, pos)
        if m is None:
            return -1
        char = value[m.start()]
        if char == 0x5C:  # backslash: quoted-pair
            pos = m.start() + 2
            continue
        depth += 1 if char == 0x28 else -1
        pos = m.end()
        if depth == 0:
            return pos


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.found: list[MailboxSpan] = []

    def peek(self) -> str | None:
        if self.index < len(self.tokens):
            return self.tokens[self.index][0]
        return None

    def address_list(self) -> bool:
        while True:
            while self.peek() == ",":
                self.index += 1
            if self.peek() is None:
                return True
            if not self.address(in_group=False):
                return False
            kind = self.peek()
            if kind is None:
                return True
            if kind != ",":
                return False

    def address(self, in_group: bool) -> bool:
        first = self.index
        while self.peek() in ("a", "q", "."):
            self.index += 1
        phrase = self.tokens[first : self.index]
        kind = self.peek()
        if kind == "<":
            return self.angle_addr()
        if kind == ":" and not in_group and phrase:
            self.index += 1
            return self.group_list()
        if not _is_local_part(phrase):
            return False
        start, local_end = phrase[0][1], phrase[-1][2]
        if kind == "@":
            self.index += 1
            end = self.domain()
            if end < 0:
                return False
            self.found.append(MailboxSpan(start, local_end, end, True))
            return True
        if kind is None or kind == "," or (in_group and kind == ";"):
            self.found.append(MailboxSpan(start, local_end, local_end, False))
            return True
        return False

    def group_list(self) -> bool:
        while True:
            while self.peek() == ",":
                self.index += 1
            kind = self.peek()
            if kind == ";":
                self.index += 1
                return True
            if kind is None or not self.address(in_group=True):
                return False
            if self.peek() not in (",", ";"):
                return False

    def domain(self) -> int:
        """Consume a domain; the index just past it, or -1."""
        kind = self.peek()
        if kind == "d":
            self.index += 1
            return self.tokens[self.index - 1][2]
        if kind != "a":
            return -1
        self.index += 1
        while self.peek() == ".":
            self.index += 1
            if self.peek() != "a":
                return -1
            self.index += 1
        return self.tokens[self.index - 1][2]

    def angle_addr(self) -> bool:
        inner = self.tokens[self.index][2]
        self.index += 1
        if self.peek() == ">":
            close = self.tokens[self.index][1]
            self.index += 1
            self.found.append(MailboxSpan(inner, inner, close, False, empty=True))
            return True
        if self.peek() == "@" and not self.route():
            return False
        first = self.index
        while self.peek() in ("a", "q", "."):
            self.index += 1
        local = self.tokens[first : self.index]
        if not _is_local_part(local):
            return False
        local_end = local[-1][2]
        has_domain = False
        if self.peek() == "@":
            self.index += 1
            if self.domain() < 0:
                return False
            has_domain = True
        if self.peek() != ">":
            return False
        close = self.tokens[self.index][1]
        self.index += 1
        self.found.append(MailboxSpan(inner, local_end, close, has_domain))
        return True

    def route(self) -> bool:
        """obs-route: ``@a.example,@b.example:``."""
        while True:
            if self.peek() != "@":
                return False
            self.index += 1
            if self.domain() < 0:
                return False
            while self.peek() == ",":
                self.index += 1
            if self.peek() == ":":
                self.index += 1
                return True


def _is_local_part(tokens: list[_Token]) -> bool:
    """word *("." word), whitespace and comments between allowed (obs-local-part)."""
    if len(tokens) % 2 == 0:
        return False
    return all((token[0] in _WORDS) == (index % 2 == 0) for index, token in enumerate(tokens))


def parse_address_list(value: bytes) -> tuple[MailboxSpan, ...] | None:
    """The mailboxes of an address-list (groups included), or None if it does
    not parse.  An empty list (``undisclosed-recipients:;``, blank) is ``()``."""
    tokens = _tokenize(value)
    if tokens is None:
        return None
    parser = _Parser(tokens)
    if not parser.address_list():
        return None
    return tuple(parser.found)


def rewrite_address_header(value: bytes, hostname: bytes, masquerade: bytes | None = None) -> bytes:
    """``value`` with ``@hostname`` after every local part that has no domain,
    or, with ``masquerade``, every address replaced by it (``<>`` included).
    Returned unchanged (the same object) when it does not parse."""
    if masquerade is None and _ALL_QUALIFIED.fullmatch(value) is not None:
        return value
    return _rewrite_parsed(value, hostname, masquerade)


def _rewrite_parsed(value: bytes, hostname: bytes, masquerade: bytes | None) -> bytes:
    spans = parse_address_list(value)
    if not spans:
        return value
    pieces: list[bytes] = []
    pos = 0
    for span in spans:
        if masquerade is not None:
            pieces += (value[pos : span.start], masquerade)
            pos = span.end
        elif not span.has_domain and not span.empty:
            pieces += (value[pos : span.local_end], b"@", hostname)
            pos = span.local_end
    if not pieces:
        return value
    pieces.append(value[pos:])
    return b"".join(pieces)
