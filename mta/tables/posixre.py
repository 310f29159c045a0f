"""POSIX extended regular expressions, checked and rewritten for RE2.

OpenSMTPD compiles table patterns with ``regcomp(REG_EXTENDED|REG_NOSUB)``.
mta matches them with RE2 (linear time), whose syntax is close to POSIX ERE but
not the same: RE2 refuses stacked repetitions (``a**``), a backslash inside a
bracket expression (``[\\]``, literal in POSIX) and an unmatched ``)``
(literal in POSIX); it reads ``a+?`` as a lazy ``a+`` where POSIX means
``(a+)?``; it takes ``{`` as a literal where POSIX requires an interval.

:func:`translate` parses a pattern by the rules of glibc's ``regcomp`` (the
regex library OpenSMTPD uses on Linux), refuses what it refuses, with the
reason, and writes the RE2 pattern that matches the same strings.  Beyond
POSIX, as before: the escapes RE2 and GNU share (``\\w \\W \\s \\S \\b \\B``)
and RE2's ``\\d \\D`` keep their meaning; GNU's ``\\< \\>`` become word
boundaries and ``\\` \\'`` the ends of the subject; any other escaped
character is that character, as in glibc.  Two things are refused that glibc
accepts: back-references (``\\1``; they cannot be matched in linear time) and
repetition counts above 1000 (RE2's limit).
"""

from __future__ import annotations

import re
from enum import Enum

from mta.errors import TableError

__all__ = ["MAX_REPEAT", "translate"]

MAX_REPEAT = 1000
"""The largest repetition count RE2 accepts (glibc: 32767)."""

_CLASSES = frozenset(
    "alpha upper lower digit xdigit space print punct graph cntrl blank alnum".split()
)
_INTERVAL = re.compile(r"(\d*)(,(\d*))?")
_SAME_ESCAPES = frozenset("wWsSdD")
_ANCHOR_ESCAPES = {"b": r"\b", "B": r"\B", "<": r"\b", ">": r"\b", "`": r"\A", "'": r"\z"}


class _Prev(Enum):
    """What came just before: decides whether a repetition may follow."""

    START = "start"  # start of the pattern, after "(" or "|": nothing to repeat
    ANCHOR = "anchor"  # ^ $ \b ...: glibc refuses to repeat an anchor
    ATOM = "atom"
    REPEATED = "repeated"  # an atom already repeated once


