"""Relay URLs (``relay host`` in the modern grammar, ``relay via`` in the legacy
one, and ``relayhost`` table values), parsed like OpenSMTPD ``text_to_relayhost``.

Syntax: ``[schema://][label@]host[:port]`` where host is ``[literal]`` or
``[A-Za-z0-9_.-]+``.  Modern schemas: ``smtp://`` (STARTTLS when offered, the
default), ``smtp+tls://`` (STARTTLS required), ``smtp+notls://`` (plain),
``smtps://`` (implicit TLS, port 465) and ``lmtp://`` (port mandatory).  A label
selects credentials in the ``auth`` table and requires a TLS schema.

Legacy (OpenSMTPD <= 6.0) schemas are accepted and mapped: ``tls://`` and
``tls+auth://`` (STARTTLS required), ``smtps+auth://`` (SMTPS),
``secure://`` / ``secure+auth://`` (SMTPS, falling back to STARTTLS),
``backup://`` / ``tls+backup://``.  With ``legacy=True`` (configurations in the
``accept``/``reject`` grammar) the 6.0 meanings apply: ``smtp://`` is plain,
``smtp+tls://`` and no schema are opportunistic, and a label is allowed exactly
with the ``+auth`` schemas.
"""

from __future__ import annotations

import enum
import ipaddress

import attrs

from mta.errors import TableError

__all__ = ["RelayHost", "RelayTLS", "parse_relay_url", "valid_domainpart"]

MAX_URL_LENGTH = 1023
MAX_LABEL_LENGTH = 255


class RelayTLS(enum.Enum):
    """How the connection to the relay is secured."""

    OPPORTUNISTIC = "opportunistic"
    """STARTTLS when offered, plain otherwise."""
    STARTTLS = "starttls"
    """STARTTLS required."""
    NO = "no"
    """Never TLS."""
    SMTPS = "smtps"
    """TLS from the first byte."""
    SECURE = "secure"
    """Legacy ``secure://``: SMTPS, falling back to required STARTTLS."""


@attrs.frozen
class _Schema:
    name: str
    tls: RelayTLS
    port: int
    lmtp: bool = False
    auth: bool = False
    backup: bool = False


_MODERN = {
    "smtp": _Schema("smtp", RelayTLS.OPPORTUNISTIC, 25),
    "smtp+tls": _Schema("smtp+tls", RelayTLS.STARTTLS, 25),
    "smtp+notls": _Schema("smtp+notls", RelayTLS.NO, 25),
    "lmtp": _Schema("lmtp", RelayTLS.NO, 0, lmtp=True),
    "smtps": _Schema("smtps", RelayTLS.SMTPS, 465),
}
_COMPAT = {
    "tls": _Schema("smtp+tls", RelayTLS.STARTTLS, 25),
    "tls+auth": _Schema("smtp+tls", RelayTLS.STARTTLS, 25, auth=True),
    "smtps+auth": _Schema("smtps", RelayTLS.SMTPS, 465, auth=True),
    "secure": _Schema("secure", RelayTLS.SECURE, 465),
    "secure+auth": _Schema("secure", RelayTLS.SECURE, 465, auth=True),
    "backup": _Schema("smtp", RelayTLS.OPPORTUNISTIC, 25, backup=True),
    "tls+backup": _Schema("smtp+tls", RelayTLS.STARTTLS, 25, backup=True),
}
_LEGACY_OVERRIDES = {
    "smtp": _Schema("smtp+notls", RelayTLS.NO, 25),
    "smtp+tls": _Schema("smtp", RelayTLS.OPPORTUNISTIC, 25),
}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_AUTH_TLS = (RelayTLS.STARTTLS, RelayTLS.SMTPS, RelayTLS.SECURE)


@attrs.frozen
class RelayHost:
    """A parsed relay URL.  ``schema`` is the modern schema it behaves as."""

    schema: str
    host: str
    port: int
    tls: RelayTLS
    lmtp: bool = False
    auth_label: str | None = None
    backup: bool = False

    @property
    def auth(self) -> bool:
        """True when credentials are sent (a label was given)."""
        return self.auth_label is not None

    def __str__(self) -> str:
        label = f"{self.auth_label}@" if self.auth_label is not None else ""
        return f"{self.schema}://{label}{self.host}:{self.port}"


def valid_domainpart(host: str) -> bool:
    """OpenSMTPD ``valid_domainpart``: a ``[address]`` literal or a host name."""
    if host.startswith("["):
        inner = host[6:] if host[:6].lower() == "[ipv6:" else host[1:]
        if not inner.endswith("]") or "]" in inner[:-1]:
            return False
        try:
            ipaddress.ip_address(inner[:-1])
        except ValueError:
            return False
        return True
    if not host or len(host) > 253 or host.endswith("."):
        return False
    for label in host.split("."):
        if not label or len(label) > 63:
            return False
        if not all(c in _HOST_CHARS and c != "." for c in label):
            return False
        if label.startswith("-") or label.endswith("-"):
            return False
    return True


def _schema_of(text: str, legacy: bool) -> tuple[_Schema, str]:
    name, sep, rest = text.partition("://")
    if not sep:
        return (_LEGACY_OVERRIDES if legacy else _MODERN)["smtp+tls" if legacy else "smtp"], text
    key = name.lower()
    schema = (_LEGACY_OVERRIDES.get(key) if legacy else None) or _MODERN.get(key)
    schema = schema or _COMPAT.get(key)
    if schema is None:
        raise TableError(f"invalid relay URL {text!r}: unknown schema {name}://")
    return schema, rest


def parse_relay_url(text: str, *, legacy: bool = False) -> RelayHost:
    """Parse a relay URL; TableError with the reason when it is invalid."""
    if len(text) > MAX_URL_LENGTH:
        raise TableError("invalid relay URL: too long")
    schema, rest = _schema_of(text, legacy)
    label: str | None = None
    if "@" in rest:
        label, _, rest = rest.partition("@")
        if len(label) > MAX_LABEL_LENGTH:
            raise TableError(f"invalid relay URL {text!r}: label too long")
        if not label:
            label = None
    if rest.startswith("["):
        end = rest.find("]")
        if end == -1:
            raise TableError(f"invalid relay URL {text!r}: unterminated [address]")
        host, rest = rest[: end + 1], rest[end + 1 :]
    else:
        end = 0
        while end < len(rest) and rest[end] in _HOST_CHARS:
            end += 1
        host, rest = rest[:end], rest[end:]
    port = schema.port
    if rest:
        digits = rest[1:]
        if not rest.startswith(":") or not digits.isascii() or not digits.isdigit():
            raise TableError(f"invalid relay URL {text!r}: bad port or trailing text")
        port = int(digits)
        if not 1 <= port <= 65535:
            raise TableError(f"invalid relay URL {text!r}: port out of range")
    if not valid_domainpart(host):
        raise TableError(f"invalid relay URL {text!r}: bad host {host!r}")
    if schema.lmtp and port == 0:
        raise TableError(f"invalid relay URL {text!r}: lmtp:// needs an explicit port")
    if schema.auth and label is None:
        raise TableError(f"invalid relay URL {text!r}: this schema needs a label@")
    if label is not None:
        allowed = schema.auth if legacy else schema.tls in _AUTH_TLS
        if not allowed:
            raise TableError(
                f"invalid relay URL {text!r}: authentication needs smtp+tls:// or smtps://"
            )
    return RelayHost(
        schema=schema.name,
        host=host,
        port=port,
        tls=schema.tls,
        lmtp=schema.lmtp,
        auth_label=label,
        backup=schema.backup,
    )
