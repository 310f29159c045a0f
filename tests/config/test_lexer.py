"""The smtpd.conf tokeniser: OpenSMTPD's quoting, macro, number and include rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.config.lexer import MAX_TOKEN, Lexer, Tok, Token
from mta.config.render import quote
from mta.errors import ConfigError


def tokens(lexer: Lexer) -> list[Token]:
    out = []
    while True:
        tok = lexer.next()
        out.append(tok)
        if tok.kind is Tok.EOF:
            return out


def lex(text: str, **kwargs: object) -> list[tuple[Tok, str]]:
    """(kind, text) of every token before EOF, newlines included."""
    lexer = Lexer(text, "t.conf", **kwargs)  # type: ignore[arg-type]
    return [(t.kind, t.text) for t in tokens(lexer)[:-1]]


def words(text: str, **kwargs: object) -> list[str]:
    """Texts of the tokens that are not newlines."""
    return [t for k, t in lex(text, **kwargs) if k is not Tok.NEWLINE]


def lex_error(text: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        lex(text, **kwargs)
    return info.value


W, S, N, P, NL = Tok.WORD, Tok.STRING, Tok.NUMBER, Tok.PUNCT, Tok.NEWLINE


# -- comments, lines and continuation ------------------------------------------------


def test_comment_runs_to_end_of_line() -> None:
    assert lex("listen on lo # a comment { < !\nmatch") == [
        (W, "listen"),
        (W, "on"),
        (W, "lo"),
        (NL, "\n"),
        (W, "match"),
        (NL, "\n"),
    ]


def test_hash_inside_quotes_is_not_a_comment() -> None:
    assert words('x "a # b"') == ["x", "a # b"]


def test_hash_ends_a_word() -> None:
    assert words("abc#comment") == ["abc"]


def test_end_of_file_is_an_end_of_line() -> None:
    assert lex("a") == [(W, "a"), (NL, "\n")]


def test_backslash_newline_joins_lines_and_counts_them() -> None:
    toks = tokens(Lexer("a \\\n  b\nc", "t.conf"))
    assert [(t.text, t.line) for t in toks if t.kind is W] == [("a", 1), ("b", 2), ("c", 3)]
    assert [t.kind for t in toks].count(NL) == 2


def test_backslash_escapes_a_character_outside_quotes() -> None:
    assert words("a\\{b") == ["a", "{", "b"]  # the escaped brace still ends the word
    assert words("a\\.b") == ["a.b"]
    assert words("x\\\\y") == ["x\\y"]


def test_line_numbers() -> None:
    toks = tokens(Lexer("a\n\n# c\nb\n", "t.conf"))
    assert [(t.text, t.line) for t in toks if t.kind is W] == [("a", 1), ("b", 4)]
    assert all(t.file == "t.conf" for t in toks)


# -- quoted strings ------------------------------------------------------------------


@pytest.mark.parametrize("q", ['"', "'"])
def test_both_quote_styles(q: str) -> None:
    assert lex(f"{q}hello world{q}") == [(S, "hello world"), (NL, "\n")]


def test_quote_escapes() -> None:
    assert words(r'"a\"b"') == ['a"b']
    assert words(r"'a\'b'") == ["a'b"]
    assert words('"a\\ b\\\tc"') == ["a b\tc"]
    # the other quote and any other character keep their backslash
    assert words(r'"a\'b"') == ["a\\'b"]
    assert words(r'"a\nb"') == ["a\\nb"]
    assert words(r'"a\\b"') == ["a\\\\b"]
    assert words(r"'a\"b'") == ['a\\"b']


def test_other_quote_inside_quotes_is_literal() -> None:
    assert words('"it\'s"') == ["it's"]
    assert words("'say \"hi\"'") == ['say "hi"']


def test_backslash_newline_inside_quotes_is_dropped() -> None:
    toks = tokens(Lexer('"ab\\\ncd" x', "t.conf"))
    assert (toks[0].kind, toks[0].text, toks[0].line) == (S, "abcd", 1)
    assert (toks[1].text, toks[1].line) == ("x", 2)


def test_newline_inside_quotes_is_kept_and_counted() -> None:
    toks = tokens(Lexer('"ab\ncd" x', "t.conf"))
    assert (toks[0].kind, toks[0].text, toks[0].line) == (S, "ab\ncd", 1)
    assert (toks[1].text, toks[1].line) == ("x", 2)


def test_quoted_keyword_is_a_string() -> None:
    assert lex('"match" match') == [(S, "match"), (W, "match"), (NL, "\n")]


def test_quoted_number_is_a_string() -> None:
    assert lex('"25"') == [(S, "25"), (NL, "\n")]


def test_empty_string() -> None:
    assert lex('""') == [(S, ""), (NL, "\n")]


@pytest.mark.parametrize("text", ['"abc', "'abc", 'x "abc\n\n', '"abc\\"'])
def test_unterminated_quote(text: str) -> None:
    err = lex_error(text)
    assert "end of file while parsing quoted string" in err.message
    assert err.file == "t.conf"
    assert err.line == 1


def test_nul_in_quotes_is_an_error() -> None:
    assert lex_error('"a\0b"').message == "syntax error"


def test_string_too_long() -> None:
    assert lex_error('"' + "a" * MAX_TOKEN + '"').message == "string too long"
    assert lex_error("a" * (MAX_TOKEN + 1)).message == "string too long"
    assert lex_error("$" + "a" * (MAX_TOKEN + 1)).message == "string too long"
    assert words('"' + "a" * (MAX_TOKEN - 1) + '"') == ["a" * (MAX_TOKEN - 1)]


# -- numbers and words ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25", [(N, "25")]),
        ("-5", [(N, "-5")]),
        ("0", [(N, "0")]),
        ("35M", [(W, "35M")]),
        ("4d", [(W, "4d")]),
        ("127.0.0.1", [(W, "127.0.0.1")]),
        ("::1", [(W, "::1")]),
        ("-", [(P, "-")]),
        ("- x", [(P, "-"), (W, "x")]),
        ("-x", [(P, "-"), (W, "x")]),
        ("25,26", [(N, "25"), (P, ","), (N, "26")]),
        ("25}", [(N, "25"), (P, "}")]),
        ("25)", [(N, "25"), (P, ")")]),
        ("25=x", [(N, "25"), (P, "="), (W, "x")]),
        ("25/24", [(N, "25"), (P, "/"), (N, "24")]),
        ("25>", [(W, "25"), (P, ">")]),
        ("2001:db8::/32", [(W, "2001:db8::/32")]),
        ("smtp+tls://h:25", [(W, "smtp+tls://h:25")]),
        ("_x:y", [(W, "_x:y")]),
        ("max-conn-per-host", [(W, "max-conn-per-host")]),
    ],
)
def test_number_and_word_rules(text: str, expected: list[tuple[Tok, str]]) -> None:
    assert [(k, t) for k, t in lex(text) if k is not NL] == expected


def test_word_stops_at_reserved_punctuation() -> None:
    assert words("a(b)c{d}e<f>g!h=i#j") == [
        "a",
        "(",
        "b",
        ")",
        "c",
        "{",
        "d",
        "}",
        "e",
        "<",
        "f",
        ">",
        "g",
        "!",
        "h",
        "=",
        "i",
    ]
    assert words("a,b") == ["a", ",", "b"]
    assert words("a/b.c-d@e") == ["a/b.c-d@e"]


def test_number_too_large() -> None:
    err = lex_error("9" * 30)
    assert "invalid number: too large" in err.message


def test_arrow_and_equals() -> None:
    assert words("k => v") == ["k", "=>", "v"]
    assert words("k=>v") == ["k", "=>", "v"]
    assert words("k = v") == ["k", "=", "v"]
    assert lex("= >")[:2] == [(P, "="), (P, ">")]


@pytest.mark.parametrize("char", [*list("!<>{}(),;*?&|^~%@[]/.+"), "\x7f", "é"])
def test_stray_punctuation_is_one_token(char: str) -> None:
    assert lex(char) == [(P, char), (NL, "\n")]


def test_non_ascii_ends_a_word() -> None:
    assert words("abcé") == ["abc", "é"]


# -- macros ------------------------------------------------------------------------------


def test_macro_defined_and_used() -> None:
    lexer = Lexer("a $m b", "t.conf", macros={"m": "value"})
    toks = tokens(lexer)
    assert [(t.kind, t.text, t.expanded) for t in toks[:3]] == [
        (W, "a", False),
        (W, "value", True),
        (W, "b", False),
    ]
    assert lexer.used_macros == {"m"}


def test_define_then_use() -> None:
    lexer = Lexer("$m", "t.conf")
    lexer.define("m", "x")
    assert [t.text for t in tokens(lexer)] == ["x", "\n", ""]


def test_macro_is_re_lexed_into_several_tokens() -> None:
    assert lex("$m", macros={"m": 'from any for "dom ain" 25 { a, b }'}) == [
        (W, "from"),
        (W, "any"),
        (W, "for"),
        (S, "dom ain"),
        (N, "25"),
        (P, "{"),
        (W, "a"),
        (P, ","),
        (W, "b"),
        (P, "}"),
        (NL, "\n"),
    ]


def test_macro_expanding_to_a_number() -> None:
    assert lex("port $p", macros={"p": "2525"}) == [(W, "port"), (N, "2525"), (NL, "\n")]


def test_macro_not_expanded_in_quotes() -> None:
    assert words("\"$m\" '$m'", macros={"m": "x"}) == ["$m", "$m"]


def test_dollar_inside_an_expansion_is_not_expanded_again() -> None:
    # "$" cannot start a word, so inside an expansion it is a stray character
    assert words("$a", macros={"a": "$b", "b": "no"}) == ["$", "b"]
    # and expansion resumes normally after the expanded text
    assert words("$a $b", macros={"a": "x$b", "b": "yes"}) == ["x$b", "yes"]


def test_macro_name_ends_at_non_identifier() -> None:
    assert words("$m.example", macros={"m": "mx"}) == ["mx.example"]
    assert words("$m-x", macros={"m": "a"}) == ["a-x"]


def test_undefined_macro_names_file_and_line() -> None:
    err = lex_error("a\nb $nope c")
    assert err.message == "macro 'nope' not defined"
    assert (err.file, err.line) == ("t.conf", 2)
    assert str(err) == "t.conf:2: macro 'nope' not defined"


def test_dollar_at_end_of_file() -> None:
    lexer = Lexer("a $", "t.conf")
    with pytest.raises(ConfigError):
        tokens(lexer)


def test_persistent_macros_survive_redefinition() -> None:
    lexer = Lexer("$m $n", "t.conf", macros={"m": "cmdline"}, persistent=frozenset({"m"}))
    lexer.define("m", "file")
    lexer.define("n", "file")
    assert [t.text for t in tokens(lexer)][:2] == ["cmdline", "file"]


def test_redefinition_without_persistence() -> None:
    lexer = Lexer("$m", "t.conf", macros={"m": "old"})
    lexer.define("m", "new")
    assert tokens(lexer)[0].text == "new"


# -- include -------------------------------------------------------------------------------


def test_include_push_and_pop_with_line_numbers() -> None:
    lexer = Lexer("a\ninclude\nb\n", "main.conf")
    seen: list[tuple[str, str, int]] = []
    while True:
        tok = lexer.next()
        if tok.kind is Tok.EOF:
            break
        if tok.kind is W:
            seen.append((tok.text, tok.file, tok.line))
            if tok.text == "include":
                lexer.push_file("inc.conf", "x\n\ny")
    assert seen == [
        ("a", "main.conf", 1),
        ("include", "main.conf", 2),
        ("x", "inc.conf", 1),
        ("y", "inc.conf", 3),
        ("b", "main.conf", 3),
    ]


def test_include_of_empty_file() -> None:
    lexer = Lexer("a\nb", "main.conf")
    assert lexer.next().text == "a"
    lexer.push_file("empty.conf", "")
    rest = [t for t in tokens(lexer) if t.kind is W]
    assert [(t.text, t.file, t.line) for t in rest] == [("b", "main.conf", 2)]


def test_include_nesting_limit() -> None:
    lexer = Lexer("a", "main.conf")
    with pytest.raises(ConfigError) as info:
        for i in range(100):
            lexer.push_file(f"f{i}", "")
    assert "include nesting too deep" in info.value.message


def test_unterminated_quote_in_include_names_the_include() -> None:
    lexer = Lexer("a\n", "main.conf")
    lexer.next()
    lexer.push_file("inc.conf", 'x\n"open')
    with pytest.raises(ConfigError) as info:
        tokens(lexer)
    assert (info.value.file, info.value.line) == ("inc.conf", 2)


def test_peek_does_not_consume() -> None:
    lexer = Lexer("a b", "t.conf")
    assert lexer.peek(1).text == "b"
    assert lexer.peek().text == "a"
    assert lexer.next().text == "a"
    lexer.skip_line()
    assert lexer.next().kind is Tok.EOF


def test_describe() -> None:
    toks = tokens(Lexer('a "b"', "t.conf"))
    assert [t.describe() for t in toks] == ['"a"', '"b"', "end of line", "end of file"]


# -- quote() writes what the lexer reads back ------------------------------------------------


@given(st.text(alphabet=st.characters(blacklist_characters="\0\x01\x02"), max_size=40))
def test_quote_round_trips_through_the_lexer(value: str) -> None:
    try:
        literal = quote(value)
    except ValueError:
        return  # e.g. a trailing backslash before a space: not expressible in smtpd.conf
    toks = tokens(Lexer(literal, "t.conf"))
    assert toks[0].text == value
    assert [t.kind for t in toks[1:]] == [NL, Tok.EOF]


@pytest.mark.parametrize("value", ["a\\", "a\\b\\", "C:\\"])
def test_quote_trailing_backslash_as_bare_word(value: str) -> None:
    toks = tokens(Lexer(quote(value), "t.conf"))
    assert (toks[0].kind, toks[0].text) == (W, value)


def test_quote_refuses_what_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        quote("a b\\")
