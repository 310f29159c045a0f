"""The Sender Rewriting Scheme as OpenSMTPD writes and reads it (``srs.c``), sans-IO.

When a relay action has ``srs`` and mail that was forwarded leaves for
another domain, its sender is rewritten so that the receiving side's SPF
check sees our domain, and a bounce finds its way back:

- ``alice@example.org`` forwarded to a domain ``rcpt.test`` becomes
  ``SRS0=HHHH=TT=example.org=alice@rcpt.test``;
- an ``SRS0=`` sender forwarded again becomes
  ``SRS1=HHHH=<its domain>==<its SRS0 local part, without "SRS0">@rcpt.test``;
- an ``SRS1=`` sender keeps its chain; only the hash is recomputed.

``TT`` is the day number (days since the epoch, modulo 1024) in two base32
characters; ``HHHH`` is the first four characters of the URL-safe base64 of
SHA-1(key + the rest of the address after ``HHHH=``) -- a plain hash of the
concatenation, as OpenSMTPD computes it, so addresses written by one are
read by the other.  Inbound, a bounce to an ``SRS0=``/``SRS1=`` address is
decoded back to the address it stands for when its hash matches the key (or
the backup key, for key rotation) and, for SRS0, its day is within ``srs
ttl`` days in the past (or one day in the future).  Anything that does not
check out decodes to None.  Times are passed in.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = [
    "BASE32",
    "MAX_ADDRESS",
    "relay_sender",
    "srs_decode",
    "srs_encode",
    "srs_timestamp",
]

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
MAX_ADDRESS = 511  # OpenSMTPD's SMTPD_MAXMAILADDRSIZE, its terminating NUL excluded
_MAX_PART = 255  # struct mailaddr: user[256], domain[256]
_DAY = 86400
_PERIOD = 1024


def srs_timestamp(now: float) -> int:
    """The 10-bit day number of ``now``."""
    return int(now // _DAY) % _PERIOD


def _stamp_text(stamp: int) -> str:
    return BASE32[(stamp >> 5) & 0x1F] + BASE32[stamp & 0x1F]


def _hash(key: str, value: str) -> str:
    digest = hashlib.sha1(key.encode("utf-8") + value.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:4]


def _split(address: str) -> tuple[str, str] | None:
    """``text_to_mailaddr``: (user, domain) split at the last ``@``; None when a
    part does not fit."""
    user, at, domain = address.rpartition("@")
    if not at:
        user, domain = address, ""
    if len(user) > _MAX_PART or len(domain) > _MAX_PART:
        return None
    return user, domain


def _fits(result: str, fallback: str) -> str:
    return result if len(result) <= MAX_ADDRESS else fallback


def srs_encode(sender: str, rcpt_domain: str, key: str, now: float) -> str:
    """The SRS form of ``sender`` for mail forwarded to ``rcpt_domain``; the
    sender unchanged when it cannot be rewritten (too long, malformed SRS1)."""
    prefix = sender[:5].upper()
    if prefix == "SRS0=":
        parts = _split(sender[5:])
        if parts is None:
            return sender
        user, domain = parts
        rest = f"{domain}=={user}@{rcpt_domain}"
        return _fits(f"SRS1={_hash(key, rest)}={rest}", sender)
    if prefix == "SRS1=":
        parts = _split(sender[5:])
        if parts is None:
            return sender
        user, _domain = parts
        chain = f"{user}@{rcpt_domain}"
        if len(chain) < 5 or chain[4] not in "=+-":
            return sender
        rest = chain[5:]  # the previous hop's HHHH and delimiter dropped
        return _fits(f"SRS1={_hash(key, rest)}={rest}", sender)
    parts = _split(sender)
    if parts is None:
        return sender
    user, domain = parts
    rest = f"{_stamp_text(srs_timestamp(now))}={domain}={user}@{rcpt_domain}"
    return _fits(f"SRS0={_hash(key, rest)}={rest}", sender)


def relay_sender(sender: str, rcpt: str, dest: str, key: str | None, now: float) -> str:
    """The MAIL FROM address of a relayed envelope of an ``srs`` action
    (OpenSMTPD's ``mta_enter_state(MTA_MAIL)``): rewritten only when a key is
    set, the sender is not ``<>`` (it has an ``@``) and the envelope was
    forwarded (its original recipient differs from its destination), in the
    domain of that original recipient -- ours, where a bounce comes back."""
    if key is None or "@" not in sender or rcpt == dest or "@" not in rcpt:
        return sender
    return srs_encode(sender, rcpt.split("@", 1)[1], key, now)


def _in_range(today: int, stamp: int, ttl_days: int) -> bool:
    """OpenSMTPD's ``timestamp_check_range``: ``stamp`` is at most ``ttl_days``
    before ``today`` or at most one day after it, modulo 1024."""
    if stamp == today:
        return True
    if today > ttl_days:
        before = today - ttl_days <= stamp <= today
    else:
        before = stamp <= today or stamp >= _PERIOD - (ttl_days - today)
    if today + 1 < _PERIOD:
        after = today <= stamp <= today + 1
    else:
        after = stamp >= today or stamp <= (today + 1) % _PERIOD
    return before or after


def _checked(rest: str, keys: tuple[str, ...]) -> str | None:
    """``rest`` is ``HHHH?...``: what follows the hash and its delimiter, when
    the hash matches one of the keys."""
    if len(rest) < 5:
        return None
    body = rest[5:]
    if any(_hash(key, body) == rest[:4] for key in keys):
        return body
    return None


def _stamp(text: str) -> int | None:
    if len(text) < 2 or text[0] not in BASE32 or text[1] not in BASE32:
        return None
    return BASE32.index(text[0]) << 5 | BASE32.index(text[1])


def srs_decode(
    rcpt: str, key: str, key_backup: str | None, ttl_days: int, now: float
) -> str | None:
    """The address an ``SRS0=``/``SRS1=`` recipient stands for, or None when it
    is not one, or its hash or (SRS0) day does not check out."""
    keys = (key,) if key_backup is None else (key, key_backup)
    prefix = rcpt[:5].upper()
    today = srs_timestamp(now)
    if prefix == "SRS0=":
        body = _checked(rcpt[5:], keys)
        if body is None or len(body) < 3:
            return None
        stamp = _stamp(body)
        if stamp is None or not _in_range(today, stamp, ttl_days):
            return None
        parts = _split(body[3:])
        if parts is None:
            return None
        user, _domain = parts
        orig_domain, sep, orig_user = user.partition("=")
        if not sep:
            return None
        return _fits(f"{orig_user}@{orig_domain}", "") or None
    if prefix == "SRS1=":
        body = _checked(rcpt[5:], keys)
        if body is None:
            return None
        parts = _split(body)
        if parts is None:
            return None
        user, _domain = parts
        hop_domain, sep, srs0_rest = user.partition("=")
        if not sep:
            return None
        decoded = f"SRS0{srs0_rest}@{hop_domain}"
        # the SRS0 part's hash cannot be checked here (it is the next hop's),
        # its day can: srs0_rest is "=HHHH=TT=..."
        inner = srs0_rest[6:] if len(srs0_rest) >= 6 else ""
        if len(inner) < 3 or inner[2] not in "=+-":
            return None
        stamp = _stamp(inner)
        if stamp is None or not _in_range(today, stamp, ttl_days):
            return None
        return _fits(decoded, "") or None
    return None
