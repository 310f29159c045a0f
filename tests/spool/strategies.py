"""Hypothesis strategies for spooled envelopes (every field, any value the codec allows)."""

from __future__ import annotations

import enum
import functools
import operator
from typing import Any, TypeVar

from hypothesis import strategies as st

from mta.envelope import (
    Address,
    Body,
    DeliveryNode,
    DsnNotify,
    DsnRet,
    Envelope,
    EnvelopeFlag,
    EnvelopeKind,
)
from mta.status import CLASSES, PART_MAX, StatusCode

F = TypeVar("F", bound=enum.Flag)

# Any code point, lone surrogates and control characters included.
any_text = st.text(st.characters(blacklist_categories=()), max_size=40)
i64 = st.integers(-(1 << 63), (1 << 63) - 1)
addresses = st.builds(Address, any_text, any_text)
status_parts = st.integers(0, PART_MAX)
status_codes = st.builds(StatusCode, st.sampled_from(CLASSES), status_parts, status_parts)


def flags(cls: type[F]) -> st.SearchStrategy[F]:
    members = [member for member in cls if member.value]
    return st.sets(st.sampled_from(members)).map(
        lambda chosen: functools.reduce(operator.or_, chosen, cls(0))
    )


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    msgid = draw(st.integers(1, (1 << 32) - 1))
    low = draw(st.integers(1, (1 << 32) - 1))
    values: dict[str, Any] = {
        "msgid": msgid,
        "id": msgid << 32 | low,
        "kind": draw(st.sampled_from(EnvelopeKind)),
        "flags": draw(flags(EnvelopeFlag)),
        "node": draw(st.sampled_from(DeliveryNode)),
        "dsn_notify": draw(flags(DsnNotify)),
        "dsn_ret": draw(st.sampled_from(DsnRet)),
        "body": draw(st.sampled_from(Body)),
        "smtputf8": draw(st.booleans()),
        "sender": draw(addresses),
        "rcpt": draw(addresses),
        "dest": draw(addresses),
    }
    for name in (
        "dispatcher", "smtpname", "helo", "hostname", "sockaddr", "tag", "username",
        "mda_user", "mda_exec", "mda_subaddress", "dsn_envid", "dsn_orcpt", "errorline",
        "bounce_type",
    ):  # fmt: skip
        values[name] = draw(any_text)
    for name in (
        "ctime", "ttl", "retry", "last_try", "last_bounce", "bounce_delay",
    ):  # fmt: skip
        values[name] = draw(i64)
    values["esc"] = draw(st.none() | status_codes)
    return Envelope(**values)
