"""The ``mta`` command: smtpd(8)'s command line.

``mta [-dnv] [-f file] [-D name=value] [--spool DIR] [-P mda|mta|smtp] [--web [HOST:]PORT]``.
``-n`` checks the configuration and prints ``configuration OK`` or the errors
(``file:line: message``), exiting 0 or 1; with ``-v`` it also prints the
configuration in canonical modern syntax, which migrates a legacy file.
Without ``-n`` it runs the daemon (:mod:`mta.daemon`): in the foreground with
logs on stderr under ``-d``, detached otherwise, logging to syslog (the
``mail`` facility) or, where no syslog daemon listens on ``/dev/log``, to the
stderr it was started with (it says so once).  Configuration mistakes, an
unusable spool and a listening port in use are reported on stderr, once,
before anything is created on disk, and exit with status 1.  SIGHUP reloads
the configuration file (with the same ``-D`` macros).  ``--web`` (or the
configuration's ``web inbox on`` line, whose address ``--web`` overrides) serves
a read-only web inbox of the mail delivered locally (:mod:`mta.daemon.webinbox`).
"""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import sys

import trio

from mta.config.load import load_config
from mta.config.model import Config
from mta.config.render import render
from mta.daemon import DaemonOptions, serve
from mta.daemon.startup import bind_network, check_spool
from mta.errors import ConfigErrors, MTAError
from mta.log import NO_SYSLOG, get_logger, setup_logging, syslog_available
from mta.server.listeners import raise_fd_limit
from mta.server.peers import limit_from_env
from mta.server.timeouts import Timeouts

__all__ = ["default_config_path", "default_spool", "main"]


def default_config_path() -> str:
    return "/etc/mta/smtpd.conf" if os.geteuid() == 0 else "conf/smtpd.conf"


def default_spool() -> str:
    env = os.environ.get("MTA_SPOOL")
    if env:
        return env
    return "/var/spool/mta" if os.geteuid() == 0 else "./spool"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mta", description="mail transfer agent (smtpd.conf)")
    p.add_argument("-d", action="store_true", help="run in the foreground, log to stderr")
    p.add_argument("-n", action="store_true", help="check the configuration and exit")
    p.add_argument("-v", action="count", default=0, help="be verbose")
    p.add_argument("-f", metavar="FILE", help="configuration file")
    p.add_argument(
        "-D", metavar="NAME=VALUE", action="append", default=[], help="define (and fix) a macro"
    )
    p.add_argument(
        "-P",
        metavar="SUBSYSTEM",
        action="append",
        default=[],
        choices=["mda", "mta", "smtp"],
        help="start with a subsystem paused",
    )
    p.add_argument("--spool", metavar="DIR", help="spool directory (default: $MTA_SPOOL)")
    p.add_argument(
        "--web",
        metavar="[HOST:]PORT",
        help="serve a web inbox of the mail delivered locally (host: 127.0.0.1 by default;"
        " overrides the address of the configuration's web inbox line)",
    )
    return p


def _macros(defs: list[str]) -> dict[str, str]:
    macros: dict[str, str] = {}
    for item in defs:
        name, eq, value = item.rpartition("=")
        if not eq or not name:
            raise SystemExit(f"mta: could not parse macro definition {item}")
        macros[name] = value
    return macros


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.f or default_config_path()
    try:
        result = load_config(path, macros=_macros(args.D))
    except ConfigErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 1
    for note in result.warnings:
        if args.v or "macro" not in note:
            print(note, file=sys.stderr)
    if args.n:
        if args.v:
            sys.stdout.write(render(result.config))
        print("configuration OK", file=sys.stderr)
        return 0
    return run_daemon(result.config, args)


def _queue_key(config: Config) -> bytes | None:
    """The queue encryption key: from the configuration, stdin (``stdin`` / ``-``)
    or, when none is given, asked on the terminal as OpenSMTPD does."""
    if not config.queue.encryption:
        return None
    key = config.queue.key
    if key in ("stdin", "-"):
        key = sys.stdin.readline().rstrip("\r\n")
    elif key is None:
        key = getpass.getpass("queue key: ")
    data = key.encode("utf-8", "surrogateescape")
    if len(data) != 32:
        raise SystemExit(f"mta: the queue key must be exactly 32 bytes, not {len(data)}")
    return data


def _daemonize(*, keep_stderr: bool) -> None:
    """Detach from the terminal (stdin and stdout to /dev/null; stderr too
    unless the logs go there)."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1) if keep_stderr else (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def run_daemon(config: Config, args: argparse.Namespace) -> int:
    """Run the server: in the foreground with ``-d``, else detached.  The spool
    is checked and the listeners bound first, before anything is created and
    while the terminal still shows errors."""
    try:
        timeouts = Timeouts.from_env()
        per_client = limit_from_env()
    except ValueError as exc:
        print(f"mta: {exc}", file=sys.stderr)
        return 1
    path = os.path.abspath(args.f or default_config_path())  # reloads read it again
    options = DaemonOptions(
        spool=os.path.abspath(args.spool or default_spool()),
        queue_key=_queue_key(config),
        timeouts=timeouts,
        per_client=per_client,
        paused=frozenset(args.P),
        load=functools.partial(load_config, path, macros=_macros(args.D)),
    )
    raise_fd_limit()
    try:
        check_spool(options.spool)
        bound = bind_network(config)
    except MTAError as exc:
        print(f"mta: {exc}", file=sys.stderr)
        return 1
    web = None
    if args.web is not None or config.web is not None:  # the web inbox is opt-in
        from mta.daemon.webinbox import web_socket

        try:
            web = web_socket(args.web, config.web)
        except (ValueError, MTAError) as exc:
            print(f"mta: {'--web ' if isinstance(exc, ValueError) else ''}{exc}", file=sys.stderr)
            for b in bound:
                b.socket.close()
            return 1
    syslog = args.d is False and syslog_available()
    if not args.d:
        if not syslog:
            print(f"mta: {NO_SYSLOG}: logging to stderr", file=sys.stderr)
        _daemonize(keep_stderr=not syslog)
    setup_logging(foreground=args.d, verbose=args.v, syslog=syslog)
    errors: list[BaseException] = []
    try:
        trio.run(functools.partial(serve, config, options, bound=bound, web=web))
    except* KeyboardInterrupt:
        pass
    except* MTAError as group:  # raised anywhere in the daemon's nurseries
        errors += _leaves(group)
    for error in errors:
        get_logger("smtpd").error("mta: %s", error)  # stderr with -d, else wherever logs go
    return 1 if errors else 0


def _leaves(group: BaseExceptionGroup[MTAError]) -> list[BaseException]:
    """The errors of ``group``, however deeply nested."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found
