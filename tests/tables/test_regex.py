"""Tests for mta.tables.regex: RE2 compilation and limits."""

from __future__ import annotations

import time

import pytest

from mta.errors import TableError
from mta.tables.regex import compile_regex


def test_case_insensitive_prefix() -> None:
    assert compile_regex("(?i)^abc$").search("ABC")
    assert compile_regex("^abc").search("xabc") is False
    assert compile_regex("b").search("abc")


def test_invalid_and_too_long() -> None:
    with pytest.raises(TableError, match="invalid regex"):
        compile_regex("a(")
    with pytest.raises(TableError):
        compile_regex("(a)\\1")
    with pytest.raises(TableError, match="too long"):
        compile_regex("a" * 5000)
    with pytest.raises(TableError, match="too long"):
        compile_regex("a").search("a" * 5000)


def test_linear_time() -> None:
    regex = compile_regex("^(a+)+$")
    start = time.monotonic()
    assert not regex.search("a" * 1000 + "b")
    assert time.monotonic() - start < 1.0


def test_posix_patterns_re2_refuses_as_written() -> None:
    assert compile_regex("^x+*y$").search("y")
    assert compile_regex("[\\]@").search("\\@")
    assert compile_regex("^re+?ply@").search("rply@x")  # POSIX: (e+)?, not a lazy e+


def test_reason_names_the_pattern() -> None:
    with pytest.raises(TableError, match=r"^invalid regex '\(a\)\\1': back-reference \\1 "):
        compile_regex("(a)\\1")
    with pytest.raises(TableError, match=r"^invalid regex '\(\?i\)\*x': nothing to repeat"):
        compile_regex("(?i)*x")


def test_dot_matches_newline_as_in_posix() -> None:
    assert compile_regex("a.b").search("a\nb")
