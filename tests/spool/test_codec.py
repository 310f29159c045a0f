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
from mta.spool.codec import FORMAT_VERSION, decode_envelope, encode_envelope
from mta.status import StatusCode
from tests.envelopes import make_envelope

from .strategies import envelopes

ENVELOPE = make_envelope(msgid=0x12345678, id=0x12345678_9ABCDEF0)


def frame(doc: dict[str, Any], version: int = FORMAT_VERSION) -> bytes:
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
    match = re.fullmatch(rb"MTA-ENVELOPE 2 (\d+)\n(.*)\nEND ([0-9a-f]{64})\n", data, re.S)
    assert match is not None
    body = match.group(2)
    assert int(match.group(1)) == len(body)
    assert match.group(3).decode() == hashlib.sha256(body).hexdigest()
    doc = json.loads(body)
    assert doc["version"] == 2
    assert doc["esc"] is None
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
    with pytest.raises(CorruptEnvelope, match="unknown format version 3"):
        decode_envelope(frame(doc, version=3))
    for stated in (3, 1, True, 2.0, "2"):  # the header says 2: the document must too
        doc["version"] = stated
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
        ("esc", "5.1.1000"),
        ("esc", "5.1"),
        ("esc", "3.0.0"),
        ("esc", " 5.1.1"),
        ("esc", "5.1.1\n"),
        ("esc", "5.\u0661.1"),
        ("esc", ""),
        ("esc", 511),
        ("esc", [5, 1, 1]),
        ("esc_class", 4),  # a version 1 field in a version 2 document
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


# --------------------------------------------------------------------------
# Enhanced status codes, and envelopes written in format version 1


@pytest.mark.parametrize(
    "code",
    [StatusCode(5, 1, 10), StatusCode(5, 7, 350), StatusCode(4, 7, 28), StatusCode(2, 999, 999)],
)
def test_status_codes_above_9_round_trip(code: StatusCode) -> None:
    envelope = attrs.evolve(ENVELOPE, esc=code, errorline=f"550 {code} policy")
    data = encode_envelope(envelope)
    assert b'"esc":"%s"' % str(code).encode() in data
    back = decode_envelope(data)
    assert back == envelope
    assert back.esc == code and str(back.esc) == str(code)


# Written by mta before format version 2 (encode_envelope at commit 60d5e3d), byte for byte.
VERSION_1_FILE = (
    b"MTA-ENVELOPE 1 659\n"
    b'{"body":"","bounce_delay":0,"bounce_type":"","ctime":1700000000,"dest":["bob",'
    b'"example.org"],"dispatcher":"relay","dsn_envid":"","dsn_notify":[],'
    b'"dsn_orcpt":"","dsn_ret":"","errorline":"421 4.4.2 mx.example.org: timeout",'
    b'"esc_class":4,"esc_code":42,"flags":[],"helo":"client.example.com",'
    b'"hostname":"client.example.com","id":1311768467463790320,"kind":"mta",'
    b'"last_bounce":0,"last_try":1700000600,"mda_exec":"","mda_subaddress":"",'
    b'"mda_user":"","msgid":305419896,"node":"user","rcpt":["bob","example.org"],'
    b'"retry":2,"sender":["alice","example.com"],"smtpname":"mx.example.net",'
    b'"smtputf8":false,"sockaddr":"192.0.2.7","tag":"","ttl":0,"username":"",'
    b'"version":1}\n'
    b"END 6aa1da9c4c5a38b03faaba8170e29442815f56a92b40f531886a3f65c76651c5\n"
)


def test_a_version_1_file_is_read() -> None:
    envelope = decode_envelope(VERSION_1_FILE)
    assert envelope == attrs.evolve(
        ENVELOPE,
        retry=2,
        last_try=1_700_000_600,
        errorline="421 4.4.2 mx.example.org: timeout",
        esc=StatusCode(4, 4, 2),
    )
    again = encode_envelope(envelope)  # written back (updated) in the current format
    assert again.startswith(b"MTA-ENVELOPE 2 ") and b'"esc":"4.4.2"' in again
    assert decode_envelope(again) == envelope


@pytest.mark.parametrize(
    ("esc_class", "esc_code", "esc"),
    [
        (0, 0, None),  # never failed
        (4, 30, StatusCode(4, 3, 0)),
        (5, 11, StatusCode(5, 1, 1)),
        (4, 7, StatusCode(4, 0, 7)),
        (2, 0, StatusCode(2, 0, 0)),
        (4, 100, StatusCode(4, 0, 0)),  # out of range: no code, the class kept
        (4, -1, StatusCode(4, 0, 0)),
        (0, 42, None),
        (7, 11, None),
        (None, None, None),  # fields absent: the defaults
    ],
)
def test_version_1_status_fields(
    esc_class: int | None, esc_code: int | None, esc: StatusCode | None
) -> None:
    doc = document()
    del doc["esc"]
    if esc_class is not None:
        doc["esc_class"], doc["esc_code"] = esc_class, esc_code
    doc["version"] = 1
    assert decode_envelope(frame(doc, version=1)) == attrs.evolve(ENVELOPE, esc=esc)


@pytest.mark.parametrize(
    ("field", "value"), [("esc_class", "4"), ("esc_code", 4.2), ("esc_class", True)]
)
def test_version_1_bad_status_fields_are_rejected(field: str, value: Any) -> None:
    doc = document()
    del doc["esc"]
    doc.update(esc_class=4, esc_code=42, version=1)
    doc[field] = value
    with pytest.raises(CorruptEnvelope, match=field):
        decode_envelope(frame(doc, version=1))


def test_version_1_has_no_esc_field() -> None:
    doc = document()
    doc.update(esc="4.4.2", version=1)
    with pytest.raises(CorruptEnvelope, match="unknown fields"):
        decode_envelope(frame(doc, version=1))
