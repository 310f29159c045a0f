"""The test oracles' fetcher (scripts/oraclelib): private apt configuration and
unpacking, with fake ``apt-get`` and ``dpkg-source`` (no network)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests import oracles

debsource = oracles.scripts_module("oraclelib.debsource")
oraclelib = oracles.scripts_module("oraclelib")
smtpsource = oracles.scripts_module("benchlib.smtpsource")


def test_codename_comes_from_os_release(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert debsource.codename(release) == "bookworm"
    release.write_text('VERSION_CODENAME="trixie"\n')
    assert debsource.codename(release) == "trixie"
    release.write_text("ID=alpine\n")
    with pytest.raises(debsource.FetchError, match="no VERSION_CODENAME"):
        debsource.codename(release)
    with pytest.raises(debsource.FetchError, match="cannot tell"):
        debsource.codename(tmp_path / "missing")


def test_the_mirror_is_the_one_of_the_release_main_component() -> None:
    targets = [
        "deb bookworm-security main http://security.example/debian-security/",
        "deb nodistro main https://deb.nodesource.com/node_20.x/",
        "deb bookworm contrib http://contrib.example/debian/",
        "deb bookworm main http://mirror.example/debian/",
        "deb bookworm main http://second.example/debian/",
    ]
    assert debsource.pick_mirror(targets, "bookworm") == "http://mirror.example/debian/"
    assert debsource.pick_mirror(targets, "trixie") is None
    assert debsource.pick_mirror([], "bookworm") is None


def test_private_apt_keeps_every_path_of_its_own(tmp_path: Path) -> None:
    apt = debsource.PrivateApt(tmp_path / "apt", "http://mirror.example/debian/", "bookworm")
    opts = apt.options()
    assert opts[::2] == ["-o"] * (len(opts) // 2)
    settings = dict(opt.split("=", 1) for opt in opts[1::2])
    for key in ("Dir::Etc::SourceList", "Dir::Etc::SourceParts", "Dir::State::Lists", "Dir::Cache"):
        assert Path(settings[key]).is_relative_to(tmp_path / "apt"), key
    assert settings["Dir::Cache::pkgcache"] == settings["Dir::Cache::srcpkgcache"] == ""
    line = apt.source_line
    assert line.startswith("deb-src ") and line.endswith(
        " http://mirror.example/debian/ bookworm main\n"
    )


FAKE_APT = """
import os, sys
from pathlib import Path
MIRROR = "http://mirror.example/debian/"
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    print(" ".join(args), file=log)
opts = dict(a.split("=", 1) for a, prev in zip(args, ["", *args]) if prev == "-o")
if "indextargets" in args:
    print("deb bookworm main " + MIRROR)
elif args[-1] == "update":
    kind, *_, uri, suite, component = Path(opts["Dir::Etc::SourceList"]).read_text().split()
    assert (kind, uri, suite, component) == ("deb-src", MIRROR, "bookworm", "main")
    if os.environ.get("FAKE_OFFLINE"):
        print("W: Failed to fetch http://mirror.example/debian/dists/bookworm/InRelease")
    else:
        Path(opts["Dir::State::Lists"], "mirror_dists_bookworm_main_source_Sources").touch()
elif args[-3:] == ["source", "--download-only", "opensmtpd"]:
    Path("opensmtpd_6.8.0p2-4.dsc").touch()
elif args[-2:] != ["--download-only", "postfix"]:
    sys.exit(9)
"""

FAKE_DPKG_SOURCE = """#!/bin/sh
echo "dpkg-source $*" >> "$FAKE_LOG"
[ -n "$FAKE_DPKG_FAIL" ] && { echo "dpkg-source: error: checksum mismatch" >&2; exit 2; }
mkdir -p "$3/usr.sbin/smtpd" && echo "/* crypto */" > "$3/usr.sbin/smtpd/crypto.c"
"""


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, script in (
        ("apt-get", f"#!{sys.executable}{FAKE_APT}"),
        ("dpkg-source", FAKE_DPKG_SOURCE),
    ):
        (bindir / name).write_text(script)
        (bindir / name).chmod(0o755)
    log = tmp_path / "calls"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setattr(debsource, "codename", lambda: "bookworm")
    return log


def test_fetch_unpacks_into_place_with_its_version(fake_tools: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    assert oraclelib.opensmtpd_source(cache) is None
    messages: list[str] = []
    dest = cache / "opensmtpd-source"
    assert debsource.fetch("opensmtpd", dest, messages.append) == "6.8.0p2-4"
    assert oraclelib.opensmtpd_source(cache) == dest
    assert debsource.unpacked(dest) == "6.8.0p2-4"
    assert (dest / "usr.sbin" / "smtpd" / "crypto.c").read_text() == "/* crypto */\n"
    assert sorted(p.name for p in cache.iterdir()) == ["opensmtpd-source"]  # no leftovers
    calls = fake_tools.read_text().splitlines()
    work = cache / "opensmtpd-source.fetch"
    assert calls[0].startswith("indextargets ")
    assert calls[1].endswith(" update") and calls[2].endswith(" source --download-only opensmtpd")
    assert calls[3] == f"dpkg-source -x {work}/download/opensmtpd_6.8.0p2-4.dsc {work}/tree"
    assert messages == [
        "fetching opensmtpd's source from http://mirror.example/debian/ bookworm: apt-get source"
    ]


def test_a_failed_fetch_leaves_the_old_tree_and_no_debris(
    fake_tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "opensmtpd-source"
    debsource.fetch("opensmtpd", dest, lambda _: None)
    monkeypatch.setenv("FAKE_DPKG_FAIL", "1")
    with pytest.raises(debsource.FetchError, match="checksum mismatch"):
        debsource.fetch("opensmtpd", dest, lambda _: None)
    assert debsource.unpacked(dest) == "6.8.0p2-4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "calls", "opensmtpd-source"]
    monkeypatch.setenv("FAKE_OFFLINE", "1")
    with pytest.raises(debsource.FetchError, match="got no source index from http://mirror"):
        debsource.fetch("opensmtpd", dest, lambda _: None)
    monkeypatch.delenv("FAKE_OFFLINE")
    with pytest.raises(debsource.FetchError, match=r"no \.dsc"):
        debsource.fetch("postfix", tmp_path / "postfix-source", lambda _: None)
    assert not (tmp_path / "postfix-source").exists()


def test_fetch_names_the_missing_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(debsource.FetchError, match=r"apt-get is missing \(Debian's apt;"):
        debsource.fetch("opensmtpd", tmp_path / "x", lambda _: None)


def test_cached_smtp_source_needs_its_version_stamp(tmp_path: Path) -> None:
    assert smtpsource.cached(tmp_path) is None
    binary = tmp_path / "postfix" / "usr" / "sbin" / "smtp-source"
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    assert smtpsource.cached(tmp_path) is None  # an unpacking that did not finish
    (tmp_path / "postfix" / "VERSION").write_text("3.7.11-0+deb12u1\n")
    found = smtpsource.cached(tmp_path)
    assert (found.binary, found.version) == (binary, "3.7.11-0+deb12u1")
    assert found.libdir == tmp_path / "postfix" / "usr" / "lib" / "postfix"
    assert oraclelib.smtp_source(tmp_path.parent) is None  # it looks in CACHE/bench
