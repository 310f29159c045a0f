"""How ``mtactl show queue`` and ``show envelope`` print an envelope.

``show queue`` prints smtpctl's line per envelope, field for field::

    evpid|local|inet4|inet6|mda|mta|bounce|flags|sender|rcpt|dest|ctime|expire|lasttry|retry|runstate|error

where the run state is ``pending|SECONDS`` (until the next try), ``inflight|SECONDS``
(since the try began) or ``offline|`` (the daemon is not running).  Every text
copied from a client is escaped (:func:`~mta.log.visible`), so an address can
neither split a line nor forge a field separator.
"""

from __future__ import annotations

import enum

import attrs

from mta.envelope import Envelope, EnvelopeFlag
from mta.log import visible

__all__ = ["RunState", "envelope_dump", "queue_line"]


@attrs.frozen
class RunState:
    """Where an envelope stands in the scheduler, for its queue line."""

    state: str  # pending, inflight, offline
    seconds: int = 0
    suspended: bool = False
    expire: int = 0


def _family(envelope: Envelope) -> str:
    if envelope.sockaddr in ("", "local"):
        return "local"
    return "inet6" if ":" in envelope.sockaddr else "inet4"


def _flags(envelope: Envelope, run: RunState) -> str:
    names = []
    if EnvelopeFlag.BOUNCE in envelope.flags:
        names.append("bounce")
    if EnvelopeFlag.AUTHENTICATED in envelope.flags:
        names.append("auth")
    if EnvelopeFlag.INTERNAL in envelope.flags:
        names.append("internal")
    if run.suspended:
        names.append("suspend")
    return ",".join(names)


def _address(text: str) -> str:
    return visible(text).replace("|", "\\174")


def queue_line(envelope: Envelope, run: RunState) -> str:
    """smtpctl's ``show queue`` line for one envelope."""
    state = f"{run.state}|" if run.state == "offline" else f"{run.state}|{run.seconds}"
    return "|".join(
        [
            f"{envelope.id:016x}",
            _family(envelope),
            envelope.kind.value,
            _flags(envelope, run),
            _address(str(envelope.sender)),
            _address(str(envelope.rcpt)),
            _address(str(envelope.dest)),
            str(envelope.ctime),
            str(run.expire),
            str(envelope.last_try),
            str(envelope.retry),
            state,
            visible(envelope.errorline),
        ]
    )


def envelope_dump(envelope: Envelope) -> str:
    """Every field of ``envelope`` as ``name: value`` lines (``show envelope``)."""
    lines = []
    for field in attrs.fields(type(envelope)):
        value = getattr(envelope, field.name)
        if field.name == "id":
            text = f"{value:016x}"
        elif field.name == "msgid":
            text = f"{value:08x}"
        elif isinstance(value, enum.Flag):
            text = ",".join(m.name.lower() for m in type(value) if m in value and m.name) or "none"
        elif isinstance(value, enum.Enum):
            text = str(value.value)
        elif value is None:  # no enhanced status code yet
            text = ""
        else:  # text, numbers, addresses; a status code as 5.1.10
            text = str(value)
        lines.append(f"{field.name}: {visible(text, 1000)}")
    return "\n".join(lines) + "\n"
