"""Debian source packages, fetched through apt with a private configuration.

The machine's apt sources usually list binary packages only (``Types: deb``),
and its configuration is not ours to change.  :class:`PrivateApt` keeps a
sources list with one ``deb-src`` line, the package lists it downloads and its
lock in a directory of its own (``-o Dir::Etc::SourceList=...`` and friends,
the rest of the machine's apt configuration, proxies included, still applies),
so ``apt-get update`` and ``apt-get source --download-only`` run unprivileged
and leave the machine's apt state as it was.  The archive is the mirror the
machine uses for its Debian release (``apt-get indextargets``), else
deb.debian.org; the release is /etc/os-release's ``VERSION_CODENAME``.

``dpkg-source -x`` (Debian's dpkg-dev) checks the downloaded files against the
``.dsc`` and unpacks them with Debian's patches applied: the source of the
binary package Debian ships.  :func:`fetch` unpacks next to the destination and
renames into place, with a ``.source-version`` file, so :func:`unpacked` never
sees half a tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_MIRROR",
    "FetchError",
    "PrivateApt",
    "codename",
    "fetch",
    "machine_mirror",
    "pick_mirror",
    "unpacked",
]

DEFAULT_MIRROR = "http://deb.debian.org/debian/"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
STAMP = ".source-version"

Log = Callable[[str], None]


class FetchError(Exception):
    """The source package could not be fetched or unpacked; the text says why."""


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    """Run a tool; its output, or :class:`FetchError` with the tail of it."""
    try:
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"{argv[0]}: {exc}") from exc
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise FetchError(f"{_shown(argv)} failed: {out[-800:] or proc.returncode}")
    return out


def _shown(argv: list[str]) -> str:
    """The command line without its ``-o key=value`` options (they are all alike)."""
    return " ".join(a for i, a in enumerate(argv) if "-o" not in (a, argv[i - 1] if i else ""))


def codename(os_release: Path = Path("/etc/os-release")) -> str:
    """The Debian release of this machine (``bookworm``), from os-release."""
    try:
        text = os_release.read_text()
    except OSError as exc:
        raise FetchError(f"cannot tell the Debian release: {exc}") from exc
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip("\"'"):
            return value.strip("\"'")
    raise FetchError(f"cannot tell the Debian release: no VERSION_CODENAME in {os_release}")


def pick_mirror(targets: Iterable[str], release: str) -> str | None:
    """The archive of ``release``'s main component among ``apt-get indextargets``
    lines formatted as ``TARGET_OF RELEASE COMPONENT REPO_URI``."""
    for line in targets:
        fields = line.split()
        if len(fields) == 4 and fields[:3] == ["deb", release, "main"]:
            return fields[3]
    return None


def machine_mirror(release: str) -> str:
    """The mirror this machine's apt uses for ``release``, else deb.debian.org."""
    fmt = "$(TARGET_OF) $(RELEASE) $(COMPONENT) $(REPO_URI)"
    try:
        out = _run(["apt-get", "indextargets", "--format", fmt], timeout=60)
    except FetchError:
        return DEFAULT_MIRROR
    return pick_mirror(out.splitlines(), release) or DEFAULT_MIRROR


@dataclass(frozen=True)
class PrivateApt:
    """apt with its own sources list (one ``deb-src`` line), lists and caches under ``root``."""

    root: Path
    mirror: str
    release: str

    @property
    def source_line(self) -> str:
        signed = f"[signed-by={KEYRING}] " if KEYRING.exists() else ""
        return f"deb-src {signed}{self.mirror} {self.release} main\n"

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::SourceList": str(self.root / "sources.list"),
            "Dir::Etc::SourceParts": str(self.root / "sources.list.d"),
            "Dir::State::Lists": str(self.root / "lists"),
            "Dir::Cache": str(self.root / "cache"),
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Acquire::Languages": "none",
        }
        if os.geteuid() == 0:
            # apt would hand the downloads to its _apt user, who cannot write here
            opts["APT::Sandbox::User"] = "root"
        return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]

    def update(self) -> None:
        for sub in ("sources.list.d", "lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list").write_text(self.source_line)
        out = _run(["apt-get", "-q", *self.options(), "update"])
        # apt-get update exits 0 when it could not reach the archive (offline)
        if not any((self.root / "lists").glob("*_Sources*")):
            raise FetchError(f"apt-get update got no source index from {self.mirror}: {out[-800:]}")

    def download_source(self, package: str, into: Path) -> Path:
        """``apt-get source --download-only package`` into ``into``; the ``.dsc``."""
        into.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "-q", *self.options(), "source", "--download-only", package], cwd=into)
        dscs = sorted(into.glob(f"{package}_*.dsc"))
        if not dscs:
            raise FetchError(f"apt-get source {package} left no .dsc in {into}")
        return dscs[-1]


def unpacked(dest: Path) -> str | None:
    """The version of the source tree at ``dest``; None when it is not (wholly) there."""
    try:
        return (dest / STAMP).read_text().strip() or None
    except OSError:
        return None


def fetch(package: str, dest: Path, log: Log) -> str:
    """Fetch ``package``'s source and unpack it at ``dest``; its version."""
    for tool, deb in (("apt-get", "apt"), ("dpkg-source", "dpkg-dev")):
        if shutil.which(tool) is None:
            raise FetchError(
                f"{tool} is missing (Debian's {deb}; scripts/setup --test installs it)"
            )
    release = codename()
    work = dest.with_name(dest.name + ".fetch")
    shutil.rmtree(work, ignore_errors=True)
    try:
        apt = PrivateApt(work / "apt", machine_mirror(release), release)
        log(f"fetching {package}'s source from {apt.mirror} {release}: apt-get source")
        apt.update()
        dsc = apt.download_source(package, work / "download")
        tree = work / "tree"
        _run(["dpkg-source", "-x", str(dsc), str(tree)], cwd=work)
        version = dsc.name.removesuffix(".dsc").split("_", 1)[1]
        (tree / STAMP).write_text(version + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tree.rename(dest)
        return version
    finally:
        shutil.rmtree(work, ignore_errors=True)
