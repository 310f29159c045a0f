"""Tests for mta.tables.posixre: POSIX extended regexes checked and rewritten
for RE2, compared with glibc's own regcomp/regexec (what OpenSMTPD uses on
Linux) through ctypes, pattern by pattern and on generated patterns."""

from __future__ import annotations

import ctypes
import ctypes.util
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mta.errors import TableError
from mta.tables.posixre import translate
from mta.tables.regex import compile_regex

REG_EXTENDED, REG_ICASE, REG_NOSUB = 1, 2, 8
_REGEX_T_SIZE = 1024  # larger than glibc's regex_t (64 bytes on x86-64)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        library = ctypes.CDLL(name)
        library.regcomp.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        library.regexec.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
            ctypes.c_int,
        ]
        library.regfree.argtypes = [ctypes.c_void_p]
        library.gnu_get_libc_version.restype = ctypes.c_char_p
    except (OSError, AttributeError, TypeError):
        return None
    return library


LIBC = _libc()
needs_glibc = pytest.mark.skipif(LIBC is None, reason="glibc's regcomp is the reference")


def glibc(pattern: str, subjects: list[str], flags: int = REG_EXTENDED | REG_NOSUB) -> list[bool]:
    """Which subjects glibc's regexec matches; ValueError if regcomp refuses."""
    assert LIBC is not None
    compiled = ctypes.create_string_buffer(_REGEX_T_SIZE)
    if LIBC.regcomp(compiled, pattern.encode(), flags) != 0:
        raise ValueError(pattern)
    try:
        return [LIBC.regexec(compiled, s.encode(), 0, None, 0) == 0 for s in subjects]
    finally:
        LIBC.regfree(compiled)


def glibc_accepts(pattern: str) -> bool:
    try:
        glibc(pattern, [])
    except ValueError:
        return False
    return True


def mta(pattern: str, subjects: list[str]) -> list[bool]:
    regex = compile_regex(pattern)
    return [regex.search(s) for s in subjects]


@pytest.mark.parametrize(
    ("pattern", "re2"),
    [
        ("a**", "(?:a*)*"),
        ("a+?", "(?:a+)?"),
        ("(ab){2}*", "(?:(?:ab){2,2})*"),
        ("[\\]", "[\\x{5c}]"),
        ("[]a-]", "[\\x{5d}a\\x{2d}]"),
        ("[^]a]", "[^\\x{5d}a]"),
        ("a)", "a\\)"),
        ("a{,3}", "a{0,3}"),
        ("a{2,}", "a{2,}"),
        ("a{1\\,2}", "a{1,2}"),
        ("[[:digit:][.-.]x]", "[[:digit:]\\x{2d}x]"),
        ("[[=e=]]", "[e]"),
        ("\\<w\\>", "\\bw\\b"),
        ("\\`a\\'", "\\Aa\\z"),
        ("\\m\\x41", "mx41"),
        ("\\S\\d\\w", "\\S\\d\\w"),
        ("x@example\\.org", "x\\x{40}example\\x{2e}org"),
    ],
)
def test_translate(pattern: str, re2: str) -> None:
    assert translate(pattern) == re2


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a(", "unmatched ("),
        ("x[", "unmatched ["),
        ("[a", "unmatched ["),
        ("[]", "unmatched ["),
        ("[[:alpha:]", "unmatched ["),
        ("[[:alpha]", "unmatched [:"),
        ("[[:foo:]]", "unknown character class [:foo:]"),
        ("[[.space.]]", "unsupported collating element"),
        ("[z-a]", "invalid range z-a"),
        ("[a-c-e]", "invalid range at character 5"),
        ("[[:alpha:]-z]", "invalid range end"),
        ("*a", "nothing to repeat before *"),
        ("a|+b", "nothing to repeat before +"),
        ("(?i)x", "nothing to repeat before ?"),
        ("^*", "nothing to repeat"),
        ("a$?", "nothing to repeat"),
        ("\\<*", "nothing to repeat"),
        ("{1}", "nothing to repeat"),
        ("a{", "unmatched {"),
        ("a{x}", "invalid interval {x}"),
        ("a{}", "invalid interval {}"),
        ("a{1,2,3}", "invalid interval"),
        ("a{1\\}", "unmatched {"),
        ("a{3,1}", "3 > 1"),
        ("a{1001}", "repetition count 1001 is above 1000"),
        ("(a)\\1", "back-reference \\1 is not supported"),
        ("ab\\", "trailing backslash"),
    ],
)
def test_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(TableError) as info:
        translate(pattern)
    assert reason in str(info.value)


