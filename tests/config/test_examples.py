"""The examples in ``conf/examples/`` check as their headers say they do.

Each example's header documents a one-line command (``# Try it ...`` then the command,
indented, on a comment line) that checks it with ``mta -n`` against the sample files in
``conf/examples/files/``.  Each command is read from its file and run as a user would,
from the top of the repository, so the documentation cannot rot; the sample files are
checked too (the ``db:`` maps hold their sources' records, the certificate stays valid
for a century and matches its key, and nothing outside the repository is read).
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from mta.config.interfaces import resolve_listen
from mta.config.load import load_text
from mta.tables.makemap import MapType, map_records
from tests.config.corpus_util import EXAMPLE_SAMPLES, EXAMPLES, materialise_example

ROOT = EXAMPLES.parents[1]
CONFS = sorted(EXAMPLES.glob("*.conf"))
VENV_MTA = ".venv/bin/mta"
SSL = EXAMPLE_SAMPLES / "etc" / "ssl"


def documented_command(path: Path) -> str:
    """The command line under the ``# Try it`` paragraph of ``path``'s header."""
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("# Try it")]
    assert len(starts) == 1, f"{path.name}: no single '# Try it' paragraph"
    for line in lines[starts[0] + 1 :]:
        assert line.startswith("#"), f"{path.name}: the header ends before the command"
        if line.startswith("#   "):
            return line[len("#   ") :].strip()
    raise AssertionError(f"{path.name}: no indented command line after '# Try it'")


def _has_berkeleydb() -> bool:
    try:
        import berkeleydb  # noqa: F401
    except ImportError:
        return False
    return True


def _unavailable_interfaces(text: str) -> list[str]:
    """The interfaces the example listens on that this machine lacks (lo0 down, no egress)."""
    names = set(re.findall(r"^listen on (\w+)", text, re.MULTILINE)) - {"socket"}
    return sorted(n for n in names if not resolve_listen(n, None))


def test_there_are_examples() -> None:
    assert len(CONFS) >= 14


@pytest.mark.parametrize("path", CONFS, ids=lambda p: p.stem)
def test_documented_command_checks_the_example(path: Path, tmp_path: Path) -> None:
    command = documented_command(path)
    relative = str(path.relative_to(ROOT))
    assert relative in shlex.split(command), f"{path.name}: the command checks another file"
    assert VENV_MTA in command and " -n " in command, command
    text = path.read_text(encoding="utf-8")
    if "db:" in text and not _has_berkeleydb():
        pytest.skip("db: tables need the berkeleydb package (the 'db' extra)")
    missing = _unavailable_interfaces(text)
    if missing:
        pytest.skip(f"this machine has no {', '.join(missing)} (see conf/examples/files/README.md)")
    # the interpreter running the tests stands in for the virtual environment's mta
    command = command.replace(VENV_MTA, f"{shlex.quote(sys.executable)} -m mta")
    env = dict(os.environ, MTA_SPOOL=str(tmp_path / "spool"))
    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stderr.strip(), proc.stdout) == (0, "configuration OK", "")


@pytest.mark.parametrize("path", CONFS, ids=lambda p: p.stem)
def test_examples_read_only_the_sample_files(path: Path) -> None:
    if "db:" in path.read_text(encoding="utf-8") and not _has_berkeleydb():
        pytest.skip("db: tables need the berkeleydb package (the 'db' extra)")
    text = materialise_example(path.read_text(encoding="utf-8"))
    cfg = load_text(text, path.name, hostname="mail.example.com", check_interfaces=False).config
    paths = [t.config for t in cfg.tables.values() if t.backend in ("file", "db")]
    paths += [p for pki in cfg.pkis.values() for p in (pki.cert, pki.key)]
    assert paths
    for file in paths:
        assert file is not None
        assert Path(file).is_relative_to(EXAMPLE_SAMPLES), file
        assert Path(file).is_file(), file


@pytest.mark.parametrize(
    ("db", "map_type"), [("aliases.db", MapType.ALIASES), ("secrets.db", MapType.PLAIN)]
)
def test_db_samples_hold_their_sources(db: str, map_type: MapType) -> None:
    pytest.importorskip("berkeleydb")
    from mta.tables.bdb import read_hash

    path = EXAMPLE_SAMPLES / "etc" / "mail" / db
    source = path.with_suffix("")
    expected = map_records(source.read_text(encoding="utf-8"), str(source), map_type)
    assert expected
    assert sorted(read_hash(str(path))) == sorted(expected)


def test_sample_certificate_is_long_lived_labelled_and_matches_its_key() -> None:
    cert_pem = (SSL / "mail.example.com.crt").read_bytes()
    key_pem = (SSL / "private" / "mail.example.com.key").read_bytes()
    for pem in (cert_pem, key_pem):
        assert pem.startswith(b"EXAMPLE ONLY")
    (cert,) = x509.load_pem_x509_certificates(cert_pem)
    key = load_pem_private_key(key_pem, password=None)
    assert cert.public_key() == key.public_key()
    utc = datetime.UTC
    assert cert.not_valid_before_utc <= datetime.datetime(2000, 1, 1, tzinfo=utc)
    assert cert.not_valid_after_utc >= datetime.datetime(2125, 1, 1, tzinfo=utc)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.com"]
