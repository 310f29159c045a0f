"""The relay client's TLS context: settings from the configuration, and the context."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mta.config.model import Ca, Config, Pki, Relay
from mta.errors import ConfigError
from mta.relay.tlsclient import ClientTls, client_context, relay_tls
from tests.e2e.certs import make_certs


def test_relay_tls_takes_pki_ca_and_ciphers() -> None:
    config = Config(
        pkis={"out": Pki("out", cert="/c.crt", key="/c.key")},
        cas={"mine": Ca("mine", cert="/ca.pem")},
        ciphers="legacy",
    )
    relay = Relay(pki="out", ca="mine", protocols="tlsv1.3")
    assert relay_tls(relay, config) == ClientTls(
        ca_file="/ca.pem",
        cert_file="/c.crt",
        key_file="/c.key",
        ciphers="legacy",
        protocols="tlsv1.3",
    )
    assert relay_tls(Relay(ciphers="secure"), config).ciphers == "secure"
    with pytest.raises(ConfigError, match="unknown pki"):
        relay_tls(Relay(pki="nope"), config)
    with pytest.raises(ConfigError, match="unknown ca"):
        relay_tls(Relay(ca="nope"), config)


def test_verify_and_no_verify_contexts(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    verifying = client_context(ClientTls(ca_file=str(certs.ca_file)), verify=True)
    assert verifying.verify_mode is ssl.CERT_REQUIRED and verifying.check_hostname
    trusting = client_context(ClientTls(), verify=False)
    assert trusting.verify_mode is ssl.CERT_NONE and not trusting.check_hostname
    assert client_context(ClientTls(), verify=False) is trusting  # cached


def test_protocols() -> None:
    context = client_context(ClientTls(protocols="tlsv1.3"), verify=False)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert context.maximum_version is ssl.TLSVersion.TLSv1_3
    with pytest.raises(ConfigError, match="failed to parse"):
        client_context(ClientTls(protocols="sslv3"), verify=False)
    with pytest.raises(ConfigError, match="enable no TLS version"):
        client_context(ClientTls(protocols="tlsv1.1"), verify=False)


def test_unusable_files_and_ciphers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load CA file"):
        client_context(ClientTls(ca_file=str(tmp_path / "missing.pem")), verify=True)
    with pytest.raises(ConfigError, match="cannot load client certificate"):
        missing = str(tmp_path / "missing.crt")
        client_context(ClientTls(cert_file=missing, key_file=missing), verify=False)
    with pytest.raises(ConfigError, match="has no key"):
        client_context(ClientTls(cert_file="/c.crt"), verify=False)
    with pytest.raises(ConfigError, match="no ciphers"):
        client_context(ClientTls(ciphers="NOSUCHCIPHER"), verify=False)
