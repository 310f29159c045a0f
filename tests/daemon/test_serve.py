"""The daemon's signal handling: in place before it says it is ready."""

from __future__ import annotations

import os
import signal

import trio

from mta.daemon.serve import _signals


async def test_sigterm_handlers_are_in_place_once_started() -> None:
    # "mta: ready" is logged right after this start; a SIGTERM then must be
    # handled (an orderly stop), never take the default action (death, with
    # the spool's sockets left behind)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(_signals, scope)
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            os.kill(os.getpid(), signal.SIGTERM)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored afterwards
