"""Token-level helpers shared by the modern and the legacy parser.

:class:`Cursor` wraps the lexer with the small vocabulary a recursive-descent
parser needs: "is the next token this keyword", "take a string value", "take a
table operand" and so on.  It knows which bare words are keywords in the
grammar being read, because smtpd.conf does not let a keyword stand where a
value is expected unless it is quoted.
"""

from __future__ import annotations

from typing import NoReturn

from mta.config import model
from mta.config.ast import Where
from mta.config.lexer import Lexer, Tok, Token
from mta.errors import ConfigError

__all__ = ["LEGACY_KEYWORDS", "MODERN_KEYWORDS", "Cursor"]

MODERN_KEYWORDS = frozenset(
    """action admd alias any auth auth-optional backup bounce bypass ca cert chain chroot
    ciphers commit compression connect data data-line dhe disconnect domain ehlo encryption
    expand-only fcrdns filter for forward-only from group helo helo-src host hostname
    hostnames include inet4 inet6 junk key limit listen lmtp local mail-from maildir mask-src
    masquerade match max-deferred max-message-size mbox mda mta mx no-dsn no-verify noop on
    phase pki port proc proc-exec protocols proxy-v2 queue quit rcpt-to rdns received-auth
    recipient regex reject relay report rewrite rset scheduler senders smtp smtp-in smtp-out
    smtps socket src srs sub-addr-delim table tag tagged tls tls-require ttl user userbase
    verify virtual warn-interval wrapper""".split()
)

LEGACY_KEYWORDS = frozenset(
    """accept alias any as auth auth-optional authenticated backup bounce-warn ca certificate
    ciphers compression deliver dhe domain encryption expire filter for forward-only from
    hostname hostnames include inet4 inet6 key limit listen lmtp local maildir mask-source
    masquerade max-message-size max-mta-deferred mbox mda mta no-dsn on pki port queue rcpt-to
    received-auth recipient reject relay scheduler secure sender senders session smtps socket
    source subaddressing-delimiter table tag tagged tls tls-require to userbase verify via
    virtual dhparams""".split()
)


