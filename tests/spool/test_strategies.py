"""The envelope strategy sets every field of Envelope (so round trips cover them all)."""

from __future__ import annotations

import attrs
from hypothesis import given, settings

from mta.envelope import Envelope

from .strategies import envelopes


def test_every_field_is_drawn_with_several_values() -> None:
    seen: dict[str, set[str]] = {}

    @settings(max_examples=200, database=None)
    @given(envelopes())
    def collect(envelope: Envelope) -> None:
        for field in attrs.fields(Envelope):
            seen.setdefault(field.name, set()).add(repr(getattr(envelope, field.name)))

    collect()
    assert set(seen) == {field.name for field in attrs.fields(Envelope)}
    assert [name for name, values in seen.items() if len(values) < 2] == []
