"""Log values: nothing a client sends can forge a log line."""

from __future__ import annotations

from mta.log import quote, visible


def test_visible_escapes_controls() -> None:
    assert visible("a\r\nb\tc\x00") == "a\\r\\nb\\tc\\000"
    assert visible("back\\slash") == "back\\\\slash"
    assert visible("x" * 300, limit=5) == "xxxxx..."


def test_quote() -> None:
    assert quote('say "hi"\n') == '"say \\"hi\\"\\n"'
