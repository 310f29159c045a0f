"""Property tests: on any text, the lexer, the parser and the loader either succeed or
raise :class:`~mta.errors.ConfigError` (``ConfigErrors`` included), and always finish.

Loading runs with ``check_interfaces=False`` and a fixed host name, so no interface or
DNS lookups happen.  Generated ``include`` statements may name any path: reading it is
harmless, and the generated names rarely exist.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mta.config.lexer import Lexer, Tok
from mta.config.load import load_text
from mta.config.parser import parse_text
from mta.config.render import render
from mta.config.syntax import LEGACY_KEYWORDS, MODERN_KEYWORDS
from mta.errors import ConfigError

HOST = "mx.example.org"
DEADLINE_MS = 2000

PIECES = [
    *sorted(MODERN_KEYWORDS | LEGACY_KEYWORDS),
    "{", "}", "<", ">", "!", "$", "#", "\\", '"', "'", "\n", "\\\n", ",", "=", "=>", "-",
    "25", "-5", "35M", "4d", "127.0.0.1", "lo", "t", "a", "$m", "m = \"x\"", '"quoted"',
    "'single'", "smtp://h", "@", "*", "\t", " ",
]  # fmt: skip

glued = st.lists(st.sampled_from(PIECES), max_size=40).map(" ".join)
glued_tight = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
arbitrary = st.text(max_size=200)
any_text = st.one_of(arbitrary, glued, glued_tight)

fast = settings(
    deadline=DEADLINE_MS, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)


def _no_include(path: str) -> str:
    raise FileNotFoundError(2, "No such file or directory", path)


def _lex_all(text: str) -> int:
    lexer = Lexer(text, "p.conf", macros={"m": "from any"})
    for count in range(10 * len(text) + 10):
        if lexer.next().kind is Tok.EOF:
            return count
    raise AssertionError("the lexer did not reach the end of the input")


@fast
@given(any_text)
def test_lexer_only_raises_config_errors(text: str) -> None:
    try:
        _lex_all(text)
    except ConfigError as exc:
        assert exc.file == "p.conf"
        assert exc.line is not None and exc.line >= 1


@fast
@given(any_text)
def test_parser_collects_errors_and_finishes(text: str) -> None:
    doc = parse_text(text, "p.conf", _no_include, macros={"m": "from any"})
    for err in doc.errors:
        assert isinstance(err, ConfigError)
        assert err.file == "p.conf"
        assert err.line is not None
    assert doc.grammar in ("modern", "legacy")


@fast
@given(any_text)
def test_load_text_only_raises_config_errors(text: str) -> None:
    try:
        result = load_text(text, "p.conf", hostname=HOST, check_interfaces=False)
    except ConfigError as exc:
        assert str(exc)
        return
    # whatever loads also renders into text that loads to the same model
    again = load_text(render(result.config), "r.conf", hostname=HOST, check_interfaces=False)
    assert again.config == result.config


statement_words = st.lists(
    st.sampled_from(
        [
            "match",
            "from",
            "for",
            "any",
            "local",
            "domain",
            "action",
            "a",
            "reject",
            "tag",
            "!",
            "auth",
            "helo",
            "mail-from",
            "rcpt-to",
            "tls",
            "regex",
            "src",
            "rdns",
            "socket",
            '"x"',
            "<t>",
            "{ a, b }",
            "{ k = v }",
        ]
    ),
    max_size=12,
)


@fast
@given(statement_words)
def test_random_rules_load_or_fail_cleanly(words: list[str]) -> None:
    text = "table t { a }\naction a mbox\n" + " ".join(words) + "\nmatch for any reject\n"
    try:
        result = load_text(text, "p.conf", hostname=HOST, check_interfaces=False)
    except ConfigError:
        return
    again = load_text(render(result.config), "r.conf", hostname=HOST, check_interfaces=False)
    assert again.config == result.config
