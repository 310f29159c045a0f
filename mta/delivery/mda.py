"""Delivering to a command: ``mda "command"``, alias ``|command`` and mda wrappers.

As OpenSMTPD's ``mda_unpriv`` and the parent's MDA child handling: the command
runs through ``/bin/sh -c`` with a fixed environment (``PATH``, ``DOMAIN``,
``HOME``, ``ORIGINAL_RECIPIENT``, ``RECIPIENT``, ``SHELL``, ``LOCAL``,
``LOGNAME``, ``USER``, ``SENDER``, and ``EXTENSION`` when there is a
sub-address), in the user's home directory (else ``/``), in a session of its
own, as the delivery user when the daemon runs as root.  The message goes to
its standard input; standard output and error go to one temporary file whose
last line explains a failure.

Exit status 0 is delivered (unless the command stopped reading before the end
of the message: "mda exited prematurely", a temporary failure); 71 (EX_OSERR)
and 75 (EX_TEMPFAIL) are temporary failures; any other status is permanent; a
signal, or running past the time limit (OpenSMTPD's five minutes, then the
process group is killed), is temporary.  When the message itself cannot be
read to the end (a spool error, content failing its checksum), the process
group is killed before the command can see the end of its input, and the
error propagates: a command never gets to deliver part of a message.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterable

import attrs
import trio

from mta.delivery.result import Result
from mta.log import visible

__all__ = [
    "DEFAULT_PATH",
    "TIME_LIMIT",
    "MdaCommand",
    "mda_environment",
    "run_mda",
    "sysexit_text",
]

TIME_LIMIT = 300.0  # OpenSMTPD: alarm(300) in the MDA child
DEFAULT_PATH = "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin:/usr/local/sbin"
EX_OSERR = 71
EX_TEMPFAIL = 75
_SYSEXITS = {
    64: "command line usage error",
    65: "data format error",
    66: "cannot open input",
    67: "user unknown",
    68: "host name unknown",
    69: "service unavailable",
    70: "internal software error",
    71: "system resource problem",
    72: "critical OS file missing",
    73: "can't create user output file",
    74: "input/output error",
    75: "temporary failure",
    76: "remote error in protocol",
    77: "permission denied",
    78: "local configuration error",
}
_LAST_LINE_MAX = 256


def sysexit_text(status: int) -> str | None:
    """The sysexits(3) meaning of an exit status, as OpenSMTPD logs it."""
    return _SYSEXITS.get(status)


@attrs.frozen
class MdaCommand:
    """One command delivery: what to run, for whom, and its environment."""

    command: str  # expanded already
    username: str
    home: str
    sender: str  # "" for the null sender
    original_recipient: str  # rcpt
    recipient: str  # dest
    local: str  # the local part of rcpt
    domain: str  # the domain of rcpt
    extension: str = ""  # the sub-address
    uid: int | None = None  # run as this user (the daemon runs as root)
    gid: int | None = None


def mda_environment(cmd: MdaCommand) -> dict[str, str]:
    """The environment OpenSMTPD gives an MDA (``mda_unpriv.c``)."""
    env = {
        "PATH": DEFAULT_PATH,
        "DOMAIN": cmd.domain,
        "HOME": cmd.home,
        "ORIGINAL_RECIPIENT": cmd.original_recipient,
        "RECIPIENT": cmd.recipient,
        "SHELL": "/bin/sh",
        "LOCAL": cmd.local,
        "LOGNAME": cmd.username,
        "USER": cmd.username,
        "SENDER": cmd.sender,
    }
    if cmd.extension:
        env["EXTENSION"] = cmd.extension
    return env


def _last_line(output: bytes) -> str:
    lines = [line for line in output.split(b"\n") if line.strip()]
    if not lines:
        return ""
    text = lines[-1].decode("utf-8", "replace")
    return '"' + visible(text, _LAST_LINE_MAX - 2) + '"'


def _cwd(home: str) -> str:
    return home if home and os.path.isdir(home) else "/"


async def _feed(stdin: trio.abc.SendStream, chunks: AsyncIterator[bytes] | Iterable[bytes]) -> bool:
    """Write the message; False when the command stopped reading early."""
    try:
        if isinstance(chunks, AsyncIterator):
            async for chunk in chunks:
                await stdin.send_all(chunk)
        else:
            for chunk in chunks:
                await stdin.send_all(chunk)
        await stdin.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def run_mda(
    cmd: MdaCommand,
    chunks: AsyncIterator[bytes] | Iterable[bytes],
    *,
    time_limit: float = TIME_LIMIT,
) -> Result:
    """Run ``cmd`` with the message ``chunks`` on its standard input; never raises
    for anything the command does."""
    with tempfile.TemporaryFile(prefix="mta.out.") as out:
        try:
            process = await trio.lowlevel.open_process(
                ["/bin/sh", "-c", cmd.command],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=out,
                env=mda_environment(cmd),
                cwd=_cwd(cmd.home),
                start_new_session=True,
                user=cmd.uid,
                group=cmd.gid,
                extra_groups=[] if cmd.gid is not None else None,
                close_fds=True,
            )
        except OSError as exc:
            return Result.tempfail(f"Error (cannot run the mda: {exc.strerror or exc})")
        assert process.stdin is not None
        complete = False
        timed_out = False
        with trio.move_on_after(time_limit) as scope:
            try:
                complete = await _feed(process.stdin, chunks)
            except BaseException:
                # the message could not be read: no end of input, no delivery
                _kill_group(process.pid)
                with trio.CancelScope(shield=True):
                    await process.wait()
                raise
            await process.wait()
        if scope.cancelled_caught:
            timed_out = True
            _kill_group(process.pid)
            with trio.CancelScope(shield=True):
                await process.wait()
        out.seek(0)
        last = _last_line(out.read())
    status = process.returncode
    assert status is not None
    if timed_out:
        return Result.tempfail("Error (terminated; timeout)")
    if status < 0:
        return Result.tempfail(f"Error ({last or f'terminated; signal {-status}'})")
    if status == 0:
        if not complete:
            return Result.tempfail("Error (mda exited prematurely)")
        return Result.ok()
    meaning = sysexit_text(status)
    error = last or "exited abnormally"
    text = f"Error ({meaning}: {error})" if meaning else f"Error ({error})"
    if status in (EX_OSERR, EX_TEMPFAIL):
        return Result.tempfail(text)
    return Result.permfail(text)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise
