"""Tokeniser for smtpd.conf(5), with OpenSMTPD's quoting, macro and number rules.

Theory of operation
-------------------
The lexer reads characters from a stack of sources (the main file, then any
``include``d file pushed by the parser) and yields :class:`Token` values.  It
reproduces the rules of OpenSMTPD's ``yylex`` so that a configuration gets the
same tokens here as there:

* ``#`` starts a comment that runs to the end of the line; a backslash before a
  newline joins two lines; outside quotes a backslash escapes the next
  character.
* ``"..."`` and ``'...'`` are strings; inside them a backslash escapes the quote
  character, a space or a tab, and a backslash-newline is dropped.  Quoted
  strings never count as keywords and macros are not expanded inside them.
* ``$name`` outside quotes is replaced by the macro's value, which is then
  tokenised again (a ``$`` inside an expansion is not expanded a second time).
* A run of digits (optionally after ``-``) followed by white space, ``)``,
  ``,``, ``/``, ``}``, ``=`` or the end of input is a NUMBER; ``50M`` is a word.
* A word starts with a letter, digit, ``:`` or ``_`` and continues with letters,
  digits and punctuation other than ``( ) { } < > ! = # ,``.  ``=>`` is one
  token; any other character is a one-character punctuation token.

The lexer does no file I/O itself: the loader gives it text and a reader for
``include``.  Errors are :class:`~mta.errors.ConfigError` with ``file:line``.
"""

from __future__ import annotations

import enum

import attrs

from mta.errors import ConfigError

__all__ = ["MAX_TOKEN", "Lexer", "Tok", "Token", "in_word", "starts_word"]

MAX_TOKEN = 8096
_START_EXPAND = "\x01"
_DONE_EXPAND = "\x02"
_NUMBER_END = " \t\r\n\v\f),/}="
_NOT_IN_WORD = "(){}<>!=#,"


class Tok(enum.Enum):
    """The kinds of token."""

    WORD = "word"  # a bare word: may be a keyword
    STRING = "string"  # a quoted string: never a keyword
    NUMBER = "number"
    PUNCT = "punct"  # one of { } < > ! = , => and any stray character
    NEWLINE = "newline"
    EOF = "eof"


@attrs.frozen
class Token:
    """One token with the place it starts at."""

    kind: Tok
    text: str
    file: str
    line: int
    expanded: bool = False  # came from a macro expansion

    def is_word(self, *words: str) -> bool:
        """True for a bare word equal to one of ``words``."""
        return self.kind is Tok.WORD and self.text in words

    def is_punct(self, char: str) -> bool:
        """True for the punctuation token ``char``."""
        return self.kind is Tok.PUNCT and self.text == char

    def describe(self) -> str:
        """The token as an error message shows it."""
        if self.kind is Tok.NEWLINE:
            return "end of line"
        if self.kind is Tok.EOF:
            return "end of file"
        if self.kind is Tok.STRING:
            return f'"{self.text}"'
        return f'"{self.text}"'


def starts_word(c: str) -> bool:
    return len(c) == 1 and ((c.isascii() and c.isalnum()) or c in ":_")


class _Source:
    """One file being read: its text, position and line counter."""

    def __init__(self, name: str, text: str, first_line: int) -> None:
        self.name = name
        self.text = text
        self.pos = 0
        self.line = first_line
        self.pending: list[str] = []  # pushed-back characters, last is next
        self.eof_reached = False


