"""An SMTP reply: code, enhanced status code and text, as every layer passes it
around (the server state machine, the rules, the spool, filters)."""

from __future__ import annotations

import attrs

__all__ = ["Reply"]

MAX_LINE = 512
"""RFC 5321 reply line limit, CRLF included; longer text is cut."""


def _check_code(instance: Reply, attribute: attrs.Attribute[int], value: int) -> None:
    if not 200 <= value <= 599:
        raise ValueError(f"reply code out of range: {value}")


@attrs.frozen
class Reply:
    """``code enhanced text``; a multi-line reply has several ``lines``.

    ``close`` asks the server to close the connection once the reply is sent
    (421, and the few 5xx after which OpenSMTPD drops the session).
    """

    code: int = attrs.field(validator=_check_code)
    enhanced: str | None
    lines: tuple[str, ...]
    close: bool = False

    @classmethod
    def of(cls, code: int, enhanced: str | None, *lines: str, close: bool = False) -> Reply:
        return cls(code, enhanced, tuple(lines) or ("",), close)

    @property
    def positive(self) -> bool:
        """2xx and 3xx: the command succeeded (or may continue)."""
        return self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def text(self) -> str:
        """The reply as one line of text, as logs show it."""
        head = f"{self.code} {self.enhanced} " if self.enhanced else f"{self.code} "
        return head + " ".join(self.lines)

    def encode(self) -> bytes:
        """The wire form: every line ``code-`` but the last ``code ``, CRLF-terminated.

        CR, LF and NUL in the text are replaced by spaces so that no caller can
        inject a line, and each line is cut to the RFC 5321 limit."""
        out = []
        last = len(self.lines) - 1
        for index, line in enumerate(self.lines):
            sep = " " if index == last else "-"
            clean = line.replace("\r", " ").replace("\n", " ").replace("\0", " ")
            head = f"{self.code}{sep}{self.enhanced} " if self.enhanced else f"{self.code}{sep}"
            out.append((head + clean).encode("utf-8", "replace")[: MAX_LINE - 2] + b"\r\n")
        return b"".join(out)
