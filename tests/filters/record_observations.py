"""Write oracle_observations.json: every case of observations.py run on OpenSMTPD 6.8.

Usage (root, OpenSMTPD installed): .venv/bin/python -m tests.filters.record_observations
test_oracle_observations.py checks the file against 6.8 whenever 6.8 can run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.filters.observations import CASES, observe, scenario
from tests.filters.opensmtpd_oracle import opensmtpd_unavailable, run_opensmtpd, version

OUTPUT = Path(__file__).with_name("oracle_observations.json")


def main() -> int:
    why = opensmtpd_unavailable()
    if why is not None:
        print(f"record_observations: {why}", file=sys.stderr)
        return 1
    cases = []
    for case in CASES:
        print(f"record_observations: {case.name}", file=sys.stderr)
        observed = observe(case, run_opensmtpd(scenario(case)))
        cases.append(
            {
                "name": case.name,
                "note": case.note,
                "script": case.script,
                "dialogue": list(case.dialogue),
                **observed,
            }
        )
    record = {"server": version(), "cases": cases}
    OUTPUT.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
