"""Fixtures shared across the test packages."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def shared() -> Iterator[pathlib.Path]:
    """A directory the delivery users can write in (sticky, world-writable).

    Run as root, deliveries run as the users of the userbase (uid 65534 in the
    tests), which cannot reach pytest's private temporary directories."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="mta-deliver-", dir="/tmp"))
    root.chmod(0o1777)
    yield root
    shutil.rmtree(root, ignore_errors=True)
