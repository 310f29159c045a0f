"""SASL PLAIN (RFC 4616) and LOGIN decoding for SMTP AUTH (RFC 4954).

Strict base64; identities must be UTF-8 without CR, LF or NUL (OpenSMTPD refuses
CR / LF; a NUL cannot be told apart from a field separator).
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["decode_field", "decode_plain"]


def _b64(text: str) -> bytes | None:
    if text == "=":  # RFC 4954: an empty initial response
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def _identity(raw: bytes) -> str | None:
    if b"\r" in raw or b"\n" in raw or b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_plain(text: str) -> tuple[str, str] | None:
    """``base64(authzid NUL authcid NUL password)`` -> (authcid, password).

    The authorization identity is ignored, as OpenSMTPD does; the user name and
    the password must not be empty."""
    raw = _b64(text)
    if raw is None:
        return None
    parts = raw.split(b"\0")
    if len(parts) != 3:
        return None
    user = _identity(parts[1])
    password = _identity(parts[2])
    if not user or not password or _identity(parts[0]) is None:
        return None
    return user, password


def decode_field(text: str) -> str | None:
    """One base64 LOGIN field (user name or password)."""
    raw = _b64(text)
    if raw is None:
        return None
    return _identity(raw)
