"""The ``mta-sendmail`` command: a sendmail(8)-compatible enqueuer (arguments only, for now).

It understands ``-t``, ``-i``/``-oi``, ``-f``, ``-F``, ``-bs``, ``-bi`` and
recipient arguments.  Submission through the local socket arrives with the
server; until then it says so and exits with EX_TEMPFAIL (75) so callers keep
the message.  ``-bi`` (newaliases) works.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["EX_TEMPFAIL", "main", "parse_args"]

EX_TEMPFAIL = 75


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mta-sendmail", add_help=True)
    p.add_argument("-t", action="store_true", help="read recipients from the headers")
    p.add_argument("-i", action="store_true", help="a lone dot does not end the message")
    p.add_argument(
        "-o",
        action="append",
        default=[],
        metavar="OPTION",
        help="sendmail options (only -oi is meaningful)",
    )
    p.add_argument("-f", metavar="SENDER", help="envelope sender")
    p.add_argument("-F", metavar="NAME", help="full name of the sender")
    p.add_argument("-b", metavar="MODE", help="-bs: SMTP on stdin/stdout; -bi: newaliases")
    p.add_argument("-v", action="store_true")
    p.add_argument("recipients", nargs="*")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.b == "i":
        from mta.cli.ctl import main as ctl

        return ctl(["newaliases"])
    if args.b not in (None, "s", "m"):
        print(f"mta-sendmail: unsupported mode -b{args.b}", file=sys.stderr)
        return 64
    print(
        "mta-sendmail: submission is not available yet (it needs the mta daemon's local "
        "socket, which arrives with the server); nothing was sent",
        file=sys.stderr,
    )
    return EX_TEMPFAIL