class Cursor:
    """A lexer with parsing conveniences; see the module docstring."""

    def __init__(self, lexer: Lexer, keywords: frozenset[str]) -> None:
        self.lexer = lexer
        self.keywords = keywords
        self.last: Token | None = None
        self.taken = 0  # tokens consumed so far

    # -- looking -------------------------------------------------------------

    def peek(self, n: int = 0) -> Token:
        return self.lexer.peek(n)

    def take(self) -> Token:
        tok = self.lexer.next()
        self.last = tok
        self.taken += 1
        return tok

    def where(self) -> Where:
        tok = self.peek()
        return Where(tok.file, tok.line)

    def error(self, message: str, tok: Token | None = None) -> NoReturn:
        tok = tok or self.peek()
        raise ConfigError(message, tok.file, tok.line)

    def syntax_error(self, expected: str | None = None) -> NoReturn:
        tok = self.peek()
        if tok.kind is Tok.WORD and tok.text in self.keywords and expected:
            self.error(
                f"syntax error: expected {expected}, found the keyword {tok.describe()} "
                "(quote it to use it as a value)"
            )
        what = f"expected {expected}, found" if expected else "unexpected"
        self.error(f"syntax error: {what} {tok.describe()}")

    def is_keyword(self, tok: Token, *words: str) -> bool:
        return tok.kind is Tok.WORD and tok.text in words

    def at(self, *words: str) -> bool:
        """True if the next token is one of the keywords ``words``."""
        return self.is_keyword(self.peek(), *words)

    def at_end(self) -> bool:
        return self.peek().kind in (Tok.NEWLINE, Tok.EOF)

    def at_string(self, n: int = 0) -> bool:
        """True if the ``n``-th next token can be a string value."""
        tok = self.peek(n)
        return tok.kind is Tok.STRING or (tok.kind is Tok.WORD and tok.text not in self.keywords)

    def at_punct(self, char: str, n: int = 0) -> bool:
        return self.peek(n).is_punct(char)

    # -- taking --------------------------------------------------------------

    def accept(self, *words: str) -> str | None:
        """Take the next token if it is one of the keywords ``words``."""
        if self.at(*words):
            return self.take().text
        return None

    def expect(self, word: str) -> None:
        if not self.accept(word):
            self.syntax_error(f'"{word}"')

    def accept_punct(self, char: str) -> bool:
        if self.at_punct(char):
            self.take()
            return True
        return False

    def expect_punct(self, char: str) -> None:
        if not self.accept_punct(char):
            self.syntax_error(f"'{char}'")

    def string(self, what: str = "a string") -> str:
        if not self.at_string():
            tok = self.peek()
            if tok.kind is Tok.NUMBER:
                hint = (
                    "a delay needs a unit: s, m, h or d"
                    if "delay" in what
                    else f'quote it to use it as a string: "{tok.text}"'
                )
                self.error(
                    f"syntax error: expected {what}, found the number {tok.describe()} ({hint})"
                )
            self.syntax_error(what)
        return self.take().text

    def number(self, what: str = "a number") -> int:
        if self.peek().kind is not Tok.NUMBER:
            self.syntax_error(what)
        return int(self.take().text)

    def negation(self) -> bool:
        return self.accept_punct("!")

    def skip_newlines(self) -> None:
        while self.peek().kind is Tok.NEWLINE:
            self.take()

    def end(self) -> None:
        """The statement must end here."""
        tok = self.peek()
        if tok.kind is Tok.NEWLINE:
            self.take()
        elif tok.kind is not Tok.EOF:
            self.syntax_error("end of line")

    def recover(self, start: int) -> None:
        """After an error, drop the rest of the statement that began at token ``start``."""
        ended = self.last is not None and self.last.kind in (Tok.NEWLINE, Tok.EOF)
        if ended and self.taken > start:
            return
        while True:
            tok = self.take()
            if tok.kind in (Tok.NEWLINE, Tok.EOF):
                return

    # -- tables ----------------------------------------------------------------

    def at_table(self) -> bool:
        return self.at_punct("<") or self.at_punct("{") or self.at_string()

    def table(self, what: str = "a table") -> model.TableRef:
        """``<name>``, ``"value"`` or ``{ ... }``."""
        if self.accept_punct("<"):
            name = self.string("a table name")
            self.expect_punct(">")
            return model.NamedTable(name)
        if self.at_punct("{"):
            return model.InlineTable(self.braced_entries())
        if self.at_string():
            return model.InlineTable(((self.take().text, None),))
        self.syntax_error(what)

    def braced_entries(self) -> tuple[tuple[str, str | None], ...]:
        """``{ a, b }`` or ``{ k = v, k2 => v2 }`` (newlines allowed inside)."""
        self.expect_punct("{")
        self.skip_newlines()
        entries: list[tuple[str, str | None]] = []
        mapping: bool | None = None
        while True:
            key = self.string("a table value")
            value: str | None = None
            is_pair = self.at_punct("=") or self.at_punct("=>")
            if mapping is None:
                mapping = is_pair
            elif mapping != is_pair:
                self.error("syntax error: a table mixes plain values and key = value pairs")
            if is_pair:
                self.take()
                value = self.string("a table value")
            entries.append((key, value))
            self.skip_newlines()
            if self.accept_punct(","):
                self.skip_newlines()
            if self.accept_punct("}"):
                return tuple(entries)

    def name_list(self) -> tuple[str, ...]:
        """``{ a, b }`` of names (filter chains)."""
        self.expect_punct("{")
        self.skip_newlines()
        names: list[str] = []
        while True:
            names.append(self.string("a filter name"))
            self.skip_newlines()
            if self.accept_punct(","):
                self.skip_newlines()
            if self.accept_punct("}"):
                return tuple(names)
