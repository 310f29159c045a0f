"""One run of the startup figure, in a fresh interpreter: how soon a test server is ready.

``python -m benchlib.startup_run --server mta|aiosmtpd --starts N`` times, in this
process: the import of what a test needs (``mta.testing``, or aiosmtpd's
``Controller``), the first server started (``MailServer().start()`` returns
once it accepts connections; aiosmtpd's ``Controller.start()`` likewise), then
``N`` further servers started one after another (each stopped before the
next, its stop not timed).  aiosmtpd gets a free port found before the clock
starts; mta picks its own.  The outcome is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from benchlib.procs import free_port


def _mta(starts: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    from mta.testing import MailServer

    t1 = time.perf_counter()
    server = MailServer()
    server.start()
    t2 = time.perf_counter()
    server.stop()
    further = []
    for _ in range(starts):
        begin = time.perf_counter()
        server = MailServer()
        server.start()
        further.append(time.perf_counter() - begin)
        server.stop()
    return {"import": t1 - t0, "first": t2 - t1, "further": further}


def _aiosmtpd(starts: int) -> dict[str, Any]:
    port = free_port()
    t0 = time.perf_counter()
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    t1 = time.perf_counter()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    t2 = time.perf_counter()
    controller.stop()
    further = []
    for _ in range(starts):
        port = free_port()
        begin = time.perf_counter()
        controller = Controller(Sink(), hostname="127.0.0.1", port=port)
        controller.start()
        further.append(time.perf_counter() - begin)
        controller.stop()
    return {"import": t1 - t0, "first": t2 - t1, "further": further}


def main() -> None:
    p = argparse.ArgumentParser(prog="benchlib.startup_run")
    p.add_argument("--server", choices=("mta", "aiosmtpd"), required=True)
    p.add_argument("--starts", type=int, default=20)
    args = p.parse_args()
    run = _mta if args.server == "mta" else _aiosmtpd
    print(json.dumps(run(args.starts)), flush=True)


if __name__ == "__main__":
    main()
