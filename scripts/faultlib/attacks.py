"""The garbage scenario's inputs: bogus SMTP a hostile or broken client might send.

Each :class:`Attack` makes its bytes from a random source (so a seed
replays a campaign) and says whether it is sent after a proper EHLO (its
reply read first) or straight after the greeting.  The bytes are sent in one
go, the way a pipelining client or a fuzzer would.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from faultlib.mail import ADDRESS

__all__ = ["ATTACKS", "Attack"]

CRLF = b"\r\n"
MAIL = f"MAIL FROM:<{ADDRESS}>".encode()
RCPT = f"RCPT TO:<{ADDRESS}>".encode()
VERBS = [
    b"HELO", b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"QUIT", b"VRFY", b"EXPN",
    b"HELP", b"AUTH", b"STARTTLS", b"BDAT", b"TURN", b"ETRN", b"XCLIENT", b"GET", b"POST",
]  # fmt: skip
ARGS = [
    b"", b"x", b"FROM:", b"TO:", b"FROM:<>", b"TO:<>", b"FROM:<@@@>", b"TO:<a@b@c>",
    b"FROM:<a@b> SIZE=99999999999999999999", b"FROM:<a@b> BODY=9BIT", b"FROM:<a@b> FOO=BAR",
    b"TO:<postmaster> NOTIFY=BOGUS", b"TO:<x@[300.1.1.1]>", b"PLAIN AAAA", b"LOGIN =",
    b"PLAIN " + b"A" * 600, b"/ HTTP/1.0", b"10 LAST", b"FROM:<\xc3\xa9@x>", b"TO:<\"a b\"@x>",
]  # fmt: skip


@dataclass(frozen=True)
class Attack:
    name: str
    after_ehlo: bool
    make: Callable[[random.Random], bytes]


def _binary(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 8192))


def _binary_lines(rng: random.Random) -> bytes:
    return CRLF.join(rng.randbytes(rng.randint(0, 200)) for _ in range(rng.randint(1, 40))) + CRLF


def _long_line(rng: random.Random) -> bytes:
    return (
        rng.choice([b"A", b"MAIL FROM:<", b"EHLO "])
        + b"x" * rng.choice([600, 1100, 5000, 70000, 300000])
        + rng.choice([CRLF, b""])
    )


def _long_address(rng: random.Random) -> bytes:
    local = b"a" * rng.choice([65, 300, 3000])
    domain = b"b" * rng.choice([10, 256, 3000])
    return b"MAIL FROM:<" + local + b"@" + domain + b">" + CRLF + RCPT + CRLF


def _nul(rng: random.Random) -> bytes:
    lines = [
        b"NOOP\x00",
        b"MAIL FROM:<a\x00b@x>",
        b"RCPT TO:<\x00>",
        b"\x00\x00\x00",
        b"HELO a\x00b",
    ]
    rng.shuffle(lines)
    return CRLF.join(lines) + CRLF


def _bad_commands(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(1, 30)):
        verb = rng.choice(VERBS)
        if rng.random() < 0.3:
            verb = verb.lower()
        lines.append(verb + b" " + rng.choice(ARGS))
    return CRLF.join(lines) + CRLF


def _out_of_order(rng: random.Random) -> bytes:
    steps = [b"DATA", RCPT, b"BDAT 10 LAST", MAIL, MAIL, b"DATA", b"RSET", RCPT, b"DATA"]
    rng.shuffle(steps)
    return CRLF.join(steps) + CRLF


def _pipelined_before_ehlo(rng: random.Random) -> bytes:
    del rng
    return CRLF.join([b"EHLO x", MAIL, RCPT, b"DATA", b"Subject: x", b"", b"body", b".", b"QUIT"])


def _smuggling(rng: random.Random) -> bytes:
    end = rng.choice([b"\n.\n", b"\r.\r\n", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r"])
    injected = MAIL + CRLF + RCPT + CRLF + b"DATA" + CRLF + b"Subject: smuggled" + CRLF + CRLF
    return (
        MAIL + CRLF + RCPT + CRLF + b"DATA" + CRLF + b"Subject: x" + CRLF + CRLF + b"body"
        + end + injected + b"x" + CRLF + b"." + CRLF
    )  # fmt: skip


def _bad_data(rng: random.Random) -> bytes:
    body = rng.choice(
        [
            b"a\x00b" + CRLF,
            b"bare\nLF\n",
            b"bare\rCR\r",
            (b"X-Long: " + b"h" * 5000 + CRLF),
            b"".join(b"X-H%d: v" % i + CRLF for i in range(3000)),
            rng.randbytes(2000),
        ]
    )
    return MAIL + CRLF + RCPT + CRLF + b"DATA" + CRLF + body + CRLF + b"." + CRLF


def _tls_hello(rng: random.Random) -> bytes:
    return b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(rng.randint(32, 500))


def _command_flood(rng: random.Random) -> bytes:
    command = rng.choice([b"NOOP", b"RSET", b"RCPT TO:<a@b>", b"VRFY x", b"FOO"])
    return (command + CRLF) * rng.choice([200, 1000, 3000])


def _many_recipients(rng: random.Random) -> bytes:
    rcpts = b"".join(b"RCPT TO:<u%d@localhost>" % i + CRLF for i in range(rng.randint(100, 1200)))
    return MAIL + CRLF + rcpts + b"RSET" + CRLF


def _control_chars(rng: random.Random) -> bytes:
    ctl = bytes(rng.choice([1, 7, 8, 11, 12, 27, 127]) for _ in range(8))
    return b"HELO " + ctl + CRLF + b"MAIL FROM:<" + ctl + b"@x>" + CRLF


def _starttls_plain(rng: random.Random) -> bytes:
    del rng
    return b"STARTTLS" + CRLF + MAIL + CRLF + b"AUTH PLAIN =" + CRLF


ATTACKS = (
    Attack("binary", False, _binary),
    Attack("binary lines", False, _binary_lines),
    Attack("long line", False, _long_line),
    Attack("long address", True, _long_address),
    Attack("NUL bytes", True, _nul),
    Attack("bad commands", False, _bad_commands),
    Attack("bad commands after EHLO", True, _bad_commands),
    Attack("out of order", True, _out_of_order),
    Attack("pipelining before EHLO", False, _pipelined_before_ehlo),
    Attack("smuggling", True, _smuggling),
    Attack("bad DATA", True, _bad_data),
    Attack("TLS on plain port", False, _tls_hello),
    Attack("command flood", True, _command_flood),
    Attack("many recipients", True, _many_recipients),
    Attack("control characters", False, _control_chars),
    Attack("STARTTLS without TLS", True, _starttls_plain),
)
