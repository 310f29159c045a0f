"""Test certificates made by trustme: a CA, a server certificate for localhost
and 127.0.0.1 (plus a second name for SNI), and a client certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

import attrs
import trustme

__all__ = ["Certs", "make_certs"]


@attrs.frozen
class Certs:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path
    other_cert_file: Path  # for "mail.example.test"
    other_key_file: Path
    client_file: Path  # client certificate and key, one PEM

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context


def make_certs(directory: Path) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    other = ca.issue_cert("mail.example.test")
    client = ca.issue_cert("client@example.test")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    paths = {}
    for name, leaf in (("server", server), ("other", other)):
        cert = directory / f"{name}.crt"
        key = directory / f"{name}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        paths[name] = (cert, key)
    client_file = directory / "client.pem"
    client_file.write_bytes(
        client.private_key_pem.bytes() + b"".join(b.bytes() for b in client.cert_chain_pems)
    )
    return Certs(
        ca,
        ca_file,
        paths["server"][0],
        paths["server"][1],
        paths["other"][0],
        paths["other"][1],
        client_file,
    )
