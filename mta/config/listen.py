"""The ``listen on`` directive, in both grammars.

``listen on socket [options]`` configures the local enqueue socket;
``listen on INTERFACE [options]`` declares a network listener.  Each option may
appear once (``pki`` may repeat, for SNI).  Legacy spellings (``mask-source``,
``secure``) are accepted and noted as legacy evidence.  Checks that involve
other declarations (pki, ca, filters, tables) are left to the builder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from mta.config import ast, model
from mta.config.lexer import Tok

if TYPE_CHECKING:
    from mta.config.parser import Parser

__all__ = ["parse_listen", "parse_port"]

MAX_TAG = 31
_SERVICES = {"smtp": 25, "smtps": 465, "submission": 587, "submissions": 465, "lmtp": 24}


def parse_port(text: str) -> int | None:
    """A TCP service name (from /etc/services when present) or None."""
    try:
        import socket

        return socket.getservbyname(text, "tcp")
    except OSError:
        return _SERVICES.get(text)


def _filter_ref(p: Parser) -> model.FilterRef:
    c = p.c
    if c.at_punct("{"):
        return model.FilterRef(c.name_list(), chain=True)
    return model.FilterRef((c.string("a filter name"),), chain=False)


def parse_listen(p: Parser) -> None:
    c = p.c
    where = c.where()
    if c.accept("socket"):
        _socket(p, where)
        return
    interface = c.string("an interface, address or host name")
    opts: dict[str, object] = {}
    seen: set[str] = set()

    def once(option: str, message: str) -> None:
        if option in seen:
            c.error(message, c.last)
        seen.add(option)

    while not c.at_end():
        tok = c.take()
        word = tok.text if tok.kind is Tok.WORD else ""
        if word in ("inet4", "inet6"):
            once("family", "address family already specified")
            opts["family"] = word
        elif word == "port":
            once("port", "port already specified")
            opts["port"] = _port(p)
        elif word == "filter":
            once("filter", "filter already specified")
            opts["filter"] = _filter_ref(p)
        elif word in ("smtps", "tls", "tls-require", "secure"):
            once("tls", "TLS mode already specified")
            if word == "secure":
                p.use_grammar("legacy", word)
                opts["tls"] = model.TlsMode.STARTTLS
                opts["secure"] = True
            else:
                opts["tls"] = {
                    "smtps": model.TlsMode.SMTPS,
                    "tls": model.TlsMode.STARTTLS,
                    "tls-require": model.TlsMode.REQUIRE,
                }[word]
            if word in ("smtps", "tls-require") and c.accept("verify"):
                opts["verify"] = True
        elif word == "pki":
            name = c.string("a pki name").lower()
            pkis = opts.setdefault("pki", [])
            assert isinstance(pkis, list)
            if len(pkis) >= 32:
                c.error("too many pki specified for this listener", c.last)
            pkis.append(name)
        elif word == "ca":
            once("ca", "ca already specified")
            opts["ca"] = c.string("a ca name").lower()
        elif word in ("ciphers", "protocols"):
            once(word, f"{word} already specified")
            opts[word] = c.string(f"a {word} string")
        elif word in ("auth", "auth-optional"):
            once("auth", "auth already specified")
            opts["auth"] = model.AuthMode.REQUIRED if word == "auth" else model.AuthMode.OPTIONAL
            if c.at_table():
                opts["auth_table"] = c.table()
        elif word == "tag":
            once("tag", "tag already specified")
            tag = c.string("a tag")
            if len(tag) > MAX_TAG:
                c.error("tag name too long", c.last)
            opts["tag"] = tag
        elif word == "hostname":
            once("hostname", "hostname already specified")
            opts["hostname"] = c.string("a host name")
        elif word == "hostnames":
            once("hostnames", "hostnames already specified")
            opts["hostnames"] = c.table()
        elif word in ("mask-src", "mask-source"):
            once("mask", "mask-source already specified")
            p.use_grammar("modern" if word == "mask-src" else "legacy", word)
            opts["mask_src"] = True
        elif word in ("received-auth", "no-dsn", "proxy-v2"):
            once(word, f"{word} already specified")
            if word == "proxy-v2":
                p.use_grammar("modern", word)
            opts[word.replace("-", "_")] = True
        elif word == "senders":
            once("senders", "senders already specified")
            opts["senders"] = c.table()
            if c.accept("masquerade"):
                opts["masquerade"] = True
        else:
            c.error(f"syntax error: unknown listen option {tok.describe()}", tok)
    c.end()
    if "pki" in opts:
        opts["pki"] = tuple(opts["pki"])  # type: ignore[arg-type]
    secure = bool(opts.pop("secure", False))
    listener = model.Listener(
        interface=interface,
        file=where.file,
        line=where.line,
        **opts,  # type: ignore[arg-type]
    )
    if secure:
        # legacy "secure": STARTTLS on the port (25) and SMTPS on 465, as 5.x did
        if listener.port is not None:
            c.error("invalid listen option: tls/smtps on same port", c.last)
        p.emit(ast.ListenStmt(listener, where))
        listener = attrs.evolve(listener, tls=model.TlsMode.SMTPS)
    p.emit(ast.ListenStmt(listener, where))


def _port(p: Parser) -> int:
    c = p.c
    tok = c.peek()
    if tok.kind is Tok.NUMBER:
        value = int(c.take().text)
        if not 0 <= value <= 65535:  # 0: the system picks a free port (beyond OpenSMTPD)
            c.error(f"invalid port: {value}", c.last)
        return value
    if tok.kind in (Tok.WORD, Tok.STRING):
        name = c.take().text
        port = parse_port(name)
        if port is None:
            c.error(f"invalid port: {name}", c.last)
        return port
    c.syntax_error("a port number or service name")


def _socket(p: Parser, where: ast.Where) -> None:
    c = p.c
    sock = model.SocketListener(explicit=True)
    seen: set[str] = set()
    while not c.at_end():
        tok = c.take()
        word = tok.text if tok.kind is Tok.WORD else ""
        if word in seen:
            c.error(f"{word} already specified", tok)
        seen.add(word)
        if word == "filter":
            sock = attrs.evolve(sock, filter=_filter_ref(p))
        elif word in ("mask-src", "mask-source"):
            p.use_grammar("modern" if word == "mask-src" else "legacy", word)
            sock = attrs.evolve(sock, mask_src=True)
        elif word == "no-dsn":
            sock = attrs.evolve(sock, no_dsn=True)
        elif word == "tag":
            tag = c.string("a tag")
            if len(tag) > MAX_TAG:
                c.error("tag name too long", c.last)
            sock = attrs.evolve(sock, tag=tag)
        else:
            c.error(f"syntax error: unknown socket listener option {tok.describe()}", tok)
    c.end()
    p.emit(ast.SocketStmt(sock, where))
