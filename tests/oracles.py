"""The oracles ``scripts/setup --test`` provides outside Python, and what a test
does when one is missing.

Some tests check mta against other programs' code: OpenSMTPD's ``crypto.c``
(built with the C compiler against Debian's OpenSSL headers) and Postfix's
``smtp-source``.  ``scripts/setup --test`` installs the Debian packages and
fetches the rest into the repository's ``.cache/`` (``scripts/oraclelib``);
the tests look them up with the same code and never fetch anything.

A missing oracle fails the test, naming the command that provides it: pytest
only exists here after ``scripts/setup --test``, so a missing oracle means that
setup could not fetch it (no network, no root for apt-get), and a differential
test that skips silently would look like a pass.  Where setup cannot work at
all (no Debian tools), ``MTA_TEST_ALLOW_MISSING=1`` turns those failures into
skips, which pytest's summary still lists.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
CACHE = REPO / ".cache"
ALLOW_MISSING = "MTA_TEST_ALLOW_MISSING"


def scripts_module(name: str) -> ModuleType:
    """A module of the helpers under scripts/ (``benchlib.smtpsource``, ``oraclelib``)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


def missing(what: str) -> NoReturn:
    """Fail (or, with MTA_TEST_ALLOW_MISSING=1, skip): ``what`` is not here."""
    message = (
        f"{what} is missing: run scripts/setup --test to provide it "
        f"(it needs the network; {ALLOW_MISSING}=1 skips these tests instead)"
    )
    if os.environ.get(ALLOW_MISSING) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)
