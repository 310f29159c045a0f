"""Log values: nothing a client sends can forge a log line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mta.log import _escaped, quote, visible


def test_visible_escapes_controls() -> None:
    assert visible("a\r\nb\tc\x00") == "a\\r\\nb\\tc\\000"
    assert visible("back\\slash") == "back\\\\slash"
    assert visible("x" * 300, limit=5) == "xxxxx..."


def test_quote() -> None:
    assert quote('say "hi"\n') == '"say \\"hi\\"\\n"'


@given(st.text(max_size=40), st.integers(min_value=0, max_value=50))
def test_visible_fast_path_agrees_with_escaping(text: str, limit: int) -> None:
    assert visible(text, limit) == _escaped(text, limit)
