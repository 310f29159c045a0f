"""``web inbox on ADDRESS [port PORT] [keep COUNT]``: mta's own line, in both grammars.

OpenSMTPD has no such line.  It opts the daemon into its web inbox
(:mod:`mta.daemon.webinbox`), like ``mta --web``: a read-only page and JSON
API of the mail delivered locally.  ``ADDRESS`` is an IP address or
``localhost`` (loopback, ``127.0.0.1``); no other name is looked up, so an
interface or host name is refused.  ``port`` defaults to 8025, ``keep`` (the
most messages the inbox holds, the oldest dropped first) to 1000.
"""

from __future__ import annotations

import ipaddress
from importlib.util import find_spec
from typing import TYPE_CHECKING

from mta.config import ast, model

if TYPE_CHECKING:
    from mta.config.parser import Parser

__all__ = ["parse_web", "web_missing"]


def web_missing() -> str | None:
    """What is missing for the web inbox (the ``web`` extra), or None."""
    missing = [name for name in ("hypercorn", "starlette") if find_spec(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed: pip install 'mta[web]'"
    return None


def parse_web(p: Parser) -> None:
    """The rest of the line after ``web`` (taken by the driver)."""
    c = p.c
    where = ast.Where(c.last.file, c.last.line) if c.last is not None else c.where()
    c.expect("inbox")
    c.expect("on")
    text = c.string("an IP address or localhost")
    if text.lower() == "localhost":
        address = "127.0.0.1"
    else:
        try:
            address = str(ipaddress.ip_address(text))
        except ValueError:
            c.error(
                f'web inbox on "{text}": not an IP address or localhost '
                "(the web inbox looks up no interface or host names)",
                c.last,
            )
    web = model.WebInbox(address)
    seen: set[str] = set()
    while not c.at_end():
        option = c.accept("port", "keep")
        if option is None:
            c.syntax_error('"port", "keep" or the end of the line')
        if option in seen:
            c.error(f"web inbox: {option} already specified", c.last)
        seen.add(option)
        value = c.number(f"a number for {option}")
        if option == "port":
            if value > 65535:
                c.error(f"web inbox: port {value} is not from 0 to 65535", c.last)
            web = model.replace(web, port=value)
        else:
            if value < 1:
                c.error("web inbox: keep must be at least 1 message", c.last)
            web = model.replace(web, keep=value)
    c.end()
    p.emit(ast.SetStmt(("web",), web, where))
