"""Shared helpers for tests that read the smtpd.conf corpus and the example configurations.

``corpus/`` files refer to their fixtures as ``@FILES@/name``; :func:`copy_corpus`
copies the corpus to a directory and substitutes the placeholder.  The examples in
``conf/examples/`` use the absolute paths the manual pages wrote (``/etc/mail/aliases``,
``/etc/ssl/...``); :func:`materialise_example` rewrites those under a directory and
creates plausible files there, so the examples load on any machine.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mta.tables.bdb import write_hash

__all__ = [
    "CORPUS",
    "EXAMPLES",
    "FILES_PLACEHOLDER",
    "copy_corpus",
    "corpus_verdict",
    "materialise_example",
    "ok_corpus_configs",
]

CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = Path(__file__).parents[2] / "conf" / "examples"
FILES_PLACEHOLDER = "@FILES@"

_EXPECT_RE = re.compile(r"^# expect: (ok|error)\b")
_ETC_RE = re.compile(r"/etc/[^\"'\s,}>]+")


def corpus_verdict(path: Path) -> str:
    """``"ok"`` or ``"error"``, from the corpus file's first line."""
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    m = _EXPECT_RE.match(first)
    if m is None:
        raise ValueError(f"{path.name}: no '# expect:' line")
    return m.group(1)


def ok_corpus_configs() -> list[Path]:
    """The corpus files mta must accept."""
    return [p for p in sorted(CORPUS.glob("*.conf")) if corpus_verdict(p) == "ok"]


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


def _content_for(path: str) -> str:
    name = Path(path).name
    if "alias" in name:
        return "root: alice\npostmaster: root\n"
    if "secret" in name:
        return "bar username:password\n"
    if "relays" in name:
        return "192.0.2.0/24\n2001:db8::/32\n"
    return "example.com\n"


def materialise_example(text: str, root: Path) -> str:
    """``text`` with every ``/etc/...`` path moved under ``root``, where the files now exist."""
    files = CORPUS / "files"
    for path in sorted(set(_ETC_RE.findall(text))):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.endswith(".crt"):
            shutil.copy(files / "cert.pem", target)
        elif path.endswith(".key") and "ssl" in path:
            shutil.copy(files / "key.pem", target)
            target.chmod(0o600)
        elif path.endswith(".db"):
            records: list[tuple[str, str]] = []
            for line in _content_for(path[: -len(".db")]).splitlines():
                key, _, value = line.replace(":", " ", 1).partition(" ")
                records.append((key, value.strip()))
            write_hash(str(target), records)
        else:
            target.write_text(_content_for(path), encoding="utf-8")
    return _ETC_RE.sub(lambda m: str(root) + m.group(0), text)
