"""Where ``mta-sendmail`` finds the daemon: the spool, its local socket and its
offline directory.

The same rules as ``mta`` (:func:`mta.cli.main.default_spool`,
:data:`mta.daemon.ENQUEUE_SOCKET`, :class:`mta.spool.paths.SpoolPaths`), kept in
this small module so that ``mta-sendmail`` starts without importing the daemon;
tests check that both agree.
"""

from __future__ import annotations

import os

__all__ = ["ENQUEUE_SOCKET", "OFFLINE_DIR", "default_spool", "offline_dir", "socket_path"]

ENQUEUE_SOCKET = "enqueue.sock"
OFFLINE_DIR = "offline"


def default_spool() -> str:
    """``$MTA_SPOOL``, else ``/var/spool/mta`` as root and ``./spool`` otherwise."""
    env = os.environ.get("MTA_SPOOL")
    if env:
        return env
    return "/var/spool/mta" if os.geteuid() == 0 else "./spool"


def socket_path(spool: str) -> str:
    return os.path.join(os.path.abspath(spool), ENQUEUE_SOCKET)


def offline_dir(spool: str) -> str:
    return os.path.join(os.path.abspath(spool), OFFLINE_DIR)
