"""The ``mta`` command: smtpd(8)'s command line.

``mta [-dnv] [-f file] [-D name=value] [--spool DIR] [-P mda|mta|smtp]``.
``-n`` checks the configuration and prints ``configuration OK`` or the errors
(``file:line: message``), exiting 0 or 1; with ``-v`` it also prints the
configuration in canonical modern syntax, which migrates a legacy file.  The
server itself arrives with the receive path; until then running without ``-n``
checks the configuration and says so.
"""

from __future__ import annotations

import argparse
import os
import sys

from mta.config.load import load_config
from mta.config.render import render
from mta.errors import ConfigErrors

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
    print("configuration OK", file=sys.stderr)
    print(
        "mta: the SMTP server is not available yet in this version; "
        "the configuration was checked and nothing else was started",
        file=sys.stderr,
    )
    return 0
