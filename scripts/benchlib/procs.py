"""Server processes for the benchmark: start, wait for the banner, measure, stop.

Each server runs in its own session (process group) with the soft file
descriptor limit raised to the hard one, and dies with the harness
(``PR_SET_PDEATHSIG``) so nothing is left behind even if the harness is killed.
Memory and CPU are read from ``/proc`` and summed over the server's process
tree, so a server that forks helpers is measured whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "Server",
    "ServerError",
    "die_with_parent",
    "free_port",
    "process_tree",
    "raise_nofile",
    "read_banner",
    "remove_stale_dirs",
    "rss_kib",
    "run_driver",
]

_PR_SET_PDEATHSIG = 1
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class ServerError(Exception):
    """A server did not start, stopped answering or died; the text says why."""


def raise_nofile() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def read_banner(host: str, port: int, timeout: float) -> str:
    """Connect, read the greeting up to its last line, say QUIT; return the last line."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError(f"connection closed before a banner ({data!r})")
            data += chunk
            lines = data.split(b"\r\n")
            final = [ln for ln in lines[:-1] if len(ln) < 4 or ln[3:4] != b"-"]
            if final:
                with contextlib.suppress(OSError):
                    s.sendall(b"QUIT\r\n")
                return final[0].decode(errors="replace")


def remove_stale_dirs(parent: Path, pattern: str, pid_file: str) -> None:
    """Remove ``parent/pattern`` directories whose harness (its pid in ``pid_file``) is gone.

    Directories without that file (kept with ``--keep``) are left alone.
    """
    for run in parent.glob(pattern):
        try:
            pid = int((run / pid_file).read_text())
        except (OSError, ValueError):
            continue
        if not Path(f"/proc/{pid}").exists():
            shutil.rmtree(run, ignore_errors=True)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces
        fields = stat[stat.rindex(")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that exist now."""
    tree = _children()
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone or has no memory of its own)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (all its threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                members.append(int(entry))
    return members


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, without reaping it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def die_with_parent() -> None:
    """In a child between fork and exec: be killed when the harness dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_setup() -> None:  # runs in the child between fork and exec
    raise_nofile()
    die_with_parent()


class Server:
    """One server process with its log file; a context manager that always stops it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.host = host
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0  # monotonic, set by launch()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError(f"{self.name} is not running")
        return self.process.pid

    def start(self, timeout: float = 30.0) -> str:
        """Start it and wait until it sends a 220 banner; return the banner."""
        self.launch()
        return self.wait_banner(timeout)

    def launch(self) -> None:
        """Start the process; ``launched_at`` is the monotonic time just before."""
        with open(self.log_path, "ab") as log:
            self.launched_at = time.monotonic()
            try:
                self.process = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=_child_setup,  # the harness runs no threads
                )
            except OSError as exc:
                raise ServerError(f"cannot run {self.argv[0]}: {exc}") from exc

    def wait_banner(self, timeout: float = 30.0) -> str:
        """Wait until the launched server sends a 220 banner; return the banner."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                banner = read_banner(self.host, self.port, timeout=5.0)
            except OSError as exc:
                last = str(exc)
                time.sleep(0.1)
                continue
            if not banner.startswith("220"):
                raise ServerError(f"banner is not 220: {banner!r}")
            return banner
        raise ServerError(f"no banner on port {self.port} within {timeout:g} s ({last})")

    def wait_log(self, text: str, timeout: float, poll: float = 0.005) -> float:
        """Wait until ``text`` is in the log; the monotonic time it was first seen
        (within ``poll`` seconds of its writing).  ServerError if the process died
        or the time is up."""
        deadline = time.monotonic() + timeout
        needle = text.encode()
        with open(self.log_path, "rb") as log:
            tail = b""
            while True:
                chunk = log.read()
                now = time.monotonic()
                if needle in tail + chunk:
                    return now
                tail = (tail + chunk)[-len(needle) :]
                self.check_alive()
                if now > deadline:
                    raise ServerError(f"no {text!r} in its log within {timeout:g} s")
                time.sleep(poll)

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            why = f"signal {-code}" if code < 0 else f"status {code}"
            raise ServerError(f"exited with {why}: {self.log_tail(1)}")

    def rss_kib(self) -> int:
        return sum(rss_kib(p) for p in process_tree(self.pid))

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in process_tree(self.pid))

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return "(no log)"
        return " | ".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of it.

        The leader is waited for without being reaped (``WNOWAIT``) so its
        process group id cannot be reused before the final SIGKILL.
        """
        proc = self.process
        if proc is None:
            return
        if proc.returncode is not None:
            # the leader is gone already; its helpers still carry its group id
            for pid in _group_members(proc.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not _exited(proc.pid):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_driver(argv: list[str], timeout: float, pythonpath: Path) -> tuple[str, int | None]:
    """Run one run's driver (``python -m benchlib.*_run`` under ``unshare``) to its
    end, SIGTERM then SIGKILL if it overstays or we are stopped: (its last line of
    output, its exit status).  TimeoutError when it did not end within ``timeout``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,  # a Ctrl-C reaches the harness, which stops it in order
        preexec_fn=die_with_parent,  # the harness runs no threads
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"the run did not end within {timeout:g} s") from None
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    lines = out.decode(errors="replace").strip().splitlines()
    return (lines[-1] if lines else ""), proc.returncode
