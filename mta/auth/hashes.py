"""Password hashes as ``smtpctl encrypt`` writes them: verify one in constant
time, and make a new one (``mtactl encrypt``).

SHA-512 crypt ``$6$`` (Linux), bcrypt ``$2a$``/``$2b$``/``$2y$`` (OpenBSD),
SHA-256 crypt ``$5$`` and MD5 crypt ``$1$`` are checked with libpass and
bcrypt; any other scheme (yescrypt ``$y$``...) goes to the system crypt(3)
when it is there.  Hashing is slow on purpose: call these from a worker thread.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import threading

import bcrypt
from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt  # type: ignore[import-untyped]

from mta.auth import libcrypt

__all__ = ["BCRYPT_MAX_PASSWORD", "Scheme", "dummy_hash", "make_hash", "scheme", "verify_password"]

BCRYPT_MAX_PASSWORD = 72
"""bcrypt reads at most 72 bytes of the password (OpenBSD and pyca/bcrypt 4 cut
there; pyca/bcrypt 5 refuses longer input, so we cut before calling it)."""

SALT_SIZE = 16  # smtpctl encrypt: 16 random salt characters
ROUNDS = 5000  # crypt's default for $5$/$6$, left implicit in the hash


class Scheme(enum.Enum):
    """How a stored hash is checked."""

    SHA512_CRYPT = "$6$"
    SHA256_CRYPT = "$5$"
    MD5_CRYPT = "$1$"
    BCRYPT = "$2b$"
    SYSTEM = "crypt(3)"  # anything else the system crypt library knows


_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_PASSLIB = {
    Scheme.SHA512_CRYPT: sha512_crypt,
    Scheme.SHA256_CRYPT: sha256_crypt,
    Scheme.MD5_CRYPT: md5_crypt,
}


def scheme(hash: str) -> Scheme | None:
    """The scheme that checks ``hash``, or None when nothing here can."""
    if hash.startswith(_BCRYPT_PREFIXES):
        return Scheme.BCRYPT
    for known in (Scheme.SHA512_CRYPT, Scheme.SHA256_CRYPT, Scheme.MD5_CRYPT):
        if hash.startswith(known.value):
            return known
    if libcrypt.available() and hash.isascii() and len(hash) >= 13:
        return Scheme.SYSTEM
    return None


def _secret(password: str) -> bytes:
    # surrogateescape: a password decoded from raw client bytes encodes back to them
    return password.encode("utf-8", "surrogateescape")


def verify_password(hash: str, password: str) -> bool:
    """True when ``password`` matches the crypt ``hash``; False for a wrong
    password, a malformed or unknown hash, or a password containing NUL (C
    crypt cannot see past it).  The comparison is constant-time."""
    secret = _secret(password)
    if b"\0" in secret or not hash.isascii():
        return False
    kind = scheme(hash)
    try:
        if kind is Scheme.BCRYPT:
            return bcrypt.checkpw(secret[:BCRYPT_MAX_PASSWORD], hash.encode("ascii"))
        if kind is Scheme.SYSTEM:
            result = libcrypt.crypt(secret, hash.encode("ascii"))
            return result is not None and hmac.compare_digest(result, hash.encode("ascii"))
        if kind is not None:
            handler = _PASSLIB[kind]
            return bool(handler.identify(hash) and handler.verify(secret, hash))
    except (ValueError, TypeError):
        return False
    return False


def make_hash(password: str) -> str:
    """A new SHA-512 crypt hash, as ``smtpctl encrypt`` makes on Linux:
    ``$6$`` + 16 salt characters, default rounds."""
    handler = sha512_crypt.using(rounds=ROUNDS, salt_size=SALT_SIZE)
    result: str = handler.hash(_secret(password))
    return result


_DUMMIES_MAX = 32
_dummies: dict[str, str] = {}
_dummies_lock = threading.Lock()


def _cost_key(hash: str, kind: Scheme | None) -> str:
    """What makes checking ``hash`` slow: scheme and cost, never the salt."""
    if kind is Scheme.BCRYPT:
        return "$2$" + hash[4:6]  # the cost; $2a$/$2b$/$2y$ are equally slow
    if kind in (Scheme.SHA512_CRYPT, Scheme.SHA256_CRYPT):
        rounds = hash[3:].split("$", 1)[0]
        return hash[:3] + rounds if rounds.startswith("rounds=") else hash[:3]
    if kind is Scheme.SYSTEM:
        return hash.rsplit("$", 2)[0] if hash.count("$") >= 3 else hash[:2]
    if kind is Scheme.MD5_CRYPT:
        return "$1$"
    return ""  # the default dummy


def _make_dummy(like: str, kind: Scheme | None) -> str:
    secret = secrets.token_urlsafe(24).encode("ascii")
    try:
        if kind is Scheme.BCRYPT:
            # $2a$/$2y$ cost the same as $2b$, the one prefix gensalt makes
            return bcrypt.hashpw(secret, bcrypt.gensalt(int(like[4:6]))).decode("ascii")
        if kind in (Scheme.SHA512_CRYPT, Scheme.SHA256_CRYPT, Scheme.MD5_CRYPT):
            handler = _PASSLIB[kind]
            parsed = handler.from_string(like)
            rounds = getattr(parsed, "rounds", None)
            made: str = (handler.using(rounds=rounds) if rounds else handler).hash(secret)
            return made
        if kind is Scheme.SYSTEM:
            result = libcrypt.crypt(secret, like.encode("ascii"))
            if result is not None:
                return result.decode("ascii")
    except (ValueError, TypeError):
        pass
    return make_hash(secret.decode("ascii"))


def dummy_hash(like: str | None = None) -> str:
    """A hash of a random password nobody knows, checked for unknown users so
    that they take as long as a wrong password: same scheme and cost as the
    real hash ``like`` (SHA-512 crypt with default rounds when None or
    unusable).  Made once per scheme and cost, then cached."""
    like = like if like is not None and like.isascii() else ""
    kind = scheme(like)
    key = _cost_key(like, kind)
    with _dummies_lock:
        found = _dummies.get(key)
    if found is not None:
        return found
    made = _make_dummy(like, kind) if like else make_hash(secrets.token_urlsafe(24))
    with _dummies_lock:
        if len(_dummies) >= _DUMMIES_MAX:
            _dummies.pop(next(iter(_dummies)))
        return _dummies.setdefault(key, made)
