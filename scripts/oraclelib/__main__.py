"""``python -m oraclelib [--cache DIR]``: fetch the test suite's missing oracles.

Prints what it fetches on stderr (nothing when all is there); exits 1, after
saying what failed and why, when any could not be fetched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchlib import smtpsource

from oraclelib import OPENSMTPD, REPO, debsource, opensmtpd_source, smtp_source


def log(msg: str) -> None:
    print(f"oracles: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m oraclelib", description=__doc__)
    p.add_argument("--cache", type=Path, default=REPO / ".cache", help="where they are kept")
    args = p.parse_args(argv)
    cache: Path = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    failed = []
    if opensmtpd_source(cache) is None:
        try:
            version = debsource.fetch(OPENSMTPD, cache / "opensmtpd-source", log)
            log(f"OpenSMTPD {version} source unpacked in {cache / 'opensmtpd-source'}")
        except (debsource.FetchError, OSError) as exc:
            failed.append(f"OpenSMTPD's source: {exc}")
    if smtp_source(cache) is None:
        try:
            smtpsource.fetch(cache / "bench", log)
        except smtpsource.SetupError as exc:
            failed.append(f"Postfix's smtp-source: {exc}")
        else:
            if smtp_source(cache) is None:  # fetch fell back to a system smtp-source
                failed.append("Postfix's smtp-source: apt-get download postfix failed")
    for failure in failed:
        log(f"could not fetch {failure}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
