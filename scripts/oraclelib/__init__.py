"""The test suite's oracles that are not Python packages, kept in the repository's ``.cache/``.

``scripts/setup --test`` runs ``python -m oraclelib`` (with scripts/ on the
path), which fetches whatever is missing through Debian's package tools and
does nothing (and needs no network) when everything is there:

- OpenSMTPD's source package (:func:`opensmtpd_source`), whose ``crypto.c``
  tests/spool/test_crypto.py builds and checks our queue encryption against;
- Postfix's ``smtp-source`` (:func:`smtp_source`), fetched by the benchmark's
  own code (``benchlib.smtpsource``) into the benchmark's cache, which
  tests/scripts/test_bench.py runs.

The tests find them with the same functions, never fetching anything themselves.
"""

from __future__ import annotations

from pathlib import Path

from benchlib import smtpsource

from oraclelib import debsource

__all__ = ["REPO", "opensmtpd_source", "smtp_source"]

REPO = Path(__file__).resolve().parents[2]
OPENSMTPD = "opensmtpd"


def opensmtpd_source(cache: Path) -> Path | None:
    """The unpacked OpenSMTPD source tree (``usr.sbin/smtpd/...``), None if not fetched."""
    tree = cache / "opensmtpd-source"
    return tree if debsource.unpacked(tree) is not None else None


def smtp_source(cache: Path) -> smtpsource.SmtpSource | None:
    """The benchmark's cached smtp-source, None if not fetched."""
    return smtpsource.cached(cache / "bench")
