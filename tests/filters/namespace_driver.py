"""Run inside ``unshare -m -n`` by opensmtpd_oracle: a server (the real OpenSMTPD
6.8, or ``mta -d``) with a prepared configuration, the client dialogues against
it, and what it said.

Usage: python namespace_driver.py < request.json, where the request (written by
``opensmtpd_oracle``) holds ``workdir`` (the configuration, a ``hosts`` and a
``resolv.conf`` file are there already), ``server`` (``argv``, the server's
command line; ``env``, variables to set, or to unset when null; ``log``, the
file under ``workdir`` its output goes to; ``ready``, a line to wait for in
that log before the first dialogue, or null), ``port``, ``dialogues`` (each
connecting from the address at the same place in ``sources``), ``dns``
(dnsmasq options, or null), ``reply_timeout``, ``delivery_timeout``,
``collect`` (files, such as a filter's log, that are let settle before the
server is stopped) and ``sink`` (null, or the ``port`` and ``refuse`` list of
an smtp_sink.py to run: a remote host to relay to).  Prints one JSON object:
``transcripts`` (one per dialogue, see dialogue.py), ``log`` (the server's
output), ``exit`` (its exit status when it exited by itself, else null),
``delivered_all`` (whether every accepted recipient got a final result) and
``sink`` (what the sink received).

Both servers get the same world: in the private mount namespace
``benchlib.opensmtpd.private_paths`` puts an empty spool on /var/spool/smtpd
and a tmpfs on /run (smtpd's fixed paths; mta has its own spool under
``workdir`` and leaves them alone); /etc/hosts and /etc/resolv.conf are
replaced by the request's (names never come from the machine's files, and
the server and its filters read the same ones), and dnsmasq serves the
request's zone on 127.0.0.1:53 of the private network namespace.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parents[1] / "scripts"


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def tool(name: str) -> str:
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if os.access(f"{directory}/{name}", os.X_OK):
            return f"{directory}/{name}"
    return name


def start_dnsmasq(records: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """dnsmasq on 127.0.0.1:53 answering ``records`` alone (as tests/relay/dnsmasq.py)."""
    argv = [
        tool("dnsmasq"),
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--keep-in-foreground",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--port=53",
        "--pid-file=",
        "--user=root",
        "--group=root",
        "--log-facility=-",
        "--log-queries",
        *records,
    ]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        log.flush()
        if b": started, version " in Path(log.name).read_bytes():
            return process
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dnsmasq did not start: {Path(log.name).read_text()}")
        time.sleep(0.02)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def exit_status(server: subprocess.Popen[bytes], log: Path, port: int) -> int | None:
    """After a session was cut short: the server's exit status if it is on its way out
    by itself (a filter died or misbehaved: "lost processor", a fatal error), or
    None once it shows it is alive (listening, every session ended in its log)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = server.poll()
        if status is not None:
            return status
        text = log.read_text(errors="replace")
        open_sessions = text.count(" smtp connected ") - text.count(" smtp disconnected ")
        if open_sessions <= 0 and importlib.import_module("dialogue").listening(port):
            return None
        time.sleep(0.05)
    return server.poll()


def wait_ready(log: Path, line: str, process: subprocess.Popen[bytes]) -> None:
    """Until ``line`` is in the server's log (mta listens before it is ready to
    serve every listener); RuntimeError when it exits or after 20 s."""
    deadline = time.monotonic() + 20
    while line not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise RuntimeError("the server exited before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not log {line!r}")
        time.sleep(0.05)


def end_the_rest() -> None:
    """SIGKILL what is left in this private network namespace (what the server started:
    filters run in sessions of their own and may outlive it), by process id."""
    ours = os.readlink("/proc/self/ns/net")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(entry / "ns" / "net") == ours:
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


def main() -> int:
    request: dict[str, Any] = json.load(sys.stdin)
    workdir = Path(request["workdir"])
    sys.path[:0] = [str(SCRIPTS), str(HERE)]
    dialogue = importlib.import_module("dialogue")
    importlib.import_module("benchlib.opensmtpd").private_paths(workdir / "smtpd-spool")
    run(tool("ip"), "link", "set", "lo", "up")
    for name in ("hosts", "resolv.conf"):
        run(tool("mount"), "--bind", str(workdir / name), f"/etc/{name}")
    sink = None
    if request.get("sink") is not None:
        spec = request["sink"]
        sink = importlib.import_module("smtp_sink").Sink(spec["port"], frozenset(spec["refuse"]))
        sink.start()
    dns_log = open(workdir / "dnsmasq.log", "w+b")  # noqa: SIM115 - the child's
    dnsmasq = start_dnsmasq(request["dns"], dns_log) if request["dns"] is not None else None
    server = request["server"]
    log_path = workdir / server["log"]
    env = dict(os.environ)
    for name, value in server["env"].items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    log = open(log_path, "wb")  # noqa: SIM115 - the child's
    process = subprocess.Popen(
        server["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=workdir
    )
    port = int(request["port"])
    transcripts: list[list[str]] = []
    delivered_all = False
    try:
        try:
            dialogue.wait_for_port(port, lambda: process.poll() is None)
            if server["ready"] is not None:
                wait_ready(log_path, server["ready"], process)
        except RuntimeError:
            if process.poll() is None:
                raise
            # it exited at start (e.g. a filter's bad handshake): no dialogue
        for steps, source in zip(request["dialogues"], request["sources"], strict=True):
            if process.poll() is not None:
                transcripts.append([dialogue.CLOSED])
                continue
            try:
                transcripts.append(
                    dialogue.converse(
                        "127.0.0.1",
                        port,
                        steps,
                        timeout=float(request["reply_timeout"]),
                        source=source,
                    )
                )
            except ConnectionRefusedError:
                transcripts.append([dialogue.CLOSED])
        delivered_all = dialogue.wait_delivered(
            lambda: log_path.read_text(errors="replace"),
            transcripts,
            float(request["delivery_timeout"]),
        )
        dialogue.settle([workdir / name for name in request["collect"]])
    finally:
        status = process.poll()
        if status is None and dialogue.cut_short(transcripts):
            status = exit_status(process, log_path, port)
        stop(process)
        log.close()
        if dnsmasq is not None:
            stop(dnsmasq)
        dns_log.close()
        end_the_rest()
    print(
        json.dumps(
            {
                "transcripts": transcripts,
                "log": log_path.read_bytes().decode("latin-1"),
                "exit": status,
                "delivered_all": delivered_all,
                "sink": sink.records() if sink is not None else [],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
