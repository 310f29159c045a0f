"""Read a configuration file from disk and turn it into the checked model.

This is the only place that does configuration file I/O: it reads the main
file and every ``include``d one, runs the parser and the builder, and returns
the model with any warnings, or raises :class:`~mta.errors.ConfigErrors` with
every problem found.
"""

from __future__ import annotations

import attrs

from mta.config.build import build
from mta.config.hostname import server_name
from mta.config.interfaces import resolve_listen
from mta.config.model import Config
from mta.config.parser import parse_text
from mta.errors import ConfigError, ConfigErrors

__all__ = ["LoadResult", "load_config", "load_text"]


@attrs.frozen
class LoadResult:
    config: Config
    grammar: str
    warnings: tuple[str, ...]


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def load_text(
    text: str,
    filename: str = "<config>",
    *,
    macros: dict[str, str] | None = None,
    hostname: str | None = None,
    check_interfaces: bool = True,
) -> LoadResult:
    """Parse and build configuration text; raises ConfigErrors on any problem."""
    doc = parse_text(text, filename, _read, macros)
    resolver = resolve_listen if check_interfaces else (lambda name, family: [None])
    config, errors, warnings = build(
        doc.statements,
        hostname=hostname or server_name(),
        resolver=resolver,  # type: ignore[arg-type]
        failed=doc.failed,
    )
    if doc.errors:
        # with a statement unreadable, "no rules" would only repeat that error
        errors = [e for e in errors if not e.message.startswith("no rules,")]
    all_errors = [
        err if err.file is not None else ConfigError(err.message, filename, err.line)
        for err in list(doc.errors) + errors
    ]
    if all_errors:
        raise ConfigErrors(all_errors)
    notes = list(warnings)
    notes += [f"{filename}: warning: macro '{name}' not used" for name in doc.unused_macros]
    return LoadResult(config, doc.grammar, tuple(notes))


def load_config(
    path: str,
    *,
    macros: dict[str, str] | None = None,
    hostname: str | None = None,
    check_interfaces: bool = True,
) -> LoadResult:
    """Load ``path``; raises ConfigErrors (a read failure is one too)."""
    try:
        text = _read(path)
    except OSError as exc:
        raise ConfigErrors(
            [ConfigError(f"cannot read configuration: {exc.strerror}", path)]
        ) from None
    return load_text(
        text, path, macros=macros, hostname=hostname, check_interfaces=check_interfaces
    )
