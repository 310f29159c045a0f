"""Tests for mta.net.tls: listener contexts proven by real handshakes over trio
in-memory streams, with certificates made by trustme."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trustme

from mta.config.model import Ca, Config, Listener, Pki, SmtpOptions, TlsMode
from mta.errors import ConfigError
from mta.net.tls import (
    FFDHE2048,
    TlsInfo,
    cert_names,
    match_name,
    parse_protocols,
    server_context,
    tls_summary,
)

V12 = ssl.TLSVersion.TLSv1_2
V13 = ssl.TLSVersion.TLSv1_3


@attrs.frozen
class Certs:
    ca: trustme.CA
    other_ca: trustme.CA
    config: Config
    client: trustme.LeafCert
    stranger: trustme.LeafCert
    dir: Path


def _write(directory: Path, name: str, leaf: trustme.LeafCert) -> tuple[str, str]:
    cert = directory / f"{name}.crt"
    key = directory / f"{name}.key"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return str(cert), str(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    other_ca = trustme.CA()
    mail_cert, mail_key = _write(directory, "mail", ca.issue_cert("mail.example.org"))
    other_cert, other_key = _write(
        directory, "other", ca.issue_cert("other.example.net", "*.wild.example.net")
    )
    rsa_cert, rsa_key = _write(
        directory, "rsa", ca.issue_cert("rsa.example.org", key_type=trustme.KeyType.RSA)
    )
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    config = Config(
        pkis={
            "mail.example.org": Pki("mail.example.org", mail_cert, mail_key),
            "other.example.net": Pki("other.example.net", other_cert, other_key),
            "rsa": Pki("rsa", rsa_cert, rsa_key),
            "rsa-dhe": Pki("rsa-dhe", rsa_cert, rsa_key, dhe="auto"),
        },
        cas={"clients": Ca("clients", str(ca_file))},
    )
    return Certs(
        ca,
        other_ca,
        config,
        ca.issue_cert("client@example.org"),
        other_ca.issue_cert("client@example.org"),
        directory,
    )


def listener(**options: object) -> Listener:
    defaults: dict[str, object] = {
        "interface": "lo",
        "tls": TlsMode.STARTTLS,
        "pki": ("mail.example.org",),
    }
    defaults.update(options)
    return Listener(**defaults)  # type: ignore[arg-type]


def client_context(
    pki: Certs,
    *,
    cert: trustme.LeafCert | None = None,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    pki.ca.configure_trust(context)
    if cert is not None:
        cert.configure_cert(context)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


@attrs.frozen
class Handshake:
    ok: bool
    server: TlsInfo | None
    client_peer: dict[str, object] | None
    client_error: BaseException | None
    server_error: BaseException | None


async def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, server_name: str | None
) -> Handshake:
    left, right = trio.testing.memory_stream_pair()
    server_stream = trio.SSLStream(left, server, server_side=True)
    client_stream = trio.SSLStream(right, client, server_hostname=server_name)
    errors: dict[str, BaseException] = {}

    async def run(name: str, stream: trio.SSLStream[Any]) -> None:
        try:
            with trio.fail_after(10):
                await stream.do_handshake()
                # TLS 1.3 reports a refused client certificate after the handshake
                if name == "client":
                    await stream.send_all(b"ping")
                else:
                    await stream.receive_some(4)
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            errors[name] = exc
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "server", server_stream)
        nursery.start_soon(run, "client", client_stream)
    ok = not errors
    return Handshake(
        ok,
        tls_summary(server_stream._ssl_object) if ok else None,
        client_stream.getpeercert() if ok else None,
        errors.get("client"),
        errors.get("server"),
    )


def _subject_names(peer: dict[str, object] | None) -> list[str]:
    assert peer is not None
    san = peer["subjectAltName"]
    assert isinstance(san, tuple)
    return [value for kind, value in san if kind == "DNS"]


# -- SNI ---------------------------------------------------------------------------


async def test_single_pki(pki: Certs) -> None:
    context = server_context(listener(), pki.config)
    result = await handshake(context, client_context(pki), "mail.example.org")
    assert result.ok and _subject_names(result.client_peer) == ["mail.example.org"]
    assert result.server is not None and not result.server.verified


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("mail.example.org", "mail.example.org"),
        ("other.example.net", "other.example.net"),
        ("OTHER.Example.NET", "other.example.net"),
        ("host.wild.example.net", "other.example.net"),
        ("unknown.example.com", "mail.example.org"),  # no match: the first pki
    ],
)
async def test_sni_chooses_the_pki(pki: Certs, server_name: str, expected: str) -> None:
    context = server_context(listener(pki=("mail.example.org", "other.example.net")), pki.config)
    client = client_context(pki)
    client.check_hostname = False  # to see which certificate came back
    result = await handshake(context, client, server_name)
    assert result.ok
    assert expected in _subject_names(result.client_peer)


async def test_no_sni_gets_the_first_pki(pki: Certs) -> None:
    context = server_context(listener(pki=("other.example.net", "mail.example.org")), pki.config)
    client = client_context(pki)
    client.check_hostname = False
    result = await handshake(context, client, None)
    assert result.ok and "other.example.net" in _subject_names(result.client_peer)


def test_match_name_follows_libtls() -> None:
    assert match_name("mail.example.org", "MAIL.example.org")
    assert match_name("*.example.org", "a.example.org")
    assert not match_name("*.example.org", "a.b.example.org")
    assert not match_name("*.example.org", "example.org")
    assert not match_name("*.org", "example.org")
    assert not match_name("*", "example.org")
    assert not match_name("*example.org", "aexample.org")
    assert not match_name("*.example.org", ".example.org")
    assert not match_name("other.example.org", "mail.example.org")


def test_cert_names(pki: Certs) -> None:
    other = pki.config.pkis["other.example.net"].cert
    assert other is not None
    assert cert_names(other) == ("other.example.net", "*.wild.example.net")


# -- client certificates ----------------------------------------------------------------


async def test_verify_accepts_a_client_certificate_from_the_ca(pki: Certs) -> None:
    context = server_context(listener(verify=True, ca="clients"), pki.config)
    client = client_context(pki, cert=pki.client)
    result = await handshake(context, client, "mail.example.org")
    assert result.ok and result.server is not None
    assert result.server.verified
    assert result.server.peer_fingerprint is not None
    assert result.server.peer_fingerprint.startswith("SHA256:")
    assert len(result.server.peer_fingerprint) == len("SHA256:") + 64


@pytest.mark.parametrize("maximum", [V12, V13])
async def test_verify_refuses_a_missing_client_certificate(
    pki: Certs, maximum: ssl.TLSVersion
) -> None:
    context = server_context(listener(verify=True, ca="clients"), pki.config)
    result = await handshake(context, client_context(pki, maximum=maximum), "mail.example.org")
    assert not result.ok
    assert isinstance(result.server_error, trio.BrokenResourceError)


async def test_verify_refuses_a_certificate_from_another_ca(pki: Certs) -> None:
    context = server_context(listener(verify=True, ca="clients"), pki.config)
    client = client_context(pki, cert=pki.stranger)
    result = await handshake(context, client, "mail.example.org")
    assert not result.ok
    assert result.server_error is not None
    assert "certificate verify failed" in str(result.server_error.__cause__)


async def test_without_verify_no_certificate_is_requested(pki: Certs) -> None:
    context = server_context(listener(ca="clients"), pki.config)
    client = client_context(pki, cert=pki.stranger)  # would fail verification if sent
    result = await handshake(context, client, "mail.example.org")
    assert result.ok and result.server is not None
    assert not result.server.verified and result.server.peer_fingerprint is None


# -- protocols, ciphers, dhe ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tlsv1.2,tlsv1.3", {V12, V13}),
        ("tlsv1.3", {V13}),
        ("TLSv1.2", {V12}),
        ("secure", {V12, V13}),
        ("default", {V12, V13}),
        ("all", {V12, V13}),
        ("legacy", {V12, V13}),
        ("tlsv1", {V12, V13}),
        ("!tlsv1.2", {V13}),
        ("all,!tlsv1.3", {V12}),
        ("tlsv1.2:tlsv1.3", {V12, V13}),
        (" tlsv1.3, !tlsv1.2", {V13}),
        ("tlsv1.0,tlsv1.1", set()),
        ("!tlsv1.0", {V12, V13}),
        ("tlsv1.0,!tlsv1.2", set()),
    ],
)
def test_parse_protocols_like_libtls(text: str, expected: set[ssl.TLSVersion]) -> None:
    assert parse_protocols(text) == expected


@pytest.mark.parametrize("text", ["sslv3", "tlsv1.4", "", "tlsv1.2,", "tls1.2"])
def test_parse_protocols_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_protocols(text)


@pytest.mark.parametrize(
    ("protocols", "client_max", "ok", "version"),
    [
        (None, V13, True, "TLSv1.3"),
        (None, V12, True, "TLSv1.2"),
        ("tlsv1.3", V12, False, None),
        ("tlsv1.3", V13, True, "TLSv1.3"),
        ("tlsv1.2", V13, True, "TLSv1.2"),
        ("!tlsv1.3", V13, True, "TLSv1.2"),
    ],
)
async def test_protocol_limits(
    pki: Certs, protocols: str | None, client_max: ssl.TLSVersion, ok: bool, version: str | None
) -> None:
    context = server_context(listener(protocols=protocols), pki.config)
    result = await handshake(context, client_context(pki, maximum=client_max), "mail.example.org")
    assert result.ok is ok
    if ok:
        assert result.server is not None and result.server.version == version


def test_protocols_errors_are_config_errors(pki: Certs) -> None:
    with pytest.raises(ConfigError, match='failed to parse protocols "sslv3"'):
        server_context(listener(protocols="sslv3"), pki.config)
    with pytest.raises(ConfigError, match="enable no TLS version"):
        server_context(listener(protocols="tlsv1.1"), pki.config)


async def test_tls_summary_text(pki: Certs) -> None:
    context = server_context(listener(), pki.config)
    client = client_context(pki, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384", maximum=V12)
    result = await handshake(context, client, "mail.example.org")
    assert result.server is not None
    assert result.server.text == "TLSv1.2:ECDHE-ECDSA-AES256-GCM-SHA384:256"
    result = await handshake(context, client_context(pki), "mail.example.org")
    assert result.server is not None
    assert result.server.version == "TLSv1.3"
    assert result.server.text == f"TLSv1.3:{result.server.cipher}:{result.server.bits}"
    assert result.server.bits in (128, 256)


async def test_listener_ciphers_win_over_smtp_ciphers(pki: Certs) -> None:
    only_128 = "ECDHE-ECDSA-AES128-GCM-SHA256"
    only_256 = "ECDHE-ECDSA-AES256-GCM-SHA384"
    config = attrs.evolve(pki.config, smtp=SmtpOptions(ciphers=only_128))
    client = client_context(pki, maximum=V12)
    result = await handshake(server_context(listener(), config), client, "mail.example.org")
    assert result.server is not None and result.server.cipher == only_128
    context = server_context(listener(ciphers=only_256), config)
    result = await handshake(context, client, "mail.example.org")
    assert result.server is not None and result.server.cipher == only_256


async def test_cipher_keywords(pki: Certs) -> None:
    for keyword in ("secure", "default", "compat", "legacy", "all", "insecure"):
        context = server_context(listener(ciphers=keyword), pki.config)
        result = await handshake(context, client_context(pki, maximum=V12), "mail.example.org")
        assert result.ok, keyword
    with pytest.raises(ConfigError, match='no ciphers for "NOT-A-CIPHER"'):
        server_context(listener(ciphers="NOT-A-CIPHER"), pki.config)


@pytest.mark.parametrize(("pki_name", "ok"), [("rsa", False), ("rsa-dhe", True)])
async def test_dhe(pki: Certs, pki_name: str, ok: bool) -> None:
    context = server_context(listener(pki=(pki_name,)), pki.config)
    client = client_context(pki, maximum=V12, ciphers="DHE-RSA-AES256-GCM-SHA384")
    result = await handshake(context, client, "rsa.example.org")
    assert result.ok is ok
    if ok:
        assert result.server is not None
        assert result.server.cipher == "DHE-RSA-AES256-GCM-SHA384"


def _e_times_power_of_two(bits: int) -> int:
    """floor(e * 2**bits), from the series sum 1/k!."""
    guard = bits + 64
    total, term, k = 0, 1 << guard, 0
    while term:
        total += term
        k += 1
        term //= k
    return total >> (guard - bits)


def _der_integers(pem: bytes) -> list[int]:
    """The INTEGERs of a PKCS#3 ``SEQUENCE { p, g }``."""
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    der = base64.b64decode(body)

    def header(at: int) -> tuple[int, int, int]:
        tag, length, at = der[at], der[at + 1], at + 2
        if length & 0x80:
            count = length & 0x7F
            length, at = int.from_bytes(der[at : at + count], "big"), at + count
        return tag, length, at

    tag, length, at = header(0)
    assert tag == 0x30 and at + length == len(der)
    values = []
    while at < len(der):
        tag, length, at = header(at)
        assert tag == 0x02
        values.append(int.from_bytes(der[at : at + length], "big"))
        at += length
    return values


