"""The envelope file format: an :class:`~mta.envelope.Envelope` as bytes and back.

Never ``key: value`` lines (a CR/LF from a client could forge a field, as in
Exim CVE-2020-28021 and OpenSMTPD CVE-2020-8794).  A file is exactly::

    MTA-ENVELOPE <format version> <length>\\n
    <length bytes of ASCII JSON: {"version": <format version>, <field>: <value>, ...}>\\n
    END <sha-256 of the JSON, lowercase hex>\\n

JSON escapes every control character and ``ensure_ascii`` keeps the body
ASCII, the explicit length and the END line catch truncation and appended
bytes, and the digest catches flipped bits.  Loading is strict: an unknown
version, an unknown field, a value of the wrong type or range, or any framing
error raises :class:`~mta.errors.CorruptEnvelope`.  A field missing from the
file takes the Envelope default (so fields can be added without a new
version); a field without a default must be present.

Versions: 2 (written) stores the enhanced status code of the last failure as
its text, ``"esc": "5.1.10"`` (or ``null``).  1 (read, so a spool written
before keeps working) stored it as OpenSMTPD does, ``"esc_class": 4,
"esc_code": 42`` (``subject * 10 + detail``, one digit each; class 0: none);
:func:`_from_version_1` turns that into the version 2 field.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import attrs

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
from mta.errors import CorruptEnvelope
from mta.status import CLASSES, StatusCode

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_SIZE",
    "READABLE_VERSIONS",
    "decode_envelope",
    "encode_envelope",
]

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAGIC = b"MTA-ENVELOPE "
MAX_SIZE = 1 << 20  # an envelope is small; anything larger is not one of ours
_HEADER = re.compile(rb"MTA-ENVELOPE ([1-9][0-9]{0,3}) ([1-9][0-9]{0,7})\n")
_TRAILER = re.compile(rb"\nEND ([0-9a-f]{64})\n")
_I64 = 1 << 63

attrs.resolve_types(Envelope)
_FIELDS = {field.name: field for field in attrs.fields(Envelope)}


def _check(ok: bool, name: str, value: object) -> None:
    if not ok:
        raise CorruptEnvelope(f"envelope field {name!r}: bad value {value!r:.80}")


def _dump_int(value: Any) -> Any:
    return int(value)


def _load_int(name: str, value: Any) -> int:
    _check(type(value) is int and -_I64 <= value < _I64, name, value)
    return int(value)


def _load_u32(name: str, value: Any) -> int:
    _check(type(value) is int and 0 < value < 1 << 32, name, value)
    return int(value)


def _load_u64(name: str, value: Any) -> int:
    _check(type(value) is int and 0 < value < 1 << 64, name, value)
    return int(value)


def _load_str(name: str, value: Any) -> str:
    _check(type(value) is str, name, value)
    return str(value)


def _load_bool(name: str, value: Any) -> bool:
    _check(type(value) is bool, name, value)
    return bool(value)


def _dump_address(value: Any) -> Any:
    assert isinstance(value, Address)
    return [value.local, value.domain]


def _load_address(name: str, value: Any) -> Address:
    _check(
        type(value) is list and len(value) == 2 and all(type(part) is str for part in value),
        name,
        value,
    )
    return Address(value[0], value[1])


def _dump_status(value: Any) -> Any:
    assert value is None or isinstance(value, StatusCode)
    return None if value is None else str(value)


def _load_status(name: str, value: Any) -> StatusCode | None:
    if value is None:
        return None
    _check(type(value) is str, name, value)
    code = StatusCode.parse(value)
    _check(code is not None, name, value)
    return code


def _enum_codec(cls: type[enum.Enum]) -> tuple[Callable[[Any], Any], Callable[[str, Any], Any]]:
    by_value = {member.value: member for member in cls}

    def load(name: str, value: Any) -> Any:
        _check(type(value) is str and value in by_value, name, value)
        return by_value[value]

    return (lambda value: value.value), load


def _flag_codec(cls: type[enum.Flag]) -> tuple[Callable[[Any], Any], Callable[[str, Any], Any]]:
    by_name = {member.name.lower(): member for member in cls if member.value and member.name}

    def dump(value: Any) -> Any:
        return sorted(name for name, member in by_name.items() if member in value)

    def load(name: str, value: Any) -> Any:
        _check(type(value) is list, name, value)
        result = cls(0)
        seen = set()
        for item in value:
            _check(type(item) is str and item in by_name and item not in seen, name, value)
            seen.add(item)
            result |= by_name[item]
        return result

    return dump, load


_Codec = tuple[Callable[[Any], Any], Callable[[str, Any], Any]]
_BY_TYPE: dict[object, _Codec] = {
    int: (_dump_int, _load_int),
    str: (str, _load_str),
    bool: (bool, _load_bool),
    Address: (_dump_address, _load_address),
    EnvelopeKind: _enum_codec(EnvelopeKind),
    DsnRet: _enum_codec(DsnRet),
    Body: _enum_codec(Body),
    DeliveryNode: _enum_codec(DeliveryNode),
    EnvelopeFlag: _flag_codec(EnvelopeFlag),
    DsnNotify: _flag_codec(DsnNotify),
}
_SPECIAL: dict[str, _Codec] = {
    "msgid": (_dump_int, _load_u32),
    "id": (_dump_int, _load_u64),
    "esc": (_dump_status, _load_status),
}


def _codec(name: str) -> _Codec:
    if name in _SPECIAL:
        return _SPECIAL[name]
    return _BY_TYPE[_FIELDS[name].type]


_CODECS = {name: _codec(name) for name in _FIELDS}  # fails at import if a field type is new


# one encoder for every envelope (json.dumps with options makes a new one per call)
_ENCODER = json.JSONEncoder(ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def encode_envelope(envelope: Envelope) -> bytes:
    """The file content of a spooled envelope (its ids must be assigned)."""
    if not 0 < envelope.msgid < 1 << 32 or envelope.id >> 32 != envelope.msgid:
        raise ValueError(f"envelope ids not assigned: msgid={envelope.msgid} id={envelope.id}")
    if envelope.id & 0xFFFFFFFF == 0:
        raise ValueError(f"envelope id {envelope.id:016x} has a zero random part")
    doc: dict[str, Any] = {"version": FORMAT_VERSION}
    for name, (dump, _load) in _CODECS.items():
        doc[name] = dump(getattr(envelope, name))
    body = _ENCODER.encode(doc).encode()
    digest = hashlib.sha256(body).hexdigest().encode()
    return b"%s%d %d\n%s\nEND %s\n" % (MAGIC, FORMAT_VERSION, len(body), body, digest)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise CorruptEnvelope("envelope: duplicate field")
    return doc


def _no_constant(text: str) -> Any:
    raise CorruptEnvelope(f"envelope: {text} is not allowed")


# one decoder for every envelope (json.loads with hooks makes a new one per call)
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def _from_version_1(doc: dict[str, Any]) -> dict[str, Any]:
    """A version 1 document as version 2: ``esc_class`` / ``esc_code`` become
    ``esc``.  Version 1 took any integers there; mta wrote class 0 (no failure
    yet) or 4 with a code of 0-99, so a class other than 2, 4, 5 reads as no
    code and a code out of range as x.0.0 rather than making the envelope
    corrupt."""
    if "esc" in doc:
        raise CorruptEnvelope("envelope: unknown fields ['esc']")
    esc_class = _load_int("esc_class", doc.pop("esc_class", 0))
    esc_code = _load_int("esc_code", doc.pop("esc_code", 0))
    if esc_class in CLASSES:
        subject, detail = divmod(esc_code, 10) if 0 <= esc_code <= 99 else (0, 0)
        doc["esc"] = str(StatusCode(esc_class, subject, detail))
    return doc


def decode_envelope(data: bytes) -> Envelope:
    """Parse an envelope file; raise :class:`CorruptEnvelope` on anything unexpected."""
    if len(data) > MAX_SIZE:
        raise CorruptEnvelope("envelope: file too large")
    header = _HEADER.match(data)
    if header is None:
        raise CorruptEnvelope("envelope: bad header")
    version = int(header.group(1))
    if version not in READABLE_VERSIONS:
        raise CorruptEnvelope(f"envelope: unknown format version {version}")
    start = header.end()
    end = start + int(header.group(2))
    body = data[start:end]
    trailer = _TRAILER.fullmatch(data, end)
    if len(body) != end - start or trailer is None:
        raise CorruptEnvelope("envelope: truncated or no END marker")
    if hashlib.sha256(body).hexdigest().encode() != trailer.group(1):
        raise CorruptEnvelope("envelope: checksum mismatch")
    try:
        doc = _DECODER.decode(body.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptEnvelope(f"envelope: bad JSON: {exc}") from None
    if type(doc) is not dict:
        raise CorruptEnvelope("envelope: not an object")
    stated = doc.pop("version", None)
    if type(stated) is not int or stated != version:
        raise CorruptEnvelope("envelope: version field missing or wrong")
    if version == 1:
        doc = _from_version_1(doc)
    unknown = set(doc) - _CODECS.keys()
    if unknown:
        raise CorruptEnvelope(f"envelope: unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, (_dump, load) in _CODECS.items():
        if name in doc:
            values[name] = load(name, doc[name])
        elif _FIELDS[name].default is attrs.NOTHING:
            raise CorruptEnvelope(f"envelope: field {name!r} missing")
    envelope = Envelope(**values)
    if envelope.id >> 32 != envelope.msgid or envelope.id & 0xFFFFFFFF == 0:
        raise CorruptEnvelope(
            f"envelope: id {envelope.id:016x} does not belong to message {envelope.msgid:08x}"
        )
    return envelope
