"""Tests for mta.auth.hashes: the hashes smtpctl encrypt makes, checked and made."""

from __future__ import annotations

import re

import bcrypt
import pytest
from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt  # type: ignore[import-untyped]

from mta.auth import libcrypt
from mta.auth.hashes import (
    BCRYPT_MAX_PASSWORD,
    Scheme,
    dummy_hash,
    make_hash,
    scheme,
    verify_password,
)

needs_libcrypt = pytest.mark.skipif(not libcrypt.available(), reason="no system libcrypt")

# published vectors: Drepper's SHA-crypt specification and OpenBSD/Openwall bcrypt
DREPPER_SHA512 = [
    (
        "Hello world!",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFd"
        "cbYEdFCoEOfaS35inz1",
    ),
    (
        "Hello world!",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/Urj"
        "mM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
]
FAST512 = sha512_crypt.using(rounds=5000)
OPENWALL_BCRYPT = ("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW")


@pytest.mark.parametrize(("password", "hashed"), DREPPER_SHA512)
def test_sha512_crypt_published_vectors(password: str, hashed: str) -> None:
    assert verify_password(hashed, password)
    assert not verify_password(hashed, password + "x")
    assert not verify_password(hashed, password.lower())


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_bcrypt_published_vector_every_prefix(prefix: str) -> None:
    password, hashed = OPENWALL_BCRYPT
    hashed = prefix + hashed[4:]
    assert verify_password(hashed, password)
    assert not verify_password(hashed, "U*V")


def _libpass(handler: object, password: str) -> str:
    result: str = handler.hash(password)  # type: ignore[attr-defined]
    return result


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda pw: _libpass(sha512_crypt.using(rounds=5000), pw), Scheme.SHA512_CRYPT),
        (lambda pw: _libpass(sha512_crypt.using(rounds=9000), pw), Scheme.SHA512_CRYPT),
        (lambda pw: _libpass(sha256_crypt.using(rounds=5000), pw), Scheme.SHA256_CRYPT),
        (lambda pw: _libpass(md5_crypt, pw), Scheme.MD5_CRYPT),
        (
            lambda pw: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4, b"2a")).decode(),
            Scheme.BCRYPT,
        ),
        (
            lambda pw: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4, b"2b")).decode(),
            Scheme.BCRYPT,
        ),
        (
            # OpenBSD and PHP write $2y$; same algorithm as $2b$
            lambda pw: "$2y$" + bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4))[4:].decode(),
            Scheme.BCRYPT,
        ),
    ],
)
def test_generated_hashes(make: object, expected: Scheme) -> None:
    for password in ("secret", "pässwörd ünïcode", "with space and :colon"):
        hashed = make(password)  # type: ignore[operator]
        assert scheme(hashed) is expected
        assert verify_password(hashed, password)
        assert not verify_password(hashed, password + "!")
        assert not verify_password(hashed, "")


def test_bcrypt_reads_72_bytes_like_openbsd() -> None:
    password = "p" * 71 + "Q" + "tail that bcrypt never reads"
    hashed = bcrypt.hashpw(password.encode()[:BCRYPT_MAX_PASSWORD], bcrypt.gensalt(4)).decode()
    assert verify_password(hashed, password)
    assert verify_password(hashed, password[:72] + "different tail")
    assert not verify_password(hashed, "p" * 71 + "R" + password[72:])


def test_raw_bytes_password_round_trips_through_surrogateescape() -> None:
    hashed = FAST512.hash(b"\xffraw\xfe")
    assert verify_password(hashed, b"\xffraw\xfe".decode("utf-8", "surrogateescape"))
    assert not verify_password(hashed, "\xffraw\xfe")


@pytest.mark.parametrize(
    "hashed",
    [
        "",
        "$6$",
        "$6$salt",
        "$6$rounds=abc$salt$hash",
        "$2b$",
        "$2b$99$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        "$2b$05$short",
        "$1$",
        "plaintext",
        "secret",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcb€",
        "!",
        "*",
    ],
)
def test_malformed_or_unknown_hash_never_matches(hashed: str) -> None:
    for password in ("", "secret", hashed):
        assert verify_password(hashed, password) is False


def test_nul_in_password_never_matches() -> None:
    hashed = FAST512.hash("abc")
    assert verify_password(hashed, "abc")
    assert not verify_password(hashed, "abc\0")
    assert not verify_password(hashed, "abc\0def")


def test_make_hash_is_sha512_crypt_like_smtpctl_encrypt() -> None:
    first = make_hash("secret")
    second = make_hash("secret")
    shape = re.compile(r"\$6\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}")
    assert shape.fullmatch(first) and shape.fullmatch(second)
    assert first != second  # random salt
    assert verify_password(first, "secret") and verify_password(second, "secret")
    assert not verify_password(first, "Secret")
    assert sha512_crypt.verify("secret", first)


@needs_libcrypt
def test_make_hash_is_read_by_system_crypt() -> None:
    hashed = make_hash("pässwörd")
    assert libcrypt.crypt("pässwörd".encode(), hashed.encode()) == hashed.encode()


@needs_libcrypt
@pytest.mark.parametrize(
    "setting",
    [b"$6$rounds=6000$abcdefgh", b"$5$abcdefgh", b"$1$abcdefgh", b"$2b$04$" + b"C" * 22],
)
def test_hashes_made_by_system_crypt(setting: bytes) -> None:
    made = libcrypt.crypt(b"from libcrypt", setting)
    assert made is not None and made.startswith(setting[:4])
    assert verify_password(made.decode(), "from libcrypt")
    assert not verify_password(made.decode(), "from libcrypt ")


@needs_libcrypt
def test_yescrypt_goes_to_system_crypt() -> None:
    made = libcrypt.crypt(b"yes", b"$y$j9T$MRLtXCw0Q/ITpb3FHpRRc/")
    if made is None:
        pytest.skip("system crypt has no yescrypt")
    hashed = made.decode()
    assert scheme(hashed) is Scheme.SYSTEM
    assert verify_password(hashed, "yes")
    assert not verify_password(hashed, "no")


def test_dummy_hash_matches_scheme_and_cost() -> None:
    default = dummy_hash()
    assert default.startswith("$6$") and "rounds=" not in default
    assert dummy_hash() is default  # cached
    bcrypt_like = bcrypt.hashpw(b"x", bcrypt.gensalt(5, b"2a")).decode()
    assert dummy_hash(bcrypt_like).startswith("$2b$05$")
    assert dummy_hash("$2y$" + bcrypt_like[4:]) is dummy_hash(bcrypt_like)
    rounds = sha512_crypt.using(rounds=7000).hash("x")
    assert dummy_hash(rounds).startswith("$6$rounds=7000$")
    assert dummy_hash(sha256_crypt.using(rounds=5000).hash("x")).startswith("$5$")
    assert dummy_hash(md5_crypt.hash("x")).startswith("$1$")
    for unusable in ("garbage", "$2b$", "é"):
        assert dummy_hash(unusable).startswith("$6$")


def test_dummy_hash_matches_no_password_of_the_real_user() -> None:
    real = sha512_crypt.using(rounds=5000).hash("secret")
    assert not verify_password(dummy_hash(real), "secret")
    assert dummy_hash(real) != real