@needs_glibc
@pytest.mark.parametrize(
    "pattern",
    [
        "a(", "x[", "[a", "[]", "[^]", "[[:foo:]]", "[[.space.]]", "[z-a]", "[a-c-e]",
        "[[=a=]-z]", "[a-[=z=]]", "*a", "a|*b", "(*a)", "^*a", "a$*", ".^*", "\\b*",
        "a{", "a{x}", "a{}", "a{ 1}", "a{1,2,3}", "a{3,1}", "{a", "(+)", "\\",
        "q**", "[\\]", "a+*", "a?+", "a{2}{3}", "a)", ")*", "a{,3}", "a{,}", "[]a]",
        "[^]a]", "[[.-.]a]", "[a-[.z.]]", "[%--]", "[--z]", "[a-]", "()", "|a", "a||b",
        "(|a)", "a{1\\,2}", "[[]", "[a[]", "\\m", "\\é", "é+",
    ],
)  # fmt: skip
def test_same_verdict_as_glibc(pattern: str) -> None:
    accepted = glibc_accepts(pattern)
    try:
        translate(pattern)
        assert accepted, f"glibc refuses {pattern!r}, mta accepts it"
    except TableError as exc:
        assert not accepted, f"glibc accepts {pattern!r}, mta refuses it: {exc}"


@needs_glibc
@pytest.mark.parametrize(
    ("pattern", "subjects"),
    [
        ("^x+*y$", ["xy", "xxy", "y", "xay"]),
        ("^re+?ply@", ["rply@", "replay@", "reeeply@", "reply@"]),
        ("[\\]@", ["\\@", "]@", "a@"]),
        ("^a)b", ["a)b", "ab"]),
        ("a{,2}b$", ["b", "aab", "caaab"]),
        ("\\<ab", ["x ab", "xab"]),
        ("ab\\>", ["ab c", "abc"]),
        ("\\`ab", ["ab", "xab"]),
        ("ab\\'", ["ab", "abx"]),
        ("a.b", ["a\nb", "ab"]),
        ("[^x]", ["\n", "x"]),
        ("\\m\\x41", ["mx41", "A"]),
        ("[[:digit:]]+@", ["123@", "abc@"]),
        ("\\w+@", ["a_1@", "@"]),
    ],
)
def test_matches_like_glibc(pattern: str, subjects: list[str]) -> None:
    assert mta(pattern, subjects) == glibc(pattern, subjects)


PIECES = [*"ab.*+?|()[]^${},12-\\:=", "[:alpha:]", "[:digit:]", "[.a.]", "[=b=]"]
SUBJECT = st.text(alphabet="ab-{}1(.", max_size=6)
# ranges between punctuation may take in capitals: mta folds case, glibc's
# REG_ICASE compares the lowered subject, so such ranges differ on purpose
_PUNCTUATION_RANGE = re.compile(r"[^a-z0-9]-[^\]]")


@needs_glibc
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.lists(st.sampled_from(PIECES), min_size=1, max_size=12).map("".join),
    subjects=st.lists(SUBJECT, min_size=1, max_size=8),
)
def test_generated_patterns_agree_with_glibc(pattern: str, subjects: list[str]) -> None:
    assume(not any(f"\\{c}" in pattern for c in "12dD"))  # refused / RE2's meaning on purpose
    accepted = glibc_accepts(pattern)
    try:
        matched = mta(pattern, subjects)
    except TableError as exc:
        assert not accepted, f"glibc accepts {pattern!r}, mta refuses it: {exc}"
        return
    assert accepted, f"glibc refuses {pattern!r}, mta accepts it"
    # case-insensitive, as mta always is (glibc ignores REG_ICASE on escaped letters)
    if "\\a" in pattern or "\\b" in pattern or _PUNCTUATION_RANGE.search(pattern):
        return
    flags = REG_EXTENDED | REG_NOSUB | REG_ICASE
    assert matched == glibc(pattern, subjects, flags), pattern
