"""Tests for mta.rules.rejection: the replies given when a recipient is refused."""

from __future__ import annotations

import pytest

from mta.envelope import Address
from mta.errors import PermanentFailure, TemporaryFailure
from mta.reply import Reply
from mta.rules.rejection import (
    RecipientDeferred,
    RecipientRefused,
    RecipientRejected,
    error_reply,
    expansion_failure,
    invalid_recipient,
    temporary_failure,
)

RCPT = Address("Bob", "example.com")


def test_standard_replies() -> None:
    assert invalid_recipient(RCPT).encode() == b"550 5.1.1 Invalid recipient: <Bob@example.com>\r\n"
    assert temporary_failure(RCPT).encode() == b"451 4.3.0 Temporary failure: <Bob@example.com>\r\n"
    assert expansion_failure(RCPT, temporary=False) == Reply.of(
        524, "5.2.4", "Mailing list expansion problem: <Bob@example.com>"
    )
    assert expansion_failure(RCPT, temporary=True) == Reply.of(
        424, "4.2.4", "Mailing list expansion problem: <Bob@example.com>"
    )
    assert invalid_recipient(Address("bob", "")).lines == ("Invalid recipient: <bob>",)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (550, "5.1.6 moved", Reply.of(550, "5.1.6", "moved: <Bob@example.com>")),
        (550, "no such list", Reply.of(550, "5.0.0", "no such list: <Bob@example.com>")),
        (451, "4.3.2 busy now", Reply.of(451, "4.3.2", "busy now: <Bob@example.com>")),
        (451, "5.3.2 mismatch", Reply.of(451, "4.0.0", "5.3.2 mismatch: <Bob@example.com>")),
        (550, "5.1.1", Reply.of(550, "5.1.1", "<Bob@example.com>")),
        (550, "5.1.10x odd", Reply.of(550, "5.0.0", "5.1.10x odd: <Bob@example.com>")),
    ],
)
def test_error_reply(code: int, message: str, expected: Reply) -> None:
    assert error_reply(code, message, RCPT) == expected


def test_error_classes() -> None:
    refused = RecipientRejected.of(invalid_recipient(RCPT), "no rule")
    assert isinstance(refused, RecipientRefused) and isinstance(refused, PermanentFailure)
    assert refused.reason == "no rule" and str(refused) == "no rule"
    deferred = RecipientRejected.of(temporary_failure(RCPT))
    assert isinstance(deferred, RecipientDeferred) and isinstance(deferred, TemporaryFailure)
    assert deferred.reply.code == 451
    assert deferred.reason == "451 4.3.0 Temporary failure: <Bob@example.com>"
