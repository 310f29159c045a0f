"""The ``mta-sendmail`` command: a sendmail(8)-compatible enqueuer.

``mta-sendmail [-tiv] [-f sender] [-F name] [-o option] [-b mode] [--spool DIR] [rcpt ...]``
reads a message on standard input and submits it over SMTP through the
daemon's local socket (``<spool>/enqueue.sock``), as OpenSMTPD's enqueue.c:

* ``-t`` adds the ``To:`` / ``Cc:`` / ``Bcc:`` addresses to the recipients;
  ``Bcc:`` headers are always removed;
* ``-f`` / ``-r`` set the sender (default: the invoking user at the server
  name), ``-F`` the full name of the ``From:`` header added when the message
  has none (default, without ``-f``: the user's GECOS name);
* without ``-i`` / ``-oi`` a line holding only ``.`` ends the message;
* ``From:``, ``Date:`` and ``Message-ID:`` are added when missing, and body
  lines too long for RFC 5322 are quoted-printable encoded;
* ``-N``, ``-R``, ``-V``: DSN ``NOTIFY``, ``RET`` and ``ENVID``.

When the daemon cannot be reached the message goes, durably, into
``<spool>/offline/``; the daemon submits it when it starts, and the exit
status is 0.  Otherwise the exit status follows sysexits(3): 0 when the daemon
took the message, EX_NOUSER when a recipient was refused (nothing is sent
then), EX_TEMPFAIL for a temporary failure, EX_DATAERR for a message or
address the daemon or this command refuses, EX_UNAVAILABLE for other refusals,
EX_USAGE for bad arguments.  ``-bs`` speaks SMTP on standard input and output,
relayed to the daemon (or, while it is down, served here with each message
kept offline); ``-bi`` rebuilds the aliases (``newaliases``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import pwd
import secrets
import sys
import time
from typing import NoReturn

import attrs
import trio

from mta.config.hostname import server_name
from mta.enqueue.addresses import arguments_addresses, sender_option, unique
from mta.enqueue.compose import Content, compose
from mta.enqueue.location import default_spool, offline_dir, socket_path
from mta.enqueue.offline import OfflineEnvelope, write_offline
from mta.enqueue.reader import read_input, spool_file
from mta.enqueue.scan import InputScanner, ScanError
from mta.enqueue.submit import (
    ClientTimeouts,
    Stage,
    Submission,
    SubmitResult,
    submit,
)
from mta.smtp.params import encode_xtext

__all__ = ["EX_TEMPFAIL", "gecos_name", "main", "parse_args"]

EX_TEMPFAIL = os.EX_TEMPFAIL
PROG = "mta-sendmail"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(os.EX_USAGE, f"{self.prog}: {message}\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The arguments; exits with EX_USAGE (64) on a bad one, as sendmail."""
    p = _Parser(prog=PROG, add_help=True, allow_abbrev=False)
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
    p.add_argument("-r", metavar="SENDER", help="envelope sender (obsolete form of -f)")
    p.add_argument("-F", metavar="NAME", help="full name of the sender")
    p.add_argument(
        "-b",
        metavar="MODE",
        help="-bm: enqueue (default); -bs: SMTP on stdin/stdout; -bi: newaliases",
    )
    p.add_argument("-N", metavar="DSN", help="DSN NOTIFY (NEVER, or SUCCESS,FAILURE,DELAY)")
    p.add_argument("-R", metavar="RET", help="DSN RET (FULL or HDRS)")
    p.add_argument("-V", metavar="ENVID", help="DSN ENVID")
    p.add_argument("-v", action="store_true", help="show the SMTP dialogue")
    for flag in ("-m", "-S", "-x"):
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    for flag in ("-A", "-B", "-e", "-L", "-p", "-O"):
        p.add_argument(flag, metavar="ARG", help=argparse.SUPPRESS)
    p.add_argument("--spool", metavar="DIR", help="spool directory (default: $MTA_SPOOL)")
    p.add_argument("recipients", nargs="*")
    return p.parse_args(argv)


def _error(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr)


def gecos_name(entry: pwd.struct_passwd) -> str:
    """The full name in a passwd entry's GECOS field: up to the first comma, with
    ``&`` replaced by the capitalised login name (enqueue.c ``build_from``)."""
    name = entry.pw_gecos.split(",", 1)[0]
    if "&" in name:
        login = entry.pw_name
        name = name.replace("&", login[:1].upper() + login[1:], 1)
    return name.strip()


def _user() -> tuple[str, pwd.struct_passwd | None]:
    try:
        entry = pwd.getpwuid(os.getuid())
    except KeyError:
        return "anonymous", None
    return entry.pw_name, entry


