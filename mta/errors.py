"""The one exception hierarchy of mta: every error the project raises on purpose is here."""

from __future__ import annotations

from mta.log import quote

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "ControlError",
    "CorruptEnvelope",
    "CorruptMessage",
    "FilterError",
    "FilterProtocolError",
    "MTAError",
    "PermanentFailure",
    "RouteError",
    "RoutePermanentFailure",
    "RouteTemporaryFailure",
    "SpoolCorrupt",
    "SpoolError",
    "SpoolFull",
    "SpoolNotFound",
    "TableError",
    "TemporaryFailure",
]


class MTAError(Exception):
    """Base of every error mta raises deliberately."""


class ConfigError(MTAError):
    """A configuration problem, located at ``file:line`` when known."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        if self.file is not None and self.line is not None:
            return f"{self.file}:{self.line}: {self.message}"
        if self.file is not None:
            return f"{self.file}: {self.message}"
        return self.message


class ConfigErrors(ConfigError):
    """Several configuration problems found in one pass, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.message, first.file, first.line)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class TableError(MTAError):
    """A table could not be loaded or a lookup in it failed (a temporary failure at runtime)."""


class TemporaryFailure(MTAError):
    """Something failed that may succeed later: the caller retries (4xx)."""


class PermanentFailure(MTAError):
    """Something failed for good: the caller gives up (5xx)."""


class RouteError(MTAError):
    """No way to reach a destination domain (MX resolution failed, or it leads back
    to us): ``text`` for the log and the bounce, ``status`` the RFC 3463 enhanced
    status code (``5.1.2``).  Raised as one of the two subclasses below."""

    def __init__(self, text: str, status: str) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


class RouteTemporaryFailure(RouteError, TemporaryFailure):
    """A route may exist later (DNS failure or timeout, no usable address yet): ``4.x.x``."""


class RoutePermanentFailure(RouteError, PermanentFailure):
    """The domain cannot be reached (NXDOMAIN, Null MX, routing loop): ``5.x.x``."""


class SpoolError(TemporaryFailure):
    """The spool could not store or read something (``451 4.3.0``); nothing half-written is left."""


class SpoolFull(SpoolError):
    """The spool's filesystem is full or over quota (ENOSPC / EDQUOT: ``452 4.3.1``)."""


class SpoolCorrupt(SpoolError):
    """A spool file failed its checks (format, checksum, gzip CRC, GCM tag, wrong key)."""


class CorruptEnvelope(SpoolCorrupt):
    """An envelope file is not a valid envelope of this spool."""


class CorruptMessage(SpoolCorrupt):
    """A message file is missing, truncated or cannot be decoded."""


class SpoolNotFound(MTAError, LookupError):
    """No such message or envelope in the queue (already delivered or removed)."""


class ControlError(MTAError):
    """A control request (``mtactl``) was refused or could not be carried out."""


class FilterError(MTAError):
    """A filter process failed (it exited, or broke the smtpd-filters(7) protocol):
    the sessions it filters get a temporary failure and it is restarted."""


class FilterProtocolError(FilterError):
    """A filter wrote something the filter protocol does not allow: ``reason``
    says what, ``line`` is the offending line (quoted safely by ``str()``)."""

    def __init__(self, reason: str, line: bytes | str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line

    def __str__(self) -> str:
        if self.line is None:
            return self.reason
        text = self.line if isinstance(self.line, str) else self.line.decode("utf-8", "replace")
        return f"{self.reason}: {quote(text, 200)}"
