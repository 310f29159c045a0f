"""Check the files behind ``pki`` and ``ca`` entries, as ``smtpd -n`` does.

Every pki needs a certificate file holding at least one PEM certificate and a
key file holding a private key; every ca needs a readable PEM certificate
file.  Problems are appended to the caller's error list, located at the line
that declared the entry.
"""

from __future__ import annotations

from mta.config import model
from mta.errors import ConfigError

__all__ = ["check_pki_files"]

_Here = tuple[str | None, int | None]


def _read(path: str) -> bytes | str:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        return exc.strerror or str(exc)


def _certificates_ok(path: str) -> str | None:
    from cryptography import x509  # at the first pki or ca: a plain server never needs it

    data = _read(path)
    if isinstance(data, str):
        return f"cannot read {path}: {data}"
    try:
        if not x509.load_pem_x509_certificates(data):
            return f"no certificate in {path}"
    except ValueError as exc:
        return f"no valid PEM certificate in {path}: {exc}"
    return None


def check_pki_files(
    pkis: dict[str, model.Pki], cas: dict[str, model.Ca], errors: list[ConfigError]
) -> None:
    """Append an error for each pki or ca whose files are missing or unusable."""
    for pki in pkis.values():
        here: _Here = (pki.file or None, pki.line or None)
        if pki.cert is None:
            errors.append(ConfigError(f"pki {pki.name}: missing certificate file", *here))
        elif (problem := _certificates_ok(pki.cert)) is not None:
            errors.append(
                ConfigError(f"pki {pki.name}: failed to load certificate file: {problem}", *here)
            )
        if pki.key is None:
            errors.append(ConfigError(f"pki {pki.name}: missing key file", *here))
        else:
            data = _read(pki.key)
            if isinstance(data, str):
                errors.append(
                    ConfigError(
                        f"pki {pki.name}: failed to load key file: cannot read {pki.key}: {data}",
                        *here,
                    )
                )
            else:
                from cryptography.hazmat.primitives.serialization import load_pem_private_key

                try:
                    load_pem_private_key(data, password=None)
                except (ValueError, TypeError) as exc:
                    errors.append(
                        ConfigError(
                            f"pki {pki.name}: failed to load key file {pki.key}: {exc}", *here
                        )
                    )
    for ca in cas.values():
        here = (ca.file or None, ca.line or None)
        if ca.cert is None:
            errors.append(ConfigError(f"ca {ca.name}: missing CA file", *here))
        elif (problem := _certificates_ok(ca.cert)) is not None:
            errors.append(ConfigError(f"ca {ca.name}: failed to load CA file: {problem}", *here))
