"""The daemon: everything ``mta`` runs, in one trio event loop.

- :mod:`mta.daemon.startup`: what is checked and bound before anything is touched;
- :mod:`mta.daemon.serve`: the main task (spool, queue, listeners, control socket);
- :mod:`mta.daemon.generation`: one configuration in force and what was built from it;
- :mod:`mta.daemon.listening`: the bound sockets and their accept loops;
- :mod:`mta.daemon.reload`: SIGHUP and ``mtactl reload``.
"""

from mta.daemon.serve import ENQUEUE_SOCKET, DaemonOptions, Running, serve

__all__ = ["ENQUEUE_SOCKET", "DaemonOptions", "Running", "serve"]
