"""The envelope file format: round trips, framing, and strict rejection."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.envelope import Address, DsnNotify, Envelope, EnvelopeFlag
from mta.errors import CorruptEnvelope
from mta.spool.codec import decode_envelope, encode_envelope

from .conftest import make_envelope
from .strategies import envelopes

ENVELOPE = make_envelope(msgid=0x12345678, id=0x12345678_9ABCDEF0)


def frame(doc: dict[str, Any], version: int = 1) -> bytes:
    """A well-framed file around any JSON document (to test the checks behind the framing)."""
    body = json.dumps(doc).encode()
    digest = hashlib.sha256(body).hexdigest().encode()
    return b"MTA-ENVELOPE %d %d\n%s\nEND %s\n" % (version, len(body), body, digest)


def document(envelope: Envelope = ENVELOPE) -> dict[str, Any]:
    data = encode_envelope(envelope)
    _header, body, _end = data.split(b"\n", 2)
    result: dict[str, Any] = json.loads(body)
    return result


@settings(max_examples=300)
@given(envelopes())
def test_round_trip_every_field(envelope: Envelope) -> None:
    data = encode_envelope(envelope)
    assert decode_envelope(data) == envelope
    assert data.isascii()
    assert data.count(b"\n") == 3  # no client value can add a line
    assert b"\r" not in data and b"\0" not in data


def test_layout() -> None:
    data = encode_envelope(ENVELOPE)
    match = re.fullmatch(rb"MTA-ENVELOPE 1 (\d+)\n(.*)\nEND ([0-9a-f]{64})\n", data, re.S)
    assert match is not None
    body = match.group(2)
    assert int(match.group(1)) == len(body)
    assert match.group(3).decode() == hashlib.sha256(body).hexdigest()
    doc = json.loads(body)
    assert doc["version"] == 1
    assert doc["id"] == 0x12345678_9ABCDEF0
    assert doc["sender"] == ["alice", "example.com"]
    assert set(doc) == {"version", *(field.name for field in attrs.fields(Envelope))}


def test_flags_are_stored_by_name() -> None:
    envelope = attrs.evolve(
        ENVELOPE,
        flags=EnvelopeFlag.AUTHENTICATED | EnvelopeFlag.INTERNAL,
        dsn_notify=DsnNotify.SUCCESS | DsnNotify.DELAY,
    )
    doc = document(envelope)
    assert doc["flags"] == ["authenticated", "internal"]
    assert doc["dsn_notify"] == ["delay", "success"]
    assert decode_envelope(encode_envelope(envelope)) == envelope


def test_injection_attempt_stays_inside_its_field() -> None:
    evil = 'x\r\nEND 0000\nMTA-ENVELOPE 1 2\n"dispatcher":"root"\0'
    envelope = attrs.evolve(ENVELOPE, helo=evil, rcpt=Address(evil, "example.org"))
    back = decode_envelope(encode_envelope(envelope))
    assert back.helo == evil
    assert back.rcpt.local == evil
    assert back.dispatcher == "relay"


def test_unassigned_envelopes_are_not_encoded() -> None:
    with pytest.raises(ValueError, match="not assigned"):
        encode_envelope(make_envelope())
    with pytest.raises(ValueError, match="not assigned"):
        encode_envelope(attrs.evolve(ENVELOPE, id=0x1111111100000001))
    with pytest.raises(ValueError, match="zero"):
        encode_envelope(attrs.evolve(ENVELOPE, id=0x12345678_00000000))


@settings(max_examples=100)
@given(st.data())
def test_any_single_byte_change_is_rejected(data: st.DataObject) -> None:
    original = encode_envelope(ENVELOPE)
    position = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda byte: byte != original[position]))
    tampered = original[:position] + bytes([value]) + original[position + 1 :]
    with pytest.raises(CorruptEnvelope):
        decode_envelope(tampered)


def test_truncated_and_extended_files_are_rejected() -> None:
    original = encode_envelope(ENVELOPE)
    for size in range(len(original)):
        with pytest.raises(CorruptEnvelope):
            decode_envelope(original[:size])
    for extra in (b"\n", b"x", original):
        with pytest.raises(CorruptEnvelope):
            decode_envelope(original + extra)


def test_unknown_format_version_is_rejected() -> None:
    doc = document()
    with pytest.raises(CorruptEnvelope, match="unknown format version 2"):
        decode_envelope(frame(doc, version=2))
    doc["version"] = 2
    with pytest.raises(CorruptEnvelope, match="version"):
        decode_envelope(frame(doc))
    del doc["version"]
    with pytest.raises(CorruptEnvelope, match="version"):
        decode_envelope(frame(doc))


def test_well_framed_document_round_trips() -> None:
    assert decode_envelope(frame(document())) == ENVELOPE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("msgid", 0),
        ("msgid", 1 << 32),
        ("msgid", "12345678"),
        ("id", True),
        ("id", 1 << 64),
        ("ctime", 1.5),
        ("ctime", True),
        ("ctime", 1 << 63),
        ("retry", None),
        ("helo", 7),
        ("helo", None),
        ("smtputf8", 1),
        ("sender", "alice@example.com"),
        ("sender", ["alice"]),
        ("sender", ["alice", 3]),
        ("kind", "smtp"),
        ("kind", "MTA"),
        ("body", 8),
        ("flags", "authenticated"),
        ("flags", ["authenticated", "authenticated"]),
        ("flags", ["root"]),
        ("dsn_notify", [1]),
    ],
)
def test_bad_values_are_rejected(field: str, value: Any) -> None:
    doc = document()
    doc[field] = value
    with pytest.raises(CorruptEnvelope, match=field):
        decode_envelope(frame(doc))


def test_id_of_another_message_is_rejected() -> None:
    doc = document()
    doc["id"] = 0x11111111_00000001
    with pytest.raises(CorruptEnvelope, match="does not belong"):
        decode_envelope(frame(doc))


def test_unknown_field_is_rejected() -> None:
    doc = document()
    doc["deliver_to"] = "/bin/sh"
    with pytest.raises(CorruptEnvelope, match="unknown fields"):
        decode_envelope(frame(doc))


def test_missing_field_takes_the_default_or_is_rejected() -> None:
    doc = document()
    del doc["errorline"]
    assert decode_envelope(frame(doc)) == ENVELOPE
    del doc["helo"]
    with pytest.raises(CorruptEnvelope, match="'helo' missing"):
        decode_envelope(frame(doc))


@pytest.mark.parametrize(
    "body",
    [
        b'{"version": 1, "version": 1}',
        b"[1, 2]",
        b'{"version": 1, "ctime": NaN}',
        b"\xff\xfe",
        b"{" * 100000,
        b"not json",
    ],
)
def test_bad_json_is_rejected(body: bytes) -> None:
    digest = hashlib.sha256(body).hexdigest().encode()
    data = b"MTA-ENVELOPE 1 %d\n%s\nEND %s\n" % (len(body), body, digest)
    with pytest.raises(CorruptEnvelope):
        decode_envelope(data)


def test_oversized_file_is_rejected() -> None:
    with pytest.raises(CorruptEnvelope, match="too large"):
        decode_envelope(b"MTA-ENVELOPE 1 1\n" + b" " * (1 << 20))
