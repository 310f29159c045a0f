"""The examples of the README's "Using mta in your tests" run as written, each
as a test module of a user's suite (pytester), with the plugin as installed."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

from tests.testing.test_plugin import plugin_args

pytest_plugins = ["pytester"]

README = pathlib.Path(__file__).parents[2] / "README.md"
SECTION = "## Using mta in your tests"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)

# a block using one of these needs that part of mta.testing installed
NEEDS = {"web=True": "mta.testing.web", ".fail(": "mta.testing.faults"}


def examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return _BLOCK.findall(text[start : end if end >= 0 else len(text)])


def test_the_section_has_its_examples() -> None:
    blocks = examples()
    assert len(blocks) >= 6
    smallest = blocks[0].strip().splitlines()
    # the smallest test: one import, then a test of at most five lines
    body = smallest[smallest.index("def test_signup_mail(mail_server):") :]
    assert len(body) <= 5, body


@pytest.mark.parametrize("index", range(len(examples())))
def test_readme_example(index: int, pytester: pytest.Pytester) -> None:
    block = examples()[index]
    for marker, module in NEEDS.items():
        if marker in block and importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not in this build (the example uses {marker})")
    pytester.makepyfile(**{f"test_example_{index}": block})
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=len(re.findall(r"^(?:async )?def test_", block, re.M)))
