"""Queue encryption framing, checked against a reference written here from the spec
(OpenSMTPD crypto.c: 0x01 | 12-byte IV | AES-256-GCM ciphertext | 16-byte tag, no AAD)."""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from mta.spool import crypto, seal
from tests import oracles

from .conftest import KEY


def reference_decrypt(key: bytes, data: bytes) -> bytes:
    assert len(key) == 32
    version, iv, ciphertext, tag = data[0], data[1:13], data[13:-16], data[-16:]
    assert version == 1
    return AESGCM(key).decrypt(iv, ciphertext + tag, None)


def reference_encrypt(key: bytes, plain: bytes) -> bytes:
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plain, None)
    return b"\x01" + iv + sealed


@given(st.binary(max_size=5000))
def test_buffer_framing_matches_the_reference(plain: bytes) -> None:
    data = crypto.encrypt(KEY, plain)
    assert len(data) == 1 + 12 + len(plain) + 16
    assert reference_decrypt(KEY, data) == plain
    if plain:
        assert crypto.decrypt(KEY, reference_encrypt(KEY, plain)) == plain


@given(st.lists(st.binary(max_size=3000), max_size=12))
def test_stream_framing_matches_the_reference(chunks: list[bytes]) -> None:
    encryptor = crypto.StreamEncryptor(KEY)
    data = b"".join(encryptor.update(chunk) for chunk in chunks) + encryptor.finalize()
    assert reference_decrypt(KEY, data) == b"".join(chunks)


@given(st.binary(min_size=1, max_size=5000), st.integers(1, 4096))
def test_stream_decryptor_opens_reference_files(plain: bytes, step: int) -> None:
    data = reference_encrypt(KEY, plain)
    decryptor = crypto.StreamDecryptor(KEY, data[:13], data[-16:])
    body = data[13:-16]
    out = b"".join(decryptor.update(body[i : i + step]) for i in range(0, len(body), step))
    assert out + decryptor.finalize() == plain


def test_each_file_has_a_fresh_iv() -> None:
    assert crypto.encrypt(KEY, b"same")[1:13] != crypto.encrypt(KEY, b"same")[1:13]


