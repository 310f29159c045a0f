"""Parse smtpd.conf text into statements, in either grammar.

The driver reads one statement at a time.  Its first word tells the grammar:
``match``, ``action``, ``filter`` ... are modern (OpenSMTPD 6.4 and later),
``accept``, ``reject``, ``expire`` ... are legacy (5.x and 6.0).  Statements
both grammars share (``listen``, ``table``, ``pki``, ``ca``, ``queue``,
``include`` and macros) are parsed here, accepting each grammar's spelling;
so is mta's own ``web inbox`` line (:mod:`mta.config.web`).  A
file that uses both grammars is an error.

On an error the rest of the statement is skipped and parsing goes on, so every
problem in a file is reported in one run, each as ``file:line: message``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

from mta.config import ast, legacy, model, modern
from mta.config.lexer import Lexer, Tok
from mta.config.syntax import LEGACY_KEYWORDS, MODERN_KEYWORDS, Cursor
from mta.config.units import parse_delay
from mta.errors import ConfigError

__all__ = ["Document", "parse_text"]

Reader = Callable[[str], str]

MODERN_ONLY = frozenset("action match filter proc smtp mta mda scheduler srs bounce admd".split())
LEGACY_ONLY = frozenset(
    """accept reject expire max-message-size bounce-warn limit subaddressing-delimiter
    ciphers max-mta-deferred""".split()
)
_LEGACY_HINT = re.compile(r"^[ \t]*(accept|reject)\b", re.MULTILINE)
_MODERN_HINT = re.compile(r"^[ \t]*(match|action)\b", re.MULTILINE)


@attrs.frozen
class Document:
    """What a file parsed into: statements in order, its grammar and its errors."""

    statements: tuple[ast.Statement, ...]
    grammar: str  # "modern" or "legacy"
    errors: tuple[ConfigError, ...]
    unused_macros: tuple[str, ...] = ()
    # ("action", name) ... of declarations that had a syntax error: their uses are not
    # reported again as undeclared
    failed: frozenset[tuple[str, str]] = frozenset()


def _guess_keywords(text: str) -> frozenset[str]:
    legacy_hint = _LEGACY_HINT.search(text) is not None
    modern_hint = _MODERN_HINT.search(text) is not None
    if legacy_hint and not modern_hint:
        return LEGACY_KEYWORDS
    if modern_hint and not legacy_hint:
        return MODERN_KEYWORDS
    return MODERN_KEYWORDS | LEGACY_KEYWORDS


class Parser:
    """Reads statements from a cursor; see the module docstring."""

    def __init__(self, cursor: Cursor, reader: Reader) -> None:
        self.c = cursor
        self.reader = reader
        self.grammar: str | None = None
        self.grammar_where: ast.Where | None = None
        self.statements: list[ast.Statement] = []
        self.errors: list[ConfigError] = []
        self.defined_macros: dict[str, ast.Where] = {}
        self.srs_key_seen = False
        self.declaring: tuple[str, str] | None = None
        self.failed: set[tuple[str, str]] = set()

    def emit(self, stmt: ast.Statement) -> None:
        self.statements.append(stmt)

    def use_grammar(self, grammar: str, word: str) -> None:
        """Note evidence of a grammar; using both in one file is an error."""
        where = (
            self.c.where() if self.c.last is None else ast.Where(self.c.last.file, self.c.last.line)
        )
        if self.grammar is None:
            self.grammar = grammar
            self.grammar_where = where
            self.c.keywords = MODERN_KEYWORDS if grammar == "modern" else LEGACY_KEYWORDS
            return
        if self.grammar != grammar:
            other = self.grammar_where
            assert other is not None
            raise ConfigError(
                f'"{word}" belongs to the {grammar} grammar, but this configuration uses the '
                f"{self.grammar} grammar (since {other.file}:{other.line}); "
                "one file cannot mix accept/reject rules with match/action rules",
                where.file,
                where.line,
            )

    # -- driver --------------------------------------------------------------

    def run(self) -> None:
        while True:
            tok = self.c.peek()
            if tok.kind is Tok.EOF:
                return
            if tok.kind is Tok.NEWLINE:
                self.c.take()
                continue
            start = self.c.taken
            self.declare_nothing()
            try:
                self.statement()
            except ConfigError as exc:
                self.errors.append(exc)
                if self.declaring is not None:
                    self.failed.add(self.declaring)
                self.c.recover(start)

    def declare_nothing(self) -> None:
        """A new statement starts: it declares nothing yet."""
        self.declaring = None

    def declare(self, kind: str, name: str) -> None:
        """Note that the statement being read declares ``kind`` ``name``."""
        self.declaring = (kind, name)

    def statement(self) -> None:
        c = self.c
        tok = c.peek()
        if c.at_string() and c.at_punct("=", 1):
            self.macro()
            return
        if tok.kind is Tok.WORD and c.at_punct("=", 1):
            c.error(
                f'"{tok.text}" is a reserved word and cannot be a macro name; choose another name'
            )
        if tok.kind is not Tok.WORD:
            c.syntax_error("a directive")
        word = tok.text
        if word in MODERN_ONLY and not (word == "filter" and self.grammar == "legacy"):
            c.take()
            self.use_grammar("modern", word)
            modern.statement(self, word)
        elif word in LEGACY_ONLY:
            c.take()
            self.use_grammar("legacy", word)
            legacy.statement(self, word)
        elif word == "include":
            c.take()
            self.include()
        elif word == "table":
            c.take()
            self.table()
        elif word in ("pki", "ca"):
            c.take()
            self.pki_or_ca(word)
        elif word == "listen":
            c.take()
            c.expect("on")
            self.listen()
        elif word == "queue":
            c.take()
            self.queue()
        elif word == "web":
            c.take()
            self.web()
        else:
            c.syntax_error("a directive")

    # -- shared statements ---------------------------------------------------------

    def macro(self) -> None:
        c = self.c
        where = c.where()
        name = c.take().text
        c.take()  # "="
        if c.peek().kind is Tok.NUMBER:
            c.syntax_error('a quoted value (write the number in quotes, e.g. "25")')
        value = c.string("a macro value")
        c.end()
        if any(ch.isspace() for ch in name):
            raise ConfigError("macro name cannot contain whitespace", where.file, where.line)
        self.defined_macros.setdefault(name, where)
        c.lexer.define(name, value)

    def include(self) -> None:
        c = self.c
        tok = c.peek()
        path = c.string("a file name")
        c.end()
        try:
            text = self.reader(path)
        except OSError as exc:
            raise ConfigError(
                f"failed to include file {path}: {exc.strerror or exc}", tok.file, tok.line
            ) from None
        c.lexer.push_file(path, text)

    def table(self) -> None:
        c = self.c
        where = c.where()
        name = c.string("a table name")
        self.declare("table", name)
        if c.at_punct("{"):
            entries = c.braced_entries()
            c.end()
            decl = model.TableDecl(name, "static", None, entries, where.file, where.line)
        else:
            spec = c.string("a table backend or path")
            c.end()
            if spec.startswith("/"):
                backend, config = "file", spec
            elif ":" in spec:
                backend, _, config_part = spec.partition(":")
                config = config_part
                if not config.startswith("/"):
                    raise ConfigError(
                        f"invalid backend parameter for table {name}: {spec} "
                        "(the path after the backend must be absolute)",
                        where.file,
                        where.line,
                    )
            else:
                backend, config = spec, None
            if backend == "static":
                backend = "file"
            decl = model.TableDecl(name, backend, config, (), where.file, where.line)
        self.emit(ast.TableStmt(decl, where))

    def pki_or_ca(self, word: str) -> None:
        c = self.c
        where = c.where()
        name = c.string(f"a {word} name")
        if name != "*" and not _valid_hostname(name):
            c.error(f"not a valid domain name: {name}")
        name = name.lower()
        self.declare(word, name)
        if word == "ca":
            kw = c.accept("cert", "certificate")
            if kw is None:
                c.syntax_error('"cert"')
            self.use_grammar("modern" if kw == "cert" else "legacy", kw)
            cert = c.string("a certificate file")
            c.end()
            self.emit(ast.CaStmt(name, cert, where))
            return
        params: list[ast.PkiStmt] = []
        declared_ca = False
        while not c.at_end():
            kw = c.accept("cert", "certificate", "key", "dhe", "ca", "dhparams")
            if kw is None:
                c.syntax_error('"cert", "key" or "dhe"')
            if kw in ("cert", "certificate"):
                self.use_grammar("modern" if kw == "cert" else "legacy", kw)
                kw = "cert"
            elif kw in ("ca", "dhparams"):
                self.use_grammar("legacy", kw)
            value = c.string(f"a value for {kw}")
            if kw == "ca":
                # 5.x "pki NAME ca FILE": a CA entry of the same name
                self.emit(ast.CaStmt(name, value, where))
                declared_ca = True
                continue
            if kw == "dhparams":
                # 5.x DH parameter files: modern OpenSMTPD sizes DHE automatically
                kw, value = "dhe", "auto"
            if kw == "dhe":
                if value.lower() not in ("none", "auto", "legacy"):
                    c.error(f"invalid DHE keyword: {value}", c.last)
                value = value.lower()
            params.append(ast.PkiStmt(name, kw, value, where))
        c.end()
        for p in params:
            self.emit(p)
        if not params and not declared_ca:
            # "pki NAME" alone declares an empty pki, as OpenSMTPD allows
            self.emit(ast.PkiStmt(name, "declare", "", where))

    def queue(self) -> None:
        c = self.c
        where = c.where()
        if c.accept("compression"):
            c.end()
            self.emit(ast.SetStmt(("queue", "compression"), True, where))
        elif c.accept("encryption"):
            key: str | None = None
            if c.accept("key"):
                self.use_grammar("legacy", "key")
                key = c.string("an encryption key")
            elif c.at_string():
                key = c.take().text
            elif c.at_punct("-"):
                c.take()
                key = "-"
            c.end()
            if key is not None and key.lower() in ("stdin", "-"):
                key = "stdin"
            self.emit(ast.SetStmt(("queue", "encryption"), key, where))
        elif c.accept("ttl"):
            self.use_grammar("modern", "ttl")
            text = c.string("a delay such as 4d")
            c.end()
            ttl = parse_delay(text)
            if ttl is None:
                c.error(f"invalid ttl delay: {text}", c.last)
            self.emit(ast.SetStmt(("queue", "ttl"), ttl, where))
        else:
            c.syntax_error('"compression", "encryption" or "ttl"')

    def web(self) -> None:
        from mta.config.web import parse_web

        parse_web(self)

    def listen(self) -> None:
        from mta.config.listen import parse_listen

        parse_listen(self)


def _valid_hostname(name: str) -> bool:
    """res_hnok(3): letters, digits, hyphens, underscores and dots."""
    if not name or len(name) > 255:
        return False
    return all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in name)


def parse_text(
    text: str,
    filename: str,
    reader: Reader,
    macros: dict[str, str] | None = None,
) -> Document:
    """Parse configuration text; ``reader`` returns the text of included files."""
    lexer = Lexer(text, filename, macros, frozenset(macros or ()))
    parser = Parser(Cursor(lexer, _guess_keywords(text)), reader)
    try:
        parser.run()
    except ConfigError as exc:  # an unrecoverable lexer error (e.g. open quote at EOF)
        parser.errors.append(exc)
    unused = tuple(name for name in parser.defined_macros if name not in lexer.used_macros)
    return Document(
        tuple(parser.statements),
        parser.grammar or "modern",
        tuple(parser.errors),
        unused,
        frozenset(parser.failed),
    )