def test_ffdhe2048_is_the_rfc7919_group() -> None:
    # RFC 7919 A.1: p = 2^2048 - 2^1984 + (floor(2^1918 * e) + 560316) * 2^64 - 1, g = 2
    p = 2**2048 - 2**1984 + (_e_times_power_of_two(1918) + 560316) * 2**64 - 1
    assert _der_integers(FFDHE2048) == [p, 2]
    if shutil.which("openssl"):
        made = subprocess.run(
            ["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048"],
            capture_output=True,
            check=True,
        ).stdout
        assert made == FFDHE2048


# -- configuration errors -------------------------------------------------------------


def test_unreadable_key(pki: Certs, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.key")
    bad = attrs.evolve(pki.config.pkis["mail.example.org"], key=missing)
    config = attrs.evolve(pki.config, pkis={**pki.config.pkis, "mail.example.org": bad})
    with pytest.raises(ConfigError, match="cannot read key file") as info:
        server_context(listener(), config)
    assert missing in str(info.value)


def test_mismatched_key(pki: Certs) -> None:
    mail = pki.config.pkis["mail.example.org"]
    other = pki.config.pkis["other.example.net"]
    bad = Pki("mail.example.org", mail.cert, other.key, file="smtpd.conf", line=7)
    config = attrs.evolve(pki.config, pkis={**pki.config.pkis, "mail.example.org": bad})
    with pytest.raises(ConfigError) as info:
        server_context(listener(), config)
    text = str(info.value)
    assert text.startswith("smtpd.conf:7: pki mail.example.org:")
    assert f"key {other.key} does not match certificate {mail.cert}" in text


def test_garbage_key_and_certificate(pki: Certs, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a pem file\n")
    mail = pki.config.pkis["mail.example.org"]
    for bad in (
        Pki("mail.example.org", mail.cert, str(garbage)),
        Pki("mail.example.org", str(garbage), mail.key),
    ):
        config = attrs.evolve(pki.config, pkis={**pki.config.pkis, "mail.example.org": bad})
        with pytest.raises(ConfigError, match=str(garbage)):
            server_context(listener(), config)


def test_encrypted_key_fails_instead_of_prompting(pki: Certs, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    mail = pki.config.pkis["mail.example.org"]
    assert mail.key is not None
    key = serialization.load_pem_private_key(Path(mail.key).read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
    )
    bad = Pki("mail.example.org", mail.cert, str(encrypted))
    config = attrs.evolve(pki.config, pkis={**pki.config.pkis, "mail.example.org": bad})
    with pytest.raises(ConfigError, match=r"encrypted\.key"):
        server_context(listener(), config)


def test_unknown_pki_or_ca_and_no_pki(pki: Certs) -> None:
    with pytest.raises(ConfigError, match="unknown pki nope"):
        server_context(listener(pki=("nope",)), pki.config)
    with pytest.raises(ConfigError, match="unknown ca nope"):
        server_context(listener(ca="nope", verify=True), pki.config)
    with pytest.raises(ConfigError, match="no pki"):
        server_context(listener(pki=()), pki.config)


def test_unreadable_ca(pki: Certs, tmp_path: Path) -> None:
    config = attrs.evolve(pki.config, cas={"clients": Ca("clients", str(tmp_path / "none.pem"))})
    with pytest.raises(ConfigError, match=r"none\.pem"):
        server_context(listener(ca="clients", verify=True), config)


def test_key_that_cannot_be_read_names_the_file(pki: Certs, tmp_path: Path) -> None:
    # (root reads any file whatever its mode: a directory cannot be read by anyone)
    directory = tmp_path / "dir.key"
    directory.mkdir()
    mail = pki.config.pkis["mail.example.org"]
    bad = Pki("mail.example.org", mail.cert, str(directory))
    config = attrs.evolve(pki.config, pkis={**pki.config.pkis, "mail.example.org": bad})
    with pytest.raises(ConfigError, match=r"dir\.key"):
        server_context(listener(), config)
