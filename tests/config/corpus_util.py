"""Shared helpers for tests that read the smtpd.conf corpus and the example configurations.

``corpus/`` files refer to their fixtures as ``@FILES@/name``; :func:`copy_corpus`
copies the corpus to a directory and substitutes the placeholder.  The examples in
``conf/examples/`` use the absolute paths the manual pages wrote (``/etc/mail/aliases``,
``/etc/ssl/...``); :func:`materialise_example` moves those under ``conf/examples/files/``,
which holds sample files for them, as the command in each example's header does.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

__all__ = [
    "CORPUS",
    "EXAMPLES",
    "EXAMPLE_SAMPLES",
    "FILES_PLACEHOLDER",
    "copy_corpus",
    "corpus_verdict",
    "materialise_example",
    "ok_corpus_configs",
]

CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = Path(__file__).parents[2] / "conf" / "examples"
EXAMPLE_SAMPLES = EXAMPLES / "files"
FILES_PLACEHOLDER = "@FILES@"

_EXPECT_RE = re.compile(r"^# expect: (ok|error)\b")


def corpus_verdict(path: Path) -> str:
    """``"ok"`` or ``"error"``, from the corpus file's first line."""
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    m = _EXPECT_RE.match(first)
    if m is None:
        raise ValueError(f"{path.name}: no '# expect:' line")
    return m.group(1)


def ok_corpus_configs() -> list[Path]:
    """The corpus files mta must accept (OpenSMTPD accepts them too; those with a
    ``# mta-refuses:`` line are refused by mta until it can honour them)."""
    return [
        p
        for p in sorted(CORPUS.glob("*.conf"))
        if corpus_verdict(p) == "ok" and "\n# mta-refuses: " not in p.read_text()[:1000]
    ]


def copy_corpus(dest: Path) -> Path:
    """Copy the corpus into ``dest/corpus`` with ``@FILES@`` substituted; returns the copy."""
    copy = dest / "corpus"
    shutil.copytree(CORPUS, copy)
    files = copy / "files"
    for conf in copy.rglob("*.conf"):
        text = conf.read_text(encoding="utf-8")
        conf.write_text(text.replace(FILES_PLACEHOLDER, str(files)), encoding="utf-8")
    for key in files.glob("*key*.pem"):
        key.chmod(0o600)  # git does not keep modes; keys should not be world-readable
    return copy


def materialise_example(text: str) -> str:
    """``text`` with every ``/etc/`` path moved to the sample files in ``conf/examples/files``."""
    return text.replace("/etc/", f"{EXAMPLE_SAMPLES}/etc/")
