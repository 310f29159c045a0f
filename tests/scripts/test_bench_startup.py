"""The startup figure of scripts/bench: its report, and one real run of each server."""

from __future__ import annotations

from types import ModuleType

from tests import oracles


def _load(name: str) -> ModuleType:
    return oracles.scripts_module(f"benchlib.{name}")


startup = _load("startup")


def test_the_report_gives_medians_ratios_and_targets() -> None:
    figure = startup.StartupFigure()
    figure.runs["mta"] = [startup.StartupRun(0.2, 0.01, 0.008), startup.StartupRun(0.4, 0.03, 0.02)]
    figure.runs["aiosmtpd"] = [startup.StartupRun(0.03, 0.002, 0.0005)]
    text = startup.format_startup(figure, 20)
    assert "import + first" in text and "further start (median of 20)" in text
    imports = next(line for line in text.splitlines() if line.startswith("  import  "))
    assert imports.split()[1:] == ["300.00", "30.00", "10.0x"]  # medians in ms, the ratio
    assert "FAIL  import + first server ready: 320.0 ms" in text
    assert "FAIL  a further server ready: 14.0 ms" in text
    assert "  mta       210 / 8.00, 430 / 20.00" in text  # every run, in order
    assert "  aiosmtpd  32 / 0.50" in text


def test_one_fresh_run_of_each_server_measures_something() -> None:
    messages: list[str] = []
    figure = startup.measure_startup(1, 2, messages.append)
    assert figure.errors == []
    for server in ("mta", "aiosmtpd"):
        (run,) = figure.runs[server]
        assert 0 < run.imported < 30 and 0 < run.first < 30 and 0 < run.further < 30
    assert len(messages) == 2 and "further start" in messages[0]
