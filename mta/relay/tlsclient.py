"""TLS for the relay client: the ``ssl.SSLContext`` of an outgoing session.

As OpenSMTPD's ``mta_session.c`` sets up libtls for a relay:

- ``verify`` (``smtps://``, ``smtp+tls://``, or the action's ``tls`` without
  ``no-verify``): the server's certificate must chain to the relay's ``ca``
  (else the system CAs) and name the host (the MX name, also sent as SNI);
  otherwise neither is checked.
- ``pki``: a client certificate and key offered to the server.
- ``ciphers`` / ``protocols``: libtls syntax, as for listeners
  (:func:`mta.net.tls.openssl_ciphers`, :func:`mta.net.tls.parse_protocols`).

Contexts are cached per settings: a relay pool opens many sessions with one.
"""

from __future__ import annotations

import functools
import ssl

import attrs

from mta.config.model import Config, Relay
from mta.errors import ConfigError
from mta.net.tls import openssl_ciphers, parse_protocols

__all__ = ["ClientTls", "client_context", "relay_tls"]


@attrs.frozen
class ClientTls:
    """What a relay asks of TLS, besides ``verify`` (the client's config has it)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    ciphers: str | None = None
    protocols: str | None = None


def relay_tls(relay: Relay, config: Config) -> ClientTls:
    """The TLS settings of a ``relay`` action: its ``pki``, ``ca``, ``ciphers``
    (else the global ones) and ``protocols``; ConfigError for an unknown name."""
    cert_file = key_file = ca_file = None
    if relay.pki is not None:
        pki = config.pkis.get(relay.pki)
        if pki is None:
            raise ConfigError(f"relay uses unknown pki {relay.pki}")
        cert_file, key_file = pki.cert, pki.key
    if relay.ca is not None:
        ca = config.cas.get(relay.ca)
        if ca is None or ca.cert is None:
            raise ConfigError(f"relay uses unknown ca {relay.ca}")
        ca_file = ca.cert
    return ClientTls(
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        ciphers=relay.ciphers or config.ciphers,
        protocols=relay.protocols,
    )


@functools.lru_cache(maxsize=64)
def client_context(settings: ClientTls, *, verify: bool) -> ssl.SSLContext:
    """A client context for ``settings``; ConfigError when a file, the cipher
    list or the protocols cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    versions = {ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3}
    if settings.protocols is not None:
        try:
            versions = set(parse_protocols(settings.protocols))
        except ValueError:
            raise ConfigError(f'failed to parse protocols "{settings.protocols}"') from None
        if not versions:
            raise ConfigError(f'protocols "{settings.protocols}" enable no TLS version')
    context.minimum_version, context.maximum_version = min(versions), max(versions)
    ciphers = openssl_ciphers(settings.ciphers)
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        raise ConfigError(f'no ciphers for "{ciphers}"') from None
    if verify:
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            if settings.ca_file is None:
                context.load_default_certs(ssl.Purpose.SERVER_AUTH)
            else:
                context.load_verify_locations(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CA file {settings.ca_file}: {exc}") from None
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.cert_file is not None:
        if settings.key_file is None:
            raise ConfigError(f"client certificate {settings.cert_file} has no key")
        try:
            context.load_cert_chain(settings.cert_file, settings.key_file, password=_no_password)
        except (OSError, ssl.SSLError, ValueError) as exc:
            message = f"cannot load client certificate {settings.cert_file}: {exc}"
            raise ConfigError(message) from None
    return context


def _no_password() -> bytes:
    raise ValueError("the key is encrypted")
