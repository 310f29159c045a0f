"""Regular expressions for ``regex`` tables, compiled with RE2 so that matching
is linear in the input (no catastrophic backtracking, whatever the pattern).

OpenSMTPD uses POSIX extended regexes, unanchored (``regexec``), with an
optional ``(?i)`` prefix for case-insensitive matching.  Because table keys and
lookup keys are both lowercased, matching is effectively case-insensitive
anyway; mta compiles every pattern case-insensitively from its original text
so escapes such as ``\\S`` or ``\\D`` keep their meaning.  The pattern is
checked and rewritten into RE2's syntax by :mod:`mta.tables.posixre`; ``.``
matches any character, newline included, as in POSIX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from mta.errors import TableError
from mta.tables.posixre import translate

if TYPE_CHECKING:  # RE2 is imported with the first regex table
    import re2

__all__ = ["MAX_PATTERN_LENGTH", "MAX_SUBJECT_LENGTH", "Regex", "compile_regex"]

MAX_PATTERN_LENGTH = 4096
MAX_SUBJECT_LENGTH = 1024
_MAX_MEM = 8 << 20


@attrs.frozen
class Regex:
    """A compiled table pattern; :meth:`search` is RE2, linear-time."""

    source: str
    _compiled: re2._Regexp[str] = attrs.field(repr=False, eq=False)

    def search(self, subject: str) -> bool:
        """True when the pattern matches anywhere in ``subject`` (capped in length)."""
        if len(subject) > MAX_SUBJECT_LENGTH:
            raise TableError(f"regex subject too long ({len(subject)} characters)")
        return self._compiled.search(subject) is not None


def _shown(pattern: str) -> str:
    """The pattern as written, quoted (repr only when it holds control characters)."""
    return f"'{pattern}'" if pattern.isprintable() else repr(pattern)


def _describe(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else exc
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    return str(detail)


def compile_regex(pattern: str) -> Regex:
    """Compile a table pattern; a pattern that is not a valid POSIX extended
    regex, or that RE2 cannot compile, is a TableError giving the reason."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise TableError(f"regex too long ({len(pattern)} characters)")
    import re2

    body = pattern[4:] if pattern.startswith("(?i)") else pattern
    options = re2.Options()
    options.case_sensitive = False
    options.dot_nl = True
    options.never_capture = True
    options.max_mem = _MAX_MEM
    options.log_errors = False
    try:
        compiled = re2.compile(translate(body), options)
    except TableError as exc:
        raise TableError(f"invalid regex {_shown(pattern)}: {exc}") from None
    except (re2.error, TypeError, ValueError) as exc:
        raise TableError(f"invalid regex {_shown(pattern)}: {_describe(exc)}") from None
    return Regex(pattern, compiled)
