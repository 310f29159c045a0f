"""Sizes (``35M``) and delays (``4d``) as smtpd.conf writes them.

``parse_size`` follows OpenBSD's scan_scaled(3): a decimal number with an
optional fraction and an optional unit B, K, M, G, T, P or E (powers of 1024,
either case).  ``parse_delay`` follows OpenSMTPD's ``delaytonum``: a positive
integer followed by exactly one of ``s``, ``m``, ``h`` or ``d``.  Both return
None for anything else, and the callers word the error.  ``format_delay`` and
``format_size`` write values back in the shortest exact form.
"""

from __future__ import annotations

import re

__all__ = ["format_delay", "format_size", "parse_delay", "parse_size"]

INT_MAX = 2**31 - 1
LLONG_MAX = 2**63 - 1
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    "p": 1 << 50,
    "e": 1 << 60,
}
_SIZE = re.compile(r"[ \t]*([-+]?)(\d+)(?:\.(\d+))?([bBkKmMgGtTpPeE]?)")
_DELAY_FACTORS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DELAY_NUMBER = re.compile(r"[ \t\n\v\f\r]*[-+]?\d+")


def parse_size(text: str) -> int | None:
    """Bytes for a scan_scaled string, or None when it is not a valid size."""
    m = _SIZE.fullmatch(text)
    if m is None:
        return None
    sign, whole, frac, unit = m.groups()
    scale = _UNITS[unit.lower()]
    value = int(whole) * scale
    if frac:
        value += int(frac) * scale // 10 ** len(frac)
    if sign == "-":
        value = -value
    if value < 0 or value > LLONG_MAX:
        return None
    return value


def parse_delay(text: str) -> int | None:
    """Seconds for ``<n>s|m|h|d``, or None when it is not a valid delay."""
    if len(text) < 2 or text[-1] not in _DELAY_FACTORS:
        return None
    factor = _DELAY_FACTORS[text[-1]]
    number = text[:-1]
    if not _DELAY_NUMBER.fullmatch(number):
        return None
    value = int(number)
    if not 1 <= value <= INT_MAX // factor:
        return None
    return value * factor


def format_delay(seconds: int) -> str:
    """The shortest exact delay spelling: ``4d``, ``90m``, ``45s``."""
    for unit in ("d", "h", "m"):
        factor = _DELAY_FACTORS[unit]
        if seconds % factor == 0 and seconds // factor <= INT_MAX // factor:
            return f"{seconds // factor}{unit}"
    return f"{seconds}s"


def format_size(size: int) -> str:
    """A size as a plain number of bytes (always re-parses to the same value)."""
    return str(size)