def _envelope(args: argparse.Namespace, sender: str) -> Submission:
    """The sender and DSN options (ValueError for a bad DSN option)."""
    return Submission(
        sender,
        (),
        dsn_notify=args.N.upper() if args.N else None,
        dsn_ret=args.R.upper() if args.R else None,
        dsn_envid=encode_xtext(args.V) if args.V else None,
    )


def _trace(line: str) -> None:
    print(line, flush=True)


def _report(result: SubmitResult) -> None:
    for rcpt, reply in result.refused:
        _error(f"<{rcpt}>: {reply.text}")
    if result.refused and not result.delivered:
        _error("recipient refused: nothing was sent")
    elif result.problem and not (result.refused and result.stage is Stage.RCPT):
        _error(result.problem)


def _save_offline(
    spool: str,
    submission: Submission,
    recipients: tuple[str, ...],
    content: Content,
    result: SubmitResult,
) -> int:
    envelope = OfflineEnvelope(
        sender=submission.sender,
        recipients=recipients,
        uid=os.getuid(),
        created=int(time.time()),
        eight_bit=submission.eight_bit,
        dsn_ret=submission.dsn_ret,
        dsn_envid=submission.dsn_envid,
        dsn_notify=submission.dsn_notify,
    )
    directory = offline_dir(spool)
    try:
        write_offline(directory, envelope, content)
    except OSError as exc:
        _error(result.problem)
        _error(f"cannot keep the message in {directory}: {exc.strerror or exc}; nothing was sent")
        return os.EX_TEMPFAIL
    if result.stage is not Stage.CONNECT:
        _error(f"{result.problem}; the message is kept and will be sent when mta starts")
    return os.EX_OK


def _enqueue(args: argparse.Namespace) -> int:
    spool = args.spool or default_spool()
    hostname = server_name()
    user, entry = _user()
    given = args.f if args.f is not None else args.r
    try:
        sender = sender_option(user if given is None else given, hostname)
        recipients = arguments_addresses(args.recipients, hostname)
        template = _envelope(args, sender)
    except ValueError as exc:  # AddressError included
        _error(str(exc))
        return os.EX_USAGE
    full_name = args.F
    if full_name is None and given is None and entry is not None:
        full_name = gecos_name(entry)
    scanner = InputScanner(
        hostname=hostname, ignore_dots=args.i or "i" in args.o, read_recipients=args.t
    )
    with spool_file() as kept:
        try:
            read_input(sys.stdin.buffer, scanner, kept)
        except ScanError as exc:
            _error(str(exc))
            return os.EX_DATAERR
        except OSError as exc:
            _error(f"cannot read the message: {exc.strerror or exc}")
            return os.EX_IOERR
        if args.t:
            recipients += scanner.recipients
        recipients = unique(recipients)
        if not recipients:
            _error("no recipients")
            return os.EX_USAGE
        now = time.time()
        try:
            content = compose(
                scanner,
                kept,
                from_address=sender or f"{user}@{hostname}",
                full_name=full_name,
                date=_dt.datetime.fromtimestamp(now).astimezone(),
                message_id=f"<{int(now)}.{secrets.token_hex(8)}@{hostname}>",
            )
        except ScanError as exc:
            _error(str(exc))
            return os.EX_DATAERR
        submission = attrs.evolve(
            template, recipients=tuple(recipients), eight_bit=scanner.eight_bit
        )
        with content:
            return _submit(args, spool, submission, content)


def _submit(args: argparse.Namespace, spool: str, submission: Submission, content: Content) -> int:
    try:
        timeouts = ClientTimeouts.from_env()
    except ValueError:
        timeouts = ClientTimeouts()
    result = trio.run(
        lambda: submit(
            socket_path(spool),
            submission,
            content,
            timeouts=timeouts,
            trace=_trace if args.v else None,
        )
    )
    if result.unreachable and result.pending and not result.refused:
        return _save_offline(spool, submission, result.pending, content, result)
    if result.exit_code != os.EX_OK:
        _report(result)
    return result.exit_code


def _smtp_mode(spool: str) -> int:
    """``-bs``: relayed to the daemon, or served here into the offline directory."""
    from mta.enqueue.proxy import UNAVAILABLE, relay_stdio

    status = trio.run(relay_stdio, socket_path(spool))
    if status is not None:
        return status
    directory = offline_dir(spool)
    if not os.path.isdir(directory):
        os.write(1, UNAVAILABLE)
        return os.EX_TEMPFAIL
    from mta.enqueue.standin import serve_standin

    return serve_standin(directory, server_name())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.b == "i":
        from mta.cli.ctl import main as ctl

        return ctl(["newaliases"])
    if args.b == "s":
        return _smtp_mode(args.spool or default_spool())
    if args.b not in (None, "m"):
        _error(f"unsupported mode -b{args.b}")
        return os.EX_USAGE
    return _enqueue(args)
