"""The campaign's one table: a row per scenario, each against its promise.

A row says what was measured, what came out and whether the promise held
(``pass`` / ``FAIL``), or why the scenario could not run (``skipped: ...``)
or broke (``error``).  The table is Markdown, so it can go into the README as
printed.  The exit status follows the rows: 2 when the harness itself broke
(an ``error`` row), 1 with ``--strict`` when a promise is broken, else 0.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Row",
    "Verdict",
    "exit_status",
    "format_table",
    "held",
    "spread",
]


class Verdict(enum.Enum):
    PASS = "pass"
    FAIL = "FAIL"
    SKIP = "skipped"
    ERROR = "error"


@dataclass(frozen=True)
class Row:
    """One scenario's line of the table."""

    scenario: str
    trials: str  # what was repeated and how often ("10 kills", "216 connections")
    measured: str
    promise: str
    result: str
    verdict: Verdict

    @classmethod
    def judged(
        cls, scenario: str, trials: str, measured: str, promise: str, result: str, ok: bool
    ) -> Row:
        return cls(
            scenario, trials, measured, promise, result, Verdict.PASS if ok else Verdict.FAIL
        )

    @classmethod
    def skipped(cls, scenario: str, measured: str, promise: str, why: str) -> Row:
        return cls(scenario, "0", measured, promise, f"skipped: {why}", Verdict.SKIP)

    @classmethod
    def broken(cls, scenario: str, measured: str, promise: str, why: str) -> Row:
        return cls(scenario, "-", measured, promise, f"error: {why}", Verdict.ERROR)


def _cell(text: str) -> str:
    """A table cell: one line, no column separator inside."""
    return " ".join(text.split()).replace("|", "\\|")


def format_table(rows: Sequence[Row], caption: str) -> str:
    """The Markdown table of ``rows`` under ``caption``, columns padded to line up."""
    header = ("scenario", "trials", "measured", "promise", "result", "verdict")
    lines = [header] + [
        (r.scenario, r.trials, r.measured, r.promise, r.result, r.verdict.value) for r in rows
    ]
    cells = [[_cell(c) for c in line] for line in lines]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]

    def render(line: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"

    out = [caption, "", render(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [render(line) for line in cells[1:]]
    return "\n".join(out)


def exit_status(rows: Iterable[Row], strict: bool) -> int:
    verdicts = {r.verdict for r in rows}
    if Verdict.ERROR in verdicts:
        return 2
    if strict and Verdict.FAIL in verdicts:
        return 1
    return 0


def spread(values: Sequence[float], unit: str = "") -> str:
    """``median 3, max 7`` of per-trial figures (``-`` when there are none)."""
    if not values:
        return "-"
    med = statistics.median(values)
    return f"median {_num(med)}{unit}, max {_num(max(values))}{unit}"


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def held(seconds: float, scale: float) -> str:
    """``3.1 s (5 min unscaled)``: a time under MTA_TIMEOUT_SCALE and what it stands for."""
    real = seconds / scale
    if real >= 3600:
        plain = f"{real / 3600:.1f} h"
    elif real >= 60:
        plain = f"{real / 60:.1f} min"
    else:
        plain = f"{real:.0f} s"
    return f"{seconds:.1f} s ({plain} unscaled)"