class Lexer:
    """Turns configuration text into tokens; see the module docstring."""

    def __init__(
        self,
        text: str,
        filename: str,
        macros: dict[str, str] | None = None,
        persistent: frozenset[str] = frozenset(),
    ) -> None:
        self._sources: list[_Source] = [_Source(filename, text, 1)]
        self.macros: dict[str, str] = dict(macros or {})
        self.used_macros: set[str] = set()
        # names given with -D on the command line: a file cannot redefine them
        self.persistent = set(persistent)
        self._expanding = False
        self._lookahead: list[Token] = []

    # -- sources -----------------------------------------------------------

    @property
    def file(self) -> str:
        return self._sources[-1].name

    @property
    def line(self) -> int:
        return self._sources[-1].line

    def push_file(self, name: str, text: str) -> None:
        """Continue with an included file; the current one resumes after it."""
        if len(self._sources) > 32:
            raise ConfigError(f"include nesting too deep at {name}", self.file, self.line)
        src = _Source(name, text, 0)
        src.pending.append("\n")
        self._sources.append(src)

    def define(self, name: str, value: str) -> None:
        """Define a macro, unless the command line fixed it."""
        if name in self.persistent:
            return
        self.macros[name] = value

    # -- characters ----------------------------------------------------------

    def _raw(self) -> str:
        """Next character of the current source, '' at its end."""
        src = self._sources[-1]
        while True:
            if src.pending:
                c = src.pending.pop()
            elif src.pos < len(src.text):
                c = src.text[src.pos]
                src.pos += 1
            else:
                return ""
            if c == _START_EXPAND:
                self._expanding = True
            elif c == _DONE_EXPAND:
                self._expanding = False
            else:
                return c

    def _unget(self, c: str) -> None:
        if c:
            self._sources[-1].pending.append(c)

    def _getc(self, quoted: bool) -> str:
        """Next character with line continuation; '' at the very end."""
        if quoted:
            c = self._raw()
            if c == "":
                raise ConfigError(
                    "reached end of file while parsing quoted string", self.file, self.line
                )
            return c
        while True:
            c = self._raw()
            if c != "\\":
                break
            nxt = self._raw()
            if nxt != "\n":
                c = nxt
                break
            self._sources[-1].line += 1
        if c == "":
            src = self._sources[-1]
            if not src.eof_reached:
                src.eof_reached = True
                return "\n"
            while c == "" and len(self._sources) > 1:
                self._sources.pop()
                c = self._raw()
        return c

    # -- tokens --------------------------------------------------------------

    def peek(self, n: int = 0) -> Token:
        """Look at the ``n``-th next token without consuming it."""
        while len(self._lookahead) <= n:
            self._lookahead.append(self._lex())
        return self._lookahead[n]

    def next(self) -> Token:
        """Consume and return the next token."""
        if self._lookahead:
            return self._lookahead.pop(0)
        return self._lex()

    def skip_line(self) -> None:
        """Drop tokens up to and including the next end of line."""
        while True:
            tok = self.next()
            if tok.kind in (Tok.NEWLINE, Tok.EOF):
                return

    def _lex(self) -> Token:
        while True:
            tok = self._lex_once()
            if tok is not None:
                return tok

    def _lex_once(self) -> Token | None:
        c = self._getc(False)
        while c in (" ", "\t"):
            c = self._getc(False)
        file, line, expanded = self.file, self.line, self._expanding
        if c == "#":
            while c not in ("\n", ""):
                c = self._getc(False)
        if c == "$" and not self._expanding:
            self._expand_macro(file, line)
            return None
        if c in ("'", '"'):
            return Token(Tok.STRING, self._quoted(c), file, line, expanded)
        if c == "-" or (c.isascii() and c.isdigit()):
            tok = self._number(c, file, line, expanded)
            if tok is not None:
                return tok
            c = self._getc(False)
            if c == "-":
                return Token(Tok.PUNCT, "-", file, line, expanded)
        if c == "=":
            nxt = self._getc(False)
            if nxt == ">":
                return Token(Tok.PUNCT, "=>", file, line, expanded)
            self._unget(nxt)
        if starts_word(c):
            buf = [c]
            while True:
                c = self._getc(False)
                if not c or not in_word(c):
                    break
                buf.append(c)
                if len(buf) >= MAX_TOKEN:
                    raise ConfigError("string too long", file, line)
            self._unget(c)
            return Token(Tok.WORD, "".join(buf), file, line, expanded)
        if c == "\n":
            self._sources[-1].line += 1
            return Token(Tok.NEWLINE, "\n", file, line, expanded)
        if c == "":
            return Token(Tok.EOF, "", file, line, expanded)
        return Token(Tok.PUNCT, c, file, line, expanded)

    def _expand_macro(self, file: str, line: int) -> None:
        buf: list[str] = []
        while True:
            c = self._getc(False)
            if c == "":
                raise ConfigError("unexpected end of file after '$'", file, line)
            if c.isascii() and (c.isalnum() or c == "_"):
                buf.append(c)
                if len(buf) >= MAX_TOKEN:
                    raise ConfigError("string too long", file, line)
                continue
            self._unget(c)
            break
        name = "".join(buf)
        if name not in self.macros:
            raise ConfigError(f"macro '{name}' not defined", file, line)
        self.used_macros.add(name)
        value = self.macros[name]
        # pushed back in reverse: START_EXPAND is read first, then the value
        self._unget(_DONE_EXPAND)
        for ch in reversed(value):
            self._unget(ch)
        self._unget(_START_EXPAND)

    def _quoted(self, quote: str) -> str:
        file, line = self.file, self.line
        buf: list[str] = []
        while True:
            try:
                c = self._getc(True)
            except ConfigError:
                raise ConfigError(
                    f"reached end of file while parsing quoted string: the {quote} opened "
                    "here is never closed",
                    file,
                    line,
                ) from None
            if c == "\n":
                self._sources[-1].line += 1
                buf.append(c)
                continue
            if c == "\\":
                nxt = self._getc(True)
                if nxt in (quote, " ", "\t"):
                    c = nxt
                elif nxt == "\n":
                    self._sources[-1].line += 1
                    continue
                else:
                    self._unget(nxt)
            elif c == quote:
                return "".join(buf)
            elif c == "\0":
                raise ConfigError("syntax error", file, line)
            buf.append(c)
            if len(buf) >= MAX_TOKEN:
                raise ConfigError("string too long", file, line)

    def _number(self, first: str, file: str, line: int, expanded: bool) -> Token | None:
        """A NUMBER token, or None after pushing everything back (then a word follows)."""
        buf = [first]
        c = self._getc(False)
        while c and c.isascii() and c.isdigit():
            buf.append(c)
            if len(buf) >= MAX_TOKEN:
                raise ConfigError("string too long", file, line)
            c = self._getc(False)
        self._unget(c)
        if not (len(buf) == 1 and first == "-") and (c == "" or c in _NUMBER_END):
            text = "".join(buf)
            value = int(text)
            if not -(2**63) <= value < 2**63:
                raise ConfigError(f'"{text}" invalid number: too large', file, line)
            return Token(Tok.NUMBER, text, file, line, expanded)
        for ch in reversed(buf):
            self._unget(ch)
        return None


def in_word(c: str) -> bool:
    if not c.isascii():
        return False
    if c.isalnum():
        return True
    return c.isprintable() and not c.isspace() and c not in _NOT_IN_WORD
