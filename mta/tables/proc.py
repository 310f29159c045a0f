"""The table-proc line protocol (smtpd-tables(7), OpenSMTPD 7.6+, version 0.1)
as a sans-IO codec: it produces the bytes to write and interprets the lines
read, and never touches a process, a socket or a clock by itself.

Handshake: we send ``config|smtpd-version|V``, ``config|protocol|0.1``,
``config|tablename|NAME``, ``config|ready``; the helper answers
``register|SERVICE`` lines and ``register|ready``.  Requests are
``table|0.1|TIMESTAMP|NAME|OP|SERVICE|ID[|KEY]`` (``update`` has only an ID);
replies are ``OP-result|ID|found[|value]``, ``not-found``, ``ok`` or
``error[|message]``.  ``|`` may appear only in the last field.
"""

from __future__ import annotations

import enum
import secrets

import attrs

from mta.errors import TableError
from mta.tables.services import Service, service_from_name

__all__ = [
    "PROTOCOL_VERSION",
    "SMTPD_VERSION",
    "Operation",
    "ProcCodec",
    "Reply",
    "ReplyStatus",
]

PROTOCOL_VERSION = "0.1"
SMTPD_VERSION = "7.8.0"
MAX_LINE = 65536


class Operation(enum.Enum):
    """A table-proc request kind."""

    UPDATE = "update"
    CHECK = "check"
    LOOKUP = "lookup"
    FETCH = "fetch"


class ReplyStatus(enum.Enum):
    """The outcome of a request."""

    FOUND = "found"
    NOT_FOUND = "not-found"
    OK = "ok"
    ERROR = "error"


@attrs.frozen
class Reply:
    """A parsed ``*-result`` line."""

    status: ReplyStatus
    value: str | None = None


@attrs.frozen
class _Pending:
    operation: Operation
    request_id: str


class ProcCodec:
    """State of one conversation with a table helper (synchronous: one request
    outstanding at a time, as OpenSMTPD uses it)."""

    def __init__(self, table_name: str, smtpd_version: str = SMTPD_VERSION) -> None:
        if "|" in table_name or "\n" in table_name:
            raise TableError(f"table name {table_name!r} cannot be used with table-proc")
        self.table_name = table_name
        self.smtpd_version = smtpd_version
        self.services = Service(0)
        self.ready = False
        self._pending: _Pending | None = None

    def handshake(self) -> bytes:
        """The configuration lines that open the conversation."""
        lines = (
            f"config|smtpd-version|{self.smtpd_version}",
            f"config|protocol|{PROTOCOL_VERSION}",
            f"config|tablename|{self.table_name}",
            "config|ready",
        )
        return "".join(line + "\n" for line in lines).encode()

    def receive_register(self, line: str) -> bool:
        """Feed one handshake reply line; True once ``register|ready`` arrived."""
        if self.ready:
            raise TableError("table-proc: handshake already complete")
        line = line.rstrip("\n")
        if not line.startswith("register|"):
            raise TableError(f"table-proc: invalid handshake reply {line[:80]!r}")
        name = line[len("register|") :]
        if name == "ready":
            if not self.services:
                raise TableError("table-proc: no services registered")
            self.ready = True
            return True
        if name == "none":
            raise TableError("table-proc: unknown service none")
        self.services |= service_from_name(name)
        return False

    def request(
        self,
        operation: Operation,
        service: Service | None = None,
        key: str | None = None,
        *,
        timestamp: float,
        request_id: str | None = None,
    ) -> bytes:
        """Encode a request; remember its id to check the reply against."""
        if not self.ready:
            raise TableError("table-proc: request before handshake")
        if self._pending is not None:
            raise TableError("table-proc: a request is already outstanding")
        rid = request_id or secrets.token_hex(4)
        seconds = int(timestamp)
        micros = round((timestamp - seconds) * 1_000_000) % 1_000_000
        fields = ["table", PROTOCOL_VERSION, f"{seconds}.{micros:06d}", self.table_name]
        fields.append(operation.value)
        if operation is Operation.UPDATE:
            fields.append(rid)
        else:
            if service is None:
                raise TableError(f"table-proc: {operation.value} needs a service")
            fields += [service.protocol_name, rid]
            if operation in (Operation.CHECK, Operation.LOOKUP):
                if key is None:
                    raise TableError(f"table-proc: {operation.value} needs a key")
                if "\n" in key or "\r" in key:
                    raise TableError("table-proc: key contains a line break")
                fields.append(key)
        self._pending = _Pending(operation, rid)
        return ("|".join(fields) + "\n").encode("utf-8", "surrogateescape")

    def receive_result(self, line: str) -> Reply:
        """Interpret the reply to the outstanding request."""
        pending = self._pending
        if pending is None:
            raise TableError("table-proc: reply without a request")
        self._pending = None
        line = line.rstrip("\n")
        prefix = f"{pending.operation.value}-result|{pending.request_id}|"
        if not line.startswith(prefix):
            raise TableError(f"table-proc: failed to parse reply {line[:80]!r}")
        rest = line[len(prefix) :]
        if rest == "not-found" and pending.operation is not Operation.UPDATE:
            return Reply(ReplyStatus.NOT_FOUND)
        if rest == "error" or rest.startswith("error|"):
            return Reply(ReplyStatus.ERROR, rest[6:] or None)
        if pending.operation is Operation.UPDATE:
            if rest == "ok":
                return Reply(ReplyStatus.OK)
        elif pending.operation is Operation.CHECK:
            if rest == "found" or rest.startswith("found|"):
                return Reply(ReplyStatus.FOUND)
        elif rest.startswith("found|") and len(rest) > len("found|"):
            return Reply(ReplyStatus.FOUND, rest[len("found|") :])
        raise TableError(f"table-proc: failed to parse reply {line[:80]!r}")