def test_wrong_key_and_tampering_fail_authentication() -> None:
    data = crypto.encrypt(KEY, b"secret message")
    with pytest.raises(crypto.CryptoError, match="authentication"):
        crypto.decrypt(bytes(32), data)
    for position in range(1, len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        with pytest.raises(crypto.CryptoError):
            crypto.decrypt(KEY, bytes(tampered))
    decryptor = crypto.StreamDecryptor(bytes(32), data[:13], data[-16:])
    decryptor.update(data[13:-16])
    with pytest.raises(crypto.CryptoError, match="authentication"):
        decryptor.finalize()


def test_framing_errors() -> None:
    data = crypto.encrypt(KEY, b"x")
    with pytest.raises(crypto.CryptoError, match="version 2"):
        crypto.decrypt(KEY, b"\x02" + data[1:])
    with pytest.raises(crypto.CryptoError, match="too short"):
        crypto.decrypt(KEY, data[:28])
    with pytest.raises(crypto.CryptoError, match="version 2"):
        crypto.StreamDecryptor(KEY, b"\x02" + data[1:13], data[-16:])


def test_key_must_be_32_bytes() -> None:
    assert crypto.check_key(KEY) == KEY
    for bad in (b"", b"k" * 31, b"k" * 33):
        with pytest.raises(ValueError, match="32 bytes"):
            crypto.check_key(bad)


# -- differential: OpenSMTPD's own crypto.c, from Debian's source package ------------

DRIVER = r"""
#include <stdio.h>
#include <string.h>
int crypto_setup(const char *, size_t);
int crypto_encrypt_file(FILE *, FILE *);
int crypto_decrypt_file(FILE *, FILE *);
int main(int argc, char **argv) {  /* enc|dec KEYFILE IN OUT */
    char key[64];
    FILE *k = fopen(argv[2], "rb");
    size_t n = fread(key, 1, sizeof key, k);
    fclose(k);
    if (argc != 5 || !crypto_setup(key, n)) return 2;
    FILE *in = fopen(argv[3], "rb"), *out = fopen(argv[4], "wb");
    int ok = strcmp(argv[1], "enc") == 0 ? crypto_encrypt_file(in, out)
                                         : crypto_decrypt_file(in, out);
    fclose(in);
    fclose(out);
    return ok ? 0 : 1;
}
"""


@pytest.fixture(scope="module")
def opensmtpd_crypto(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """OpenSMTPD's crypto.c, from the source package scripts/setup --test unpacks
    in .cache/, built with a small driver (a missing piece fails: see tests/oracles.py)."""
    if shutil.which("cc") is None:
        oracles.missing("a C compiler (cc), to build OpenSMTPD's crypto.c,")
    if not os.path.exists("/usr/include/openssl/evp.h"):
        oracles.missing("/usr/include/openssl/evp.h (Debian's libssl-dev)")
    tree = oracles.scripts_module("oraclelib").opensmtpd_source(oracles.CACHE)
    if tree is None:
        oracles.missing(f"OpenSMTPD's source (apt-get source opensmtpd) in {oracles.CACHE}")
    work = tmp_path_factory.mktemp("opensmtpd-crypto")
    source = (tree / "usr.sbin" / "smtpd" / "crypto.c").read_bytes()
    source = source.replace(b'#include "includes.h"', b"#include <stdint.h>\n#include <stdlib.h>")
    (work / "crypto.c").write_bytes(source)
    (work / "driver.c").write_text(DRIVER)
    build = subprocess.run(
        ["cc", "-o", str(work / "driver"), str(work / "driver.c"), str(work / "crypto.c"),
         "-lcrypto"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert build.returncode == 0, f"cannot build OpenSMTPD's crypto.c: {build.stderr[-500:]}"
    return work


def run_opensmtpd(work: pathlib.Path, verb: str, key: bytes, data: bytes) -> bytes | None:
    (work / "key").write_bytes(key)
    (work / "in").write_bytes(data)
    result = subprocess.run(
        [str(work / "driver"), verb, str(work / "key"), str(work / "in"), str(work / "out")],
        check=False,
    )
    return (work / "out").read_bytes() if result.returncode == 0 else None


@pytest.mark.parametrize("size", [1, 100, 16384, 16385, 200_000])
def test_opensmtpd_encrypts_what_we_decrypt(opensmtpd_crypto: pathlib.Path, size: int) -> None:
    content = b"Received: by opensmtpd\r\n\r\n" + os.urandom(size)
    theirs = run_opensmtpd(opensmtpd_crypto, "enc", KEY, gzip.compress(content))
    assert theirs is not None and theirs[0] == 1
    assert gzip.decompress(crypto.decrypt(KEY, theirs)) == content
    stream = io.BytesIO(theirs)
    assert b"".join(seal.decode_stream(stream, len(theirs), KEY)) == content


@pytest.mark.parametrize("size", [1, 100, 16384, 200_000])
def test_opensmtpd_decrypts_what_we_write(opensmtpd_crypto: pathlib.Path, size: int) -> None:
    content = b"Received: by mta\r\n\r\n" + os.urandom(size)
    encoder = seal.StreamEncoder(compress=True, key=KEY)
    ours = b"".join(encoder.encode(content[i : i + 5000]) for i in range(0, len(content), 5000))
    ours += encoder.finish()
    plain = run_opensmtpd(opensmtpd_crypto, "dec", KEY, ours)
    assert plain is not None and gzip.decompress(plain) == content
    assert run_opensmtpd(opensmtpd_crypto, "dec", KEY, crypto.encrypt(KEY, b"buffer")) == b"buffer"
    tampered = ours[:-1] + bytes([ours[-1] ^ 1])
    assert run_opensmtpd(opensmtpd_crypto, "dec", KEY, tampered) is None
    assert run_opensmtpd(opensmtpd_crypto, "dec", bytes(32), ours) is None
