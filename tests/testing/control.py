"""What the tests of :mod:`mta.testing` do to a running server from outside,
as its user would: find its spool in its log, run ``mtactl`` on that spool."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from mta.testing import MailServer

__all__ = ["mtactl", "spool"]

MTACTL = [sys.executable, "-c", "import sys; from mta.cli.ctl import main; sys.exit(main())"]


def spool(server: MailServer) -> pathlib.Path:
    """The server's spool, from its log: ``listening on socket SPOOL/enqueue.sock``."""
    [line] = [line for line in server.log_lines if "listening on socket" in line]
    return pathlib.Path(line.rsplit(" ", 1)[1]).parent


def mtactl(server: MailServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``mtactl --spool SPOOL ARGS...`` for ``server``."""
    return subprocess.run(
        [*MTACTL, "--spool", str(spool(server)), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
