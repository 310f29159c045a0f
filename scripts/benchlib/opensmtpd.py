"""OpenSMTPD (the Debian package) as the delivery benchmark's reference server.

``smtpd`` has fixed paths: its queue is ``/var/spool/smtpd`` and its control
socket ``/var/run/smtpd.sock``.  The benchmark (and the SRS oracle test) never
touch the machine's own: each run happens in private mount and network
namespaces (``unshare -m -n``), where :func:`private_paths` mounts a tmpfs on
``/var/spool`` (Debian's package does not create ``/var/spool/smtpd``, and
nothing is ever created on the host), binds a fresh directory of the run on
``/var/spool/smtpd`` in it, and mounts a tmpfs on ``/run``.  A system smtpd
(running or not) and its queue are left alone, and every run starts from an
empty queue kept on disk, as the machine's would be.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from benchlib.procs import Server

__all__ = [
    "SMTPD",
    "SPOOL",
    "NamespaceError",
    "check_config",
    "opensmtpd_server",
    "private_paths",
    "unavailable",
    "version",
]

SMTPD = Path("/usr/sbin/smtpd")
SPOOL = Path("/var/spool/smtpd")
RUN = Path("/run")

Log = Callable[[str], None]


class NamespaceError(Exception):
    """The private namespace could not be set up (mount or ip failed)."""


def _run(argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _install(log: Log) -> str | None:
    """``apt-get install opensmtpd`` as scripts/setup --test does; the reason it failed."""
    if shutil.which("apt-get") is None:
        return "OpenSMTPD is not installed and apt-get is missing"
    log("installing OpenSMTPD: apt-get install opensmtpd")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-q", "opensmtpd"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env, check=False)
    if proc.returncode != 0:
        subprocess.run(
            ["apt-get", "update", "-q"], capture_output=True, timeout=600, env=env, check=False
        )
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=900, env=env, check=False
        )
    # the package starts its own daemon; the benchmark runs its own (scripts/setup does this too)
    subprocess.run(["pkill", "-x", "smtpd"], capture_output=True, timeout=30, check=False)
    if proc.returncode != 0 or not SMTPD.exists():
        detail = (proc.stderr or proc.stdout).strip()[-300:]
        return f"apt-get install opensmtpd failed: {detail}"
    return None


def unavailable(log: Log) -> str | None:
    """Why the delivery comparison cannot run here, or None when it can.

    OpenSMTPD is installed (as root, with apt-get) when it is missing.
    """
    if os.geteuid() != 0:
        return "needs root (unshare -m -n, OpenSMTPD, deliveries as the recipient's uid)"
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = _run(["unshare", "-m", "-n", "true"])
    if probe.returncode != 0:
        return f"unshare -m -n does not work here: {probe.stderr.strip()[-200:]}"
    if not SMTPD.exists():
        why = _install(log)
        if why is not None:
            return why
    return None


def version() -> str:
    """``OpenSMTPD 6.8.0p2``, from ``smtpd -h``."""
    try:
        proc = _run([str(SMTPD), "-h"], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "OpenSMTPD (version unknown)"
    m = re.search(r"version:\s*(.+)", proc.stdout + proc.stderr)
    return m.group(1).strip() if m else "OpenSMTPD (version unknown)"


def check_config(argv: list[str]) -> str | None:
    """Run a ``-n`` configuration check; None when it says OK, else its output."""
    try:
        proc = _run(argv, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]}: {exc}"
    if proc.returncode == 0:
        return None
    out = (proc.stdout + proc.stderr).strip()
    return f"{' '.join(argv)}: {out[-300:] or f'exit status {proc.returncode}'}"


def _mount(*args: str) -> None:
    proc = _run(["mount", *args])
    if proc.returncode != 0:
        raise NamespaceError(f"mount {' '.join(args)}: {proc.stderr.strip()}")


def _check_private() -> None:
    """Refuse to mount anything in the namespace of the process that started this one.

    Both callers run as ``unshare -m -n python ...``: ``unshare`` execs, so the
    parent is the process that ran it, in the machine's mount namespace.
    """
    try:
        mine = os.readlink("/proc/self/ns/mnt")
        parents = os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    except OSError as exc:
        raise NamespaceError(f"cannot compare mount namespaces: {exc}") from exc
    if mine == parents:
        raise NamespaceError("not in a private mount namespace (run this under unshare -m)")


def private_paths(spool: Path) -> None:
    """Inside a private mount namespace: ``spool`` on /var/spool/smtpd, a tmpfs on /run.

    ``spool`` is created empty (root, 0711, as smtpd wants its spool).  The
    mount point /var/spool/smtpd is made on a tmpfs mounted on /var/spool, so
    it need not exist on the host (and is not made there); the rest of
    /var/spool is hidden from this namespace only.
    """
    _check_private()
    for hidden in (SPOOL.parent, RUN):
        if spool.resolve().is_relative_to(hidden):
            raise NamespaceError(f"{spool} is under {hidden}, which a tmpfs hides here")
    spool.mkdir(mode=0o711)
    os.chmod(spool, 0o711)  # not subject to the umask
    _mount("-t", "tmpfs", "-o", "mode=0755,size=64k", "tmpfs", str(SPOOL.parent))
    SPOOL.mkdir(mode=0o711)
    _mount("--bind", str(spool), str(SPOOL))
    _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(RUN))


def opensmtpd_server(workdir: Path, conf: Path, port: int, extra: Sequence[str] = ()) -> Server:
    """``smtpd -d -f conf [extra...]``: in the foreground, logging to ``workdir/server.log``."""
    return Server(
        "opensmtpd",
        [str(SMTPD), "-d", "-f", str(conf), *extra],
        port=port,
        log_path=workdir / "server.log",
        cwd=workdir,
    )
