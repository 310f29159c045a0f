"""Tests for mta.status: RFC 3463 enhanced status codes as one value."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.status import PART_MAX, StatusCode
from tests.spool.strategies import status_codes


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("2.0.0", StatusCode(2, 0, 0)),
        ("5.1.1", StatusCode(5, 1, 1)),
        ("5.1.10", StatusCode(5, 1, 10)),  # RFC 7505 Null MX
        ("5.7.26", StatusCode(5, 7, 26)),  # RFC 7372 DMARC
        ("4.7.28", StatusCode(4, 7, 28)),
        ("5.7.350", StatusCode(5, 7, 350)),
        ("4.999.999", StatusCode(4, 999, 999)),
        ("5.01.001", StatusCode(5, 1, 1)),  # 1*3digit allows leading zeros
    ],
)
def test_parse(text: str, code: StatusCode) -> None:
    assert StatusCode.parse(text) == code


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "5.1",
        "5.1.",
        ".1.1",
        "5..1",
        "5.1.1.1",
        "3.1.1",  # class 2, 4 or 5 only
        "0.0.0",
        "55.1.1",
        "5.1000.1",  # at most 3 digits
        "5.1.1000",
        "5.1.-1",
        "5.+1.1",
        " 5.1.1",
        "5.1.1 ",
        "5.1.1\n",
        "5.1.1\r\nX: y",
        "5.\u0661.1",  # an Arabic-Indic digit is not a digit here
        "5.\uff11.1",  # nor a full-width one
        "5.1.1\x00",
        "5,1,1",
    ],
)
def test_parse_refuses_what_is_not_a_code(text: str) -> None:
    assert StatusCode.parse(text) is None


@given(status_codes)
def test_text_round_trip(code: StatusCode) -> None:
    assert StatusCode.parse(str(code)) == code


@given(st.text(max_size=12))
def test_parse_never_raises_and_gives_valid_codes(text: str) -> None:
    code = StatusCode.parse(text)
    assert code is None or StatusCode.parse(str(code)) == code


def test_str() -> None:
    assert str(StatusCode(5, 1, 10)) == "5.1.10"
    assert str(StatusCode(5, 7, 350)) == "5.7.350"
    assert f"{StatusCode(4, 4, 1)}" == "4.4.1"


@pytest.mark.parametrize(
    ("class_", "subject", "detail"),
    [
        (3, 1, 1),
        (0, 0, 0),
        (5, -1, 0),
        (5, 0, -1),
        (5, PART_MAX + 1, 0),
        (5, 0, PART_MAX + 1),
        (5, True, 0),
        (5, 1.0, 0),
        ("5", 1, 1),
    ],
)
def test_constructor_refuses_what_cannot_be_written(class_: Any, subject: Any, detail: Any) -> None:
    with pytest.raises(ValueError, match="status code"):
        StatusCode(class_, subject, detail)


def test_with_class() -> None:
    code = StatusCode(5, 7, 350)
    assert code.with_class(4) == StatusCode(4, 7, 350)
    assert code.with_class(5) is code
    with pytest.raises(ValueError):
        code.with_class(3)


def test_frozen_and_hashable() -> None:
    code = StatusCode(5, 1, 10)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        code.detail = 1  # type: ignore[misc]
    assert {code, StatusCode(5, 1, 10)} == {code}
    assert code != StatusCode(5, 1, 1)
