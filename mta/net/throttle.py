"""A warning that may repeat at every connection (DNS down: each client's
reverse lookup fails the same way) logged at most once per interval.

The first one is logged at once; later ones within ``interval`` seconds go
to the debug level (``mta -v`` still shows each), and the next warning after
the interval says how many were held back.  The clock is injected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["WARN_INTERVAL", "Throttle"]

WARN_INTERVAL = 60.0  # seconds


class Throttle:
    """Rate-limits the warnings logged through :meth:`warning`."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = WARN_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._next: float | None = None  # when the next warning may be logged
        self.suppressed = 0  # since the last one logged

    def warning(self, message: str, *args: object) -> bool:
        """Log ``message % args`` as a warning, or at debug level when one was
        logged less than ``interval`` seconds ago; True when it was a warning."""
        now = self._clock()
        if self._next is not None and now < self._next:
            self.suppressed += 1
            self.logger.debug(message, *args)
            return False
        if self.suppressed:
            message += " (and %d more like it since the last warning, logged at debug level)"
            args = (*args, self.suppressed)
        self.logger.warning(message, *args)
        self._next = now + self.interval
        self.suppressed = 0
        return True
