"""The ``mtactl`` command: smtpctl(8)'s verbs.

``makemap``, ``newaliases`` and ``encrypt`` work offline.  The other verbs
(show, schedule, remove, discover, pause, resume, update, log, monitor, reload) talk
to the running daemon through ``SPOOL/mta.sock`` (:mod:`mta.control`); with
the daemon down, ``show queue`` reads the spool itself, as smtpctl does.
"""

from __future__ import annotations

import argparse
import os
import sys

from mta.auth.hashes import make_hash
from mta.cli.main import default_spool
from mta.control.client import DaemonNotRunning, call, offline_queue
from mta.control.server import CONTROL_SOCKET
from mta.errors import ControlError, TableError
from mta.tables.makemap import MapType, makemap

__all__ = ["main"]

DAEMON_VERBS = {
    "show": [
        "queue",
        "envelope",
        "message",
        "stats",
        "status",
        "routes",
        "hosts",
        "relays",
        "hoststats",
    ],
    "schedule": None,
    "remove": None,
    "pause": ["envelope", "mda", "mta", "smtp"],
    "resume": ["envelope", "mda", "mta", "smtp", "route"],
    "update": ["table"],
    "log": ["brief", "verbose"],
    "monitor": None,
    "discover": None,
    "reload": None,
}


def _makemap(argv: list[str], prog: str = "mtactl makemap") -> int:
    p = argparse.ArgumentParser(prog=prog, description="build a db: table (Berkeley DB hash)")
    p.add_argument("-t", dest="type", choices=[t.value for t in MapType], default="plain")
    p.add_argument("-o", dest="output", help="output file (default: SOURCE.db)")
    p.add_argument("source")
    args = p.parse_args(argv)
    try:
        count = makemap(args.source, args.output, MapType(args.type))
    except TableError as exc:
        print(f"{prog.split()[-1]}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.output or args.source + '.db'}: {count} entries", file=sys.stderr)
    return 0


def _newaliases(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mtactl newaliases", description="rebuild an aliases db")
    p.add_argument("source", nargs="?", default="/etc/mail/aliases")
    args = p.parse_args(argv)
    return _makemap(["-t", "aliases", args.source], "mtactl newaliases")


def _encrypt(argv: list[str]) -> int:
    """``smtpctl encrypt [string]``: print the crypt hash of the argument, or of
    every line read from stdin, for a listener's credentials table."""
    if len(argv) > 1:
        print("usage: mtactl encrypt [string]", file=sys.stderr)
        return 2
    if argv:
        print(make_hash(argv[0]))
        return 0
    for line in sys.stdin:
        print(make_hash(line.rstrip("\r\n")))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    spool = default_spool()
    if len(argv) >= 2 and argv[0] == "--spool":
        spool = argv[1]
        argv = argv[2:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        verbs = ", ".join(["makemap", "newaliases", "encrypt", *DAEMON_VERBS])
        print(f"usage: mtactl [--spool DIR] VERB ...\nverbs: {verbs}")
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb == "makemap":
        return _makemap(rest)
    if verb == "newaliases":
        return _newaliases(rest)
    if verb == "encrypt":
        return _encrypt(rest)
    if verb not in DAEMON_VERBS:
        print(f"mtactl: unknown verb {verb!r}", file=sys.stderr)
        return 2
    choices = DAEMON_VERBS[verb]
    if choices is not None and (not rest or rest[0] not in choices):
        print(f"mtactl: {verb} needs one of: {', '.join(choices)}", file=sys.stderr)
        return 2
    return _daemon(spool, argv)


def _daemon(spool: str, argv: list[str]) -> int:
    out = sys.stdout.buffer
    try:
        try:
            timeout = None if argv[0] == "monitor" else 60.0
            call(os.path.join(spool, CONTROL_SOCKET), argv, out, timeout=timeout)
        except DaemonNotRunning:
            if argv != ["show", "queue"]:
                raise
            offline_queue(spool, out)
    except ControlError as exc:
        print(f"mtactl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # ends monitor
        return 0
    return 0
