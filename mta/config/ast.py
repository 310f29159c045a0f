"""Statement nodes produced by the parsers of both grammars.

A parsed file is a sequence of statements, in file order.  The modern parser
and the legacy translator both emit these nodes; :mod:`mta.config.build` folds
them, in order, into a :class:`~mta.config.model.Config`.  Each node carries
its source position for error messages.  Where a statement simply declares a
model object (a listener, an action, a rule ...) the node holds that object
with its references still unresolved.
"""

from __future__ import annotations

import attrs

from mta.config import model

__all__ = [
    "ActionStmt",
    "CaStmt",
    "FilterStmt",
    "ListenStmt",
    "MatchStmt",
    "PkiStmt",
    "ProcStmt",
    "SetStmt",
    "SocketStmt",
    "Statement",
    "TableStmt",
    "Where",
]


@attrs.frozen
class Where:
    """A source position."""

    file: str
    line: int


@attrs.frozen
class TableStmt:
    decl: model.TableDecl
    where: Where


@attrs.frozen
class PkiStmt:
    """``pki NAME cert|key|dhe|ca VALUE`` (several statements build one pki)."""

    name: str
    param: str  # cert, key, dhe, ca
    value: str
    where: Where


@attrs.frozen
class CaStmt:
    name: str
    cert: str
    where: Where


@attrs.frozen
class ProcStmt:
    proc: model.Proc
    where: Where


@attrs.frozen
class FilterStmt:
    """A ``filter`` declaration; ``proc`` is set for ``proc-exec`` filters."""

    name: str
    filter: model.Filter
    where: Where
    proc: model.Proc | None = None


@attrs.frozen
class ListenStmt:
    listener: model.Listener
    where: Where


@attrs.frozen
class SocketStmt:
    socket: model.SocketListener
    where: Where


@attrs.frozen
class ActionStmt:
    action: model.Action
    where: Where


@attrs.frozen
class MatchStmt:
    rule: model.Rule
    where: Where


@attrs.frozen
class SetStmt:
    """A global option: ``key`` like ``("smtp", "max-rcpt")``, ``value`` its parsed value."""

    key: tuple[str, ...]
    value: object
    where: Where


Statement = (
    TableStmt
    | PkiStmt
    | CaStmt
    | ProcStmt
    | FilterStmt
    | ListenStmt
    | SocketStmt
    | ActionStmt
    | MatchStmt
    | SetStmt
)
