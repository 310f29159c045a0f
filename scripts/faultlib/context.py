"""What every scenario gets: the settings, a random source, a place to work, a way to speak.

Progress goes to stderr, one line per trial as it ends (``faults: ...``);
the table alone goes to stdout.  Each scenario works in a directory of its
own under the run's directory; the crash scenarios leave their Maildirs in
``maildirs`` so the orphan count can look at them afterwards.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from faultlib.daemon import Workspace

__all__ = ["Context", "Settings", "log"]


def log(msg: str) -> None:
    print(f"faults: {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    trials: int = 10  # kills per crash scenario
    messages: int = 400  # queued before each kill while delivering
    garbage: int = 500  # garbage connections
    corrupt: int = 12  # message files damaged (of twice as many queued)
    disk_kib: int = 8192  # the full-disk scenario's spool size
    timeout_scale: float = 0.01  # MTA_TIMEOUT_SCALE for the slow-client scenarios
    quick: bool = False
    seed: int = 0


@dataclass
class Context:
    settings: Settings
    workroot: Path
    rng: random.Random = field(init=False)
    maildirs: list[Path] = field(default_factory=list)  # the crash scenarios' Maildirs

    def __post_init__(self) -> None:
        self.rng = random.Random(self.settings.seed)

    def workspace(self, name: str) -> Workspace:
        return Workspace.make(self.workroot / name)
