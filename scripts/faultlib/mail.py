"""Messages that can be recognised and checked after delivery, and the Maildir they land in.

Every message carries a token (``Subject: fault <token>``, also in its
Message-ID); its body is a pure function of the token (lines of letters from
a hash), so a delivered copy can be checked byte for byte without keeping
what was sent.  Flipping the case of a letter (XOR 0x20, what the
corrupt-spool scenario does) keeps the lines but changes the body.  The
token ends with the body size.  :func:`send` turns smtplib's outcomes into a
:class:`Reply`; :func:`scan` reads a Maildir into per-token counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import smtplib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from faultlib.daemon import USER

__all__ = [
    "ADDRESS",
    "Delivered",
    "Reply",
    "body_of",
    "connect",
    "delivered_count",
    "message",
    "orphans",
    "scan",
    "send",
    "token",
]

ADDRESS = f"{USER}@localhost"
LINE = 72
_SUBJECT = re.compile(rb"^Subject: fault (\S+)$", re.MULTILINE)
_LETTERS = b"abcdefghijklmnopqrstuvwxyz"


def token(prefix: str, n: int, size: int = 2048) -> str:
    """``prefix.n.size``: unique within a campaign when prefixes are."""
    return f"{prefix}.{n}.{size}"


def body_of(tok: str) -> bytes:
    """The body sent for ``tok``, with LF line ends: ``size`` bytes of letter lines."""
    size = int(tok.rsplit(".", 1)[1])
    rng = random.Random(hashlib.sha256(tok.encode()).digest())
    lines = []
    total = 0
    while total < size:
        n = min(LINE, max(1, size - total - 1))
        lines.append(bytes(rng.choice(_LETTERS) for _ in range(n)))
        total += n + 1
    return b"\n".join(lines) + b"\n"


def message(tok: str) -> bytes:
    """The whole message for ``tok``, CRLF line ends."""
    head = (
        f"From: <{ADDRESS}>\nTo: <{ADDRESS}>\nSubject: fault {tok}\n"
        f"Message-ID: <{tok}@faults.invalid>\n\n"
    ).encode()
    return (head + body_of(tok)).replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class Reply:
    """The server's verdict on one message: where (``mail``, ``rcpt``, ``data``) and the code."""

    stage: str
    code: int
    text: str = ""

    @property
    def accepted(self) -> bool:
        return self.stage == "data" and self.code == 250


def connect(port: int, timeout: float = 10.0, source: str | None = None) -> smtplib.SMTP:
    """An SMTP session to 127.0.0.1:``port`` after EHLO (from ``source``, if given)."""
    client = smtplib.SMTP(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0) if source else None
    )
    client.ehlo("faults.invalid")
    return client


def send(client: smtplib.SMTP, tok: str) -> Reply:
    """Send ``tok``'s message; a refusal is a Reply, a broken connection an exception
    (smtplib's ``SMTPServerDisconnected``, or an OSError)."""
    try:
        client.sendmail(ADDRESS, [ADDRESS], message(tok))
    except smtplib.SMTPSenderRefused as exc:
        return Reply("mail", exc.smtp_code, _text(exc.smtp_error))
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return Reply("rcpt", code, _text(text))
    except smtplib.SMTPDataError as exc:
        return Reply("data", exc.smtp_code, _text(exc.smtp_error))
    return Reply("data", 250)


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


@dataclass
class Delivered:
    """What a Maildir holds: copies per token, damaged copies per token, other files."""

    copies: Counter[str] = field(default_factory=Counter)
    damaged: Counter[str] = field(default_factory=Counter)
    other: int = 0

    def lost(self, tokens: set[str]) -> set[str]:
        return {t for t in tokens if not self.copies[t]}

    def duplicates(self, tokens: set[str]) -> int:
        """Extra copies of ``tokens`` (a message delivered 3 times counts 2)."""
        return sum(max(0, self.copies[t] - 1) for t in tokens)


def _delivered_files(maildir: Path) -> list[Path]:
    out = []
    for sub in ("new", "cur"):
        folder = maildir / sub
        with contextlib.suppress(OSError):
            out += [folder / n for n in os.listdir(folder)]
    return out


def delivered_count(maildir: Path) -> int:
    """Files in the Maildir's ``new/`` and ``cur/`` (cheap: names only)."""
    return len(_delivered_files(maildir))


def check(data: bytes) -> tuple[str | None, bool]:
    """The token of a delivered file (None: not one of ours) and whether its body is intact."""
    data = data.replace(b"\r\n", b"\n")
    head, sep, body = data.partition(b"\n\n")
    found = _SUBJECT.search(head)
    if found is None:
        return None, False
    tok = found.group(1).decode(errors="replace")
    try:
        expected = body_of(tok)
    except (ValueError, IndexError):
        return tok, False
    return tok, bool(sep) and body == expected


def scan(maildir: Path) -> Delivered:
    """Read every delivered file of ``maildir``."""
    result = Delivered()
    for path in _delivered_files(maildir):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        tok, intact = check(data)
        if tok is None:
            result.other += 1
            continue
        result.copies[tok] += 1
        if not intact:
            result.damaged[tok] += 1
    return result


def orphans(maildir: Path) -> int:
    """Files left in the Maildir's ``tmp/`` (a delivery that never finished)."""
    try:
        return len(os.listdir(maildir / "tmp"))
    except OSError:
        return 0


def tokens_in(data: bytes) -> set[str]:
    """The tokens named in raw bytes (a spool file)."""
    return {m.decode(errors="replace") for m in _SUBJECT.findall(data.replace(b"\r\n", b"\n"))}
