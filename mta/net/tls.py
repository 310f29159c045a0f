"""TLS for listeners: the server ``ssl.SSLContext`` a ``listen on`` line
describes, as OpenSMTPD builds it with libtls, and the summary of a finished
handshake that logs and ``Received:`` headers show.

- ``pki``: one certificate chain and key per pki; with several, the client's
  SNI picks the first later pki whose certificate names it (SAN dNSName, else
  CN, ``*.`` wildcards), else the first pki is used (libtls ``tls_servername_cb``).
- ``ciphers``: the listener's, else ``smtp ciphers``; libtls keywords
  ``secure``/``default``/``compat``/``legacy``/``all``/``insecure`` are understood.
- ``protocols``: libtls syntax (``tlsv1.2,tlsv1.3``, ``secure``, ``!tlsv1.2``...);
  only TLS 1.2 and 1.3 exist, as in current libtls.
- ``verify`` (``smtps verify``, ``tls-require verify``): a client certificate
  is required and checked against the listener's ``ca`` (else the system CAs);
  otherwise none is requested.
- ``dhe`` of the first pki: ``none`` leaves DHE suites unusable; ``auto`` and
  ``legacy`` use the RFC 7919 ffdhe2048 group (OpenSSL's security level refuses
  the 1024-bit group ``legacy`` means in LibreSSL).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from mta.config.model import Config, Listener, Pki
from mta.errors import ConfigError

if TYPE_CHECKING:  # imported where a certificate is read: a server without TLS never loads it
    from cryptography import x509

__all__ = [
    "FFDHE2048",
    "TlsInfo",
    "cert_names",
    "match_name",
    "openssl_ciphers",
    "parse_protocols",
    "server_context",
    "tls_summary",
]

_CIPHER_KEYWORDS = {
    "default": "HIGH:!aNULL",
    "secure": "HIGH:!aNULL",
    "compat": "HIGH:!aNULL",
    "legacy": "HIGH:MEDIUM:!aNULL",
    "all": "ALL:!aNULL:!eNULL",
    "insecure": "ALL:!aNULL:!eNULL",
}
_DEFAULT_CIPHERS = _CIPHER_KEYWORDS["secure"]

_V12 = ssl.TLSVersion.TLSv1_2
_V13 = ssl.TLSVersion.TLSv1_3
_ALL = frozenset({_V12, _V13})
# libtls: tlsv1.0/tlsv1.1 are accepted names that enable nothing any more
_PROTOCOL_NAMES: dict[str, frozenset[ssl.TLSVersion]] = {
    "all": _ALL,
    "legacy": _ALL,
    "default": _ALL,
    "secure": _ALL,
    "tlsv1": _ALL,
    "tlsv1.0": frozenset(),
    "tlsv1.1": frozenset(),
    "tlsv1.2": frozenset({_V12}),
    "tlsv1.3": frozenset({_V13}),
}

FFDHE2048 = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
"""RFC 7919 ffdhe2048 (what ``openssl genpkey -genparam -pkeyopt group:ffdhe2048`` prints)."""


@attrs.frozen
class TlsInfo:
    """A finished handshake as OpenSMTPD reports it."""

    version: str  # "TLSv1.3"
    cipher: str  # OpenSSL name, "TLS_AES_256_GCM_SHA384"
    bits: int  # secret bits of the cipher
    verified: bool  # a client certificate was required and checked
    peer_fingerprint: str | None = None  # "SHA256:<hex>" of a client certificate

    @property
    def text(self) -> str:
        """``TLSv1.3:TLS_AES_256_GCM_SHA384:256`` (``tls_to_text``)."""
        return f"{self.version}:{self.cipher}:{self.bits}"


def tls_summary(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> TlsInfo:
    """Version, cipher, strength and verification of a completed handshake."""
    cipher = ssl_object.cipher()
    name, _, bits = cipher if cipher is not None else ("unknown", "", 0)
    peer = ssl_object.getpeercert(binary_form=True)
    fingerprint = f"SHA256:{hashlib.sha256(peer).hexdigest()}" if peer else None
    verified = bool(peer) and ssl_object.context.verify_mode == ssl.CERT_REQUIRED
    return TlsInfo(
        version=ssl_object.version() or "unknown",
        cipher=name,
        bits=int(bits or 0),
        verified=verified,
        peer_fingerprint=fingerprint,
    )


def parse_protocols(text: str) -> frozenset[ssl.TLSVersion]:
    """The TLS versions a libtls ``protocols`` string enables
    (``tls_config_parse_protocols``); ValueError when it does not parse."""
    enabled: frozenset[ssl.TLSVersion] = frozenset()
    started = False
    for item in text.replace(":", ",").split(","):
        word = item.lstrip(" \t")
        negate = word.startswith("!")
        if negate:
            word = word[1:]
            if not started:
                enabled = _ALL
        versions = _PROTOCOL_NAMES.get(word.lower())
        if versions is None:
            raise ValueError(f"unknown protocol {word!r}")
        # tlsv1.0/tlsv1.1 still count as "something was named"
        started = True
        enabled = enabled - versions if negate else enabled | versions
    return enabled


def _names_of(certificate: x509.Certificate) -> tuple[str, ...]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        dns = san.value.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)]
        if dns or ips:
            return (*dns, *ips)
    common = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return tuple(str(attr.value) for attr in common)


def cert_names(path: str) -> tuple[str, ...]:
    """The names the first certificate in PEM file ``path`` is valid for."""
    from cryptography import x509

    with open(path, "rb") as f:
        certificates = x509.load_pem_x509_certificates(f.read())
    return _names_of(certificates[0])


def match_name(cert_name: str, name: str) -> bool:
    """libtls ``tls_match_name``: exact (case-insensitive) or a ``*.domain.tld``
    wildcard standing for exactly one leading label."""
    if cert_name.lower() == name.lower():
        return True
    if not cert_name.startswith("*."):
        return False
    domain = cert_name[1:]
    if domain.startswith("..") or "." not in domain[1:]:
        return False
    next_dot = domain.index(".", 1)
    if domain[next_dot + 1 : next_dot + 2] == ".":
        return False
    if name.startswith("."):
        return False
    dot = name.find(".")
    if dot < 0 or len(name) - dot == 1:
        return False
    return domain.lower() == name[dot:].lower()


def _pki(config: Config, name: str, listener: Listener) -> Pki:
    pki = config.pkis.get(name)
    if pki is None:
        raise ConfigError(f"listener uses unknown pki {name}", listener.file or None, listener.line)
    return pki


def _fail(pki: Pki, message: str) -> ConfigError:
    return ConfigError(f"pki {pki.name}: {message}", pki.file or None, pki.line or None)


def _no_password() -> bytes:
    # an encrypted key fails to load instead of prompting on a terminal
    raise ValueError("the key is encrypted")


def _load_dh(context: ssl.SSLContext) -> None:
    fd, path = tempfile.mkstemp(prefix="mta-dh-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(FFDHE2048)
        context.load_dh_params(path)
    finally:
        os.unlink(path)


def openssl_ciphers(text: str | None) -> str:
    """The OpenSSL cipher list for a libtls ``ciphers`` string (None: ``secure``)."""
    if text is None:
        return _DEFAULT_CIPHERS
    return _CIPHER_KEYWORDS.get(text.lower(), text)


def _ciphers(listener: Listener, config: Config) -> str:
    return openssl_ciphers(listener.ciphers or config.smtp.ciphers or config.ciphers)


def _versions(listener: Listener) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    here = (listener.file or None, listener.line)
    if listener.protocols is None:
        return _V12, _V13
    try:
        enabled = parse_protocols(listener.protocols)
    except ValueError:
        raise ConfigError(f'failed to parse protocols "{listener.protocols}"', *here) from None
    if not enabled:
        raise ConfigError(f'protocols "{listener.protocols}" enable no TLS version', *here)
    return min(enabled), max(enabled)


def _base_context(
    listener: Listener, config: Config, dhe: str, ca_file: str | None
) -> ssl.SSLContext:
    here = (listener.file or None, listener.line)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = _versions(listener)
    ciphers = _ciphers(listener, config)
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        raise ConfigError(f'no ciphers for "{ciphers}"', *here) from None
    context.options |= ssl.OP_NO_TICKET | ssl.OP_CIPHER_SERVER_PREFERENCE
    if dhe in ("auto", "legacy"):
        _load_dh(context)
    if listener.verify:
        context.verify_mode = ssl.CERT_REQUIRED
        if ca_file is None:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        else:
            try:
                context.load_verify_locations(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                message = f"ca {listener.ca}: cannot load {ca_file}: {reason}"
                raise ConfigError(message, *here) from None
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_keypair(context: ssl.SSLContext, pki: Pki) -> tuple[str, ...]:
    if pki.cert is None:
        raise _fail(pki, "missing certificate file")
    if pki.key is None:
        raise _fail(pki, "missing key file")
    for path, what in ((pki.cert, "certificate"), (pki.key, "key")):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise _fail(pki, f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    try:
        names = cert_names(pki.cert)
    except (ValueError, IndexError) as exc:
        raise _fail(pki, f"no valid certificate in {pki.cert}: {exc}") from None
    try:
        context.load_cert_chain(pki.cert, pki.key, password=_no_password)
    except (ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            message = f"key {pki.key} does not match certificate {pki.cert}"
        else:
            message = f"cannot load key {pki.key} with certificate {pki.cert}: {reason}"
        raise _fail(pki, message) from None
    return names


def _sni_callback(
    choices: list[tuple[tuple[str, ...], ssl.SSLContext]],
) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]:
    def choose(ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if not server_name:
            return None
        try:
            ipaddress.ip_address(server_name)
            return None  # an IP literal is not a name (RFC 6066); libtls ignores it
        except ValueError:
            pass
        for names, context in choices:
            if any(match_name(cert_name, server_name) for cert_name in names):
                ssl_object.context = context
                return None
        return None

    return choose


def server_context(listener: Listener, config: Config) -> ssl.SSLContext:
    """The server context for ``listener``; ConfigError naming the pki, the file
    and the reason when a certificate or key cannot be used."""
    here = (listener.file or None, listener.line)
    if not listener.pki:
        raise ConfigError("listener has TLS but no pki", *here)
    pkis = [_pki(config, name, listener) for name in listener.pki]
    ca_file: str | None = None
    if listener.ca is not None:
        ca = config.cas.get(listener.ca)
        if ca is None or ca.cert is None:
            raise ConfigError(f"listener uses unknown ca {listener.ca}", *here)
        ca_file = ca.cert
    dhe = pkis[0].dhe

    def build(pki: Pki) -> tuple[ssl.SSLContext, tuple[str, ...]]:
        context = _base_context(listener, config, dhe, ca_file)
        return context, _load_keypair(context, pki)

    default, _ = build(pkis[0])
    others = [(names, context) for context, names in map(build, pkis[1:])]
    if others:
        default.sni_callback = _sni_callback(others)
    return default