def _char(c: str) -> str:
    """``c`` as an RE2 literal (inside or outside a character class)."""
    if (c.isascii() and c.isalnum()) or (not c.isascii() and c.isprintable()):
        return c
    return f"\\x{{{ord(c):x}}}"


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out: list[str] = []
        self.groups: list[int] = []  # index in out of each open group
        self.prev = _Prev.START
        self.atom = 0  # index in out where the last atom starts

    def fail(self, reason: str) -> TableError:
        return TableError(reason)

    def emit_atom(self, text: str) -> None:
        self.atom = len(self.out)
        self.out.append(text)
        self.prev = _Prev.ATOM

    def emit_anchor(self, text: str) -> None:
        self.out.append(text)
        self.prev = _Prev.ANCHOR

    def run(self) -> str:
        p = self.p
        while self.i < len(p):
            c = p[self.i]
            self.i += 1
            if c == "|":
                self.out.append("|")
                self.prev = _Prev.START
            elif c == "(":
                self.groups.append(len(self.out))
                self.out.append("(?:")
                self.prev = _Prev.START
            elif c == ")":
                if self.groups:
                    start = self.groups.pop()
                    self.out.append(")")
                    self.atom, self.prev = start, _Prev.ATOM
                else:
                    self.emit_atom(r"\)")  # POSIX: an unmatched ) is an ordinary character
            elif c in "^$":
                self.emit_anchor(c)
            elif c in "*+?":
                self.repeat(c)
            elif c == "{":
                self.repeat(self.interval())
            elif c == "[":
                self.emit_atom(self.bracket())
            elif c == "\\":
                self.escape()
            elif c == ".":
                self.emit_atom(".")
            else:
                self.emit_atom(_char(c))
        if self.groups:
            raise self.fail("unmatched (")
        return "".join(self.out)

    def repeat(self, operator: str) -> None:
        if self.prev in (_Prev.START, _Prev.ANCHOR):
            raise self.fail(f"nothing to repeat before {operator} (at character {self.i})")
        if self.prev is _Prev.REPEATED:
            # POSIX a** is (a*)*, and a+? is (a+)?: RE2 needs the group written
            self.out.insert(self.atom, "(?:")
            self.out.append(")")
        self.out.append(operator)
        self.prev = _Prev.REPEATED

    def interval(self) -> str:
        """An interval, from after ``{`` to after its ``}``, in RE2's spelling.
        As in glibc, an escaped character stands for itself there (``{1\\,2}``)
        except an escaped ``}`` or a back-reference, which are invalid."""
        p, opened = self.p, self.i
        text: list[str] = []
        while True:
            if self.i >= len(p):
                raise self.fail(f"unmatched {{ (at character {opened})")
            c = p[self.i]
            self.i += 1
            if c == "}":
                break
            if c == "\\" and self.i < len(p):
                c = p[self.i]
                self.i += 1
                if c == "}" or c in "123456789":
                    c = "!"  # never valid in an interval: only looks for the end
            text.append(c)
        content = "".join(text)
        found = _INTERVAL.fullmatch(content)
        if found is None or not content:
            raise self.fail(f"invalid interval {{{content}}} (use {{m}}, {{m,}} or {{m,n}})")
        low, comma, high = found.group(1), found.group(2), found.group(3)
        least = int(low or "0")
        most = None if comma and not high else int(high or low)
        for count in (least, most):
            if count is not None and count > MAX_REPEAT:
                raise self.fail(f"repetition count {count} is above {MAX_REPEAT}")
        if most is not None and most < least:
            raise self.fail(f"invalid interval {{{content}}}: {least} > {most}")
        return f"{{{least},}}" if most is None else f"{{{least},{most}}}"

    def escape(self) -> None:
        if self.i >= len(self.p):
            raise self.fail("trailing backslash")
        c = self.p[self.i]
        self.i += 1
        if c in "123456789":
            raise self.fail(f"back-reference \\{c} is not supported (matching must stay linear)")
        if c in _ANCHOR_ESCAPES:
            self.emit_anchor(_ANCHOR_ESCAPES[c])
        elif c in _SAME_ESCAPES:
            self.emit_atom("\\" + c)
        else:
            self.emit_atom(_char(c))

    def bracket(self) -> str:
        """A bracket expression, from after ``[`` to after its ``]``, as an RE2 class."""
        p = self.p
        opened = self.i - 1
        negate = p.startswith("^", self.i)
        if negate:
            self.i += 1
        parts: list[str] = []
        first = True
        while True:
            if self.i >= len(p):
                raise self.fail(f"unmatched [ (at character {opened + 1})")
            if p[self.i] == "]" and not first:
                self.i += 1
                break
            if p[self.i] == "-" and not first and not p.startswith("]", self.i + 1):
                raise self.fail(f"invalid range at character {self.i + 1}")
            kind, start = self.bracket_element()
            first = False
            if p.startswith("-", self.i) and not p.startswith("]", self.i + 1):
                self.i += 1
                end_kind, end = self.bracket_element()
                if kind in (":", "=") or end_kind in (":", "="):
                    raise self.fail(f"invalid range end at character {self.i}")
                if ord(end) < ord(start):
                    raise self.fail(f"invalid range {start}-{end} (end before start)")
                parts.append(f"{_char(start)}-{_char(end)}")
            elif kind == ":":
                parts.append(f"[:{start}:]")
            else:
                parts.append(_char(start))
        return "[" + ("^" if negate else "") + "".join(parts) + "]"

    def bracket_element(self) -> tuple[str, str]:
        """One element of a bracket expression: ``("", char)``, ``(":", class
        name)``, or ``("=" | ".", char)`` for ``[=c=]`` and ``[.c.]``."""
        p = self.p
        if self.i >= len(p):
            raise self.fail("unmatched [")
        if p.startswith("[", self.i) and p[self.i + 1 : self.i + 2] in (":", "=", "."):
            kind = p[self.i + 1]
            close = p.find(kind + "]", self.i + 2)
            if close < 0:
                raise self.fail(f"unmatched [{kind} (at character {self.i + 1})")
            name = p[self.i + 2 : close]
            self.i = close + 2
            if kind == ":":
                if name not in _CLASSES:
                    raise self.fail(f"unknown character class [:{name}:]")
            elif len(name) != 1:
                raise self.fail(f"unsupported collating element [{kind}{name}{kind}]")
            return kind, name
        self.i += 1
        return "", p[self.i - 1]


def translate(pattern: str) -> str:
    """The RE2 form of POSIX extended regex ``pattern``; TableError with the
    reason when glibc would refuse it (or RE2 cannot match it)."""
    return _Translator(pattern).run()
