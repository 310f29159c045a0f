"""Tests for mta.delivery.result: the enhanced status code a Result carries."""

from __future__ import annotations

import pytest

from mta.delivery.result import (
    ESC_DELIVERY_TIME_EXPIRED,
    ESC_OTHER_MAIL_SYSTEM_STATUS,
    Outcome,
    Result,
)
from mta.status import StatusCode


def test_defaults() -> None:
    assert (Result.ok().esc, Result.ok().status) == (StatusCode(2, 0, 0), "2.0.0")
    assert Result.tempfail("x").status == "4.3.0"
    assert Result.permfail("x").status == "5.3.0"
    assert Result.tempfail("x").esc == ESC_OTHER_MAIL_SYSTEM_STATUS


@pytest.mark.parametrize(
    "code", [StatusCode(5, 1, 10), StatusCode(5, 7, 350), StatusCode(4, 7, 28)]
)
def test_codes_above_9_are_kept(code: StatusCode) -> None:
    assert Result.permfail("x", code).esc == code.with_class(5)
    assert Result.tempfail("x", code).esc == code.with_class(4)
    assert Result.permfail("x", code).status == f"5.{code.subject}.{code.detail}"


def test_the_class_follows_the_outcome() -> None:
    assert Result.tempfail("x", ESC_DELIVERY_TIME_EXPIRED).status == "4.4.7"
    assert Result.permfail("x", StatusCode(4, 4, 1)).status == "5.4.1"
    with pytest.raises(ValueError, match="does not fit"):
        Result(Outcome.PERMFAIL, "x", StatusCode(4, 4, 1))
    with pytest.raises(ValueError, match="does not fit"):
        Result(Outcome.OK, "x", StatusCode(5, 0, 0))


def test_equality_is_on_the_code_too() -> None:
    assert Result.permfail("x", StatusCode(5, 1, 10)) != Result.permfail("x", StatusCode(5, 1, 1))
    assert Result.permfail("x", StatusCode(5, 1, 10)) == Result.permfail("x", StatusCode(4, 1, 10))
