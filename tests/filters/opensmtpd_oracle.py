"""One scenario, two servers: the real OpenSMTPD 6.8 (the oracle) and ``mta -d``.

A :class:`Scenario` is a smtpd.conf, the files it needs (keys, tables, filter
scripts), and client dialogues (see dialogue.py).  :func:`run_opensmtpd` runs
it against Debian's ``/usr/sbin/smtpd`` in private mount and network
namespaces (``unshare -m -n``, root only: namespace_driver.py, with
``benchlib.opensmtpd.private_paths`` for its spool and /run); :func:`run_mta`
runs it against ``mta -d`` (deliveries on) the same way when it can (root),
so that both servers, and the filters they start, see the same world; as an
ordinary user it runs ``mta -d`` (tests/e2e/daemon.py) on a free loopback
port.  Both return a :class:`Run` of the same shape: the transcripts, the
messages delivered to the maildirs under ``@DIR@/mail/``, the files named in
``collect`` (e.g. a filter's log), the server's log.  :func:`normalise`
keeps what must be equal and replaces what legitimately differs, so that a
differential test is ``assert normalise(run_opensmtpd(s)) == normalise(run_mta(s))``.

In the configuration and the files, ``@DIR@`` is the run's directory (0755,
reachable by the users filters and deliveries run as), ``@PORT@`` the port
to listen on, ``@SINK@`` the port of the scenario's ``sink`` (smtp_sink.py,
a remote host to relay to, the same for both servers; what it received is
the Run's ``sink``).  ``@DIR@/mail`` and ``@DIR@/logs`` are made writable by all
(sticky): maildirs go under the first, filter logs under the second.  Names
are never looked up in the machine's files: in a namespace the server gets
``hosts`` (by default localhost only) as /etc/hosts and a resolv.conf naming
127.0.0.1, where dnsmasq serves ``dns`` (dnsmasq options; None: no DNS
server at all); outside one, mta gets ``hosts`` as ``MTA_HOSTS`` and
``dns`` on a free port as ``MTA_DNS`` (so a filter that reads
/etc/resolv.conf itself needs the namespace: :func:`namespace_unavailable`).

Debian's filters (scripts/setup --test installs them) are in
``/usr/libexec/opensmtpd``, where OpenSMTPD also looks for a ``proc-exec``
command that is not an absolute path (it runs ``/bin/sh -c "exec
/usr/libexec/opensmtpd/COMMAND"``, as the user ``opensmtpd`` unless the filter
says ``user``): ``filter-dkimsign -d DOMAIN -s SELECTOR -k KEYFILE`` (rsa-sha256,
simple/simple by default; the key file must be readable by the filter's user:
Debian's package makes a ``_dkimsign`` user and group for ``user _dkimsign
group _dkimsign``) and ``filter-senderscore -blockBelow N -junkBelow N
-slowFactor MS -scoreHeader`` (a Go program: it looks up
``<reversed ip>.score.senderscore.com`` through /etc/resolv.conf and reads the
score from the last octet of the A record; ``-blockBelow`` answers ``disconnect|550
your IP reputation is too low for this MX``).  Debian's
``opensmtpd-filter-rspamd`` is not installed: it is only a client of a running
rspamd daemon (Debian's ``rspamd``, a large service with its own configuration
tree, workers and rules), which the tests do not run; what such a filter does
with the protocol (junk, headers by data-line, reject) is covered by
protocol_filter.py.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from tests.e2e.daemon import MTA, Daemon, free_port
from tests.filters import dialogue
from tests.filters.smtp_sink import Sink
from tests.relay.dnsmasq import dnsmasq_path, serve_dnsmasq

__all__ = [
    "FILTERS",
    "PYTHON",
    "SMTPD",
    "Run",
    "Scenario",
    "namespace_unavailable",
    "normalise",
    "normalise_filter_log",
    "opensmtpd_unavailable",
    "protocol_filter",
    "run_mta",
    "run_opensmtpd",
    "version",
]

SMTPD = Path("/usr/sbin/smtpd")
FILTERS = Path("/usr/libexec/opensmtpd")
# the python3 that filters run by OpenSMTPD as its own user can use (scripts/setup
# --test installs Debian's python3): the test process's may be in a venv under /root
PYTHON = "/usr/bin/python3"
DRIVER = Path(__file__).with_name("namespace_driver.py")
PROTOCOL_FILTER = Path(__file__).with_name("protocol_filter.py")
NAMESPACE_PORT = 25  # in a network namespace of its own: no other server is there
MTA_READY = "mta: ready"
NAMESPACE_SINK_PORT = 2526
LOCALHOST = "127.0.0.1 localhost\n::1 localhost\n"


@attrs.frozen
class Scenario:
    """What to run: ``config`` (with ``@DIR@`` / ``@PORT@``), ``dialogues`` (each a
    sequence of steps), ``files`` (path under ``@DIR@`` -> content, where
    ``@DIR@`` is replaced too; ``modes`` gives their permission bits, 0644
    otherwise, ``owners`` the user who owns them, with that user's group, e.g.
    a key for a filter run with ``user _dkimsign``), ``collect`` (paths under
    ``@DIR@`` read back after the run), ``sources`` (the client's address for
    each dialogue, on loopback, 127.0.0.1 for those it does not reach)."""

    config: str
    dialogues: Sequence[Sequence[str]]
    files: Mapping[str, str | bytes] = attrs.field(factory=dict)
    modes: Mapping[str, int] = attrs.field(factory=dict)
    owners: Mapping[str, str] = attrs.field(factory=dict)
    collect: Sequence[str] = ()
    hosts: str = LOCALHOST
    dns: Sequence[str] | None = None
    sources: Sequence[str] = ()
    reply_timeout: float = 15.0
    delivery_timeout: float = 15.0
    smtpd_args: Sequence[str] = ()
    sink: Sequence[str] | None = None  # run a sink refusing these recipients

    def source(self, index: int) -> str:
        """The address the ``index``-th dialogue connects from."""
        return self.sources[index] if index < len(self.sources) else "127.0.0.1"


@attrs.frozen
class Run:
    """What one server did with a scenario.  ``exit`` is the server's exit status
    when it exited by itself during the run (None: it ran until stopped);
    ``delivered_all``: every accepted recipient got a final delivery result."""

    server: str
    workdir: str
    transcripts: list[list[str]]
    delivered: dict[str, list[str]]
    files: dict[str, str]
    log: str
    exit: int | None
    delivered_all: bool
    sink: list[dict[str, Any]] = attrs.field(factory=list)


def protocol_filter(script: Mapping[str, Any], name: str = "filter") -> tuple[dict[str, str], str]:
    """The files and the ``proc-exec`` command that run protocol_filter.py with
    ``script``, logging to ``logs/<name>.log`` (put that in ``collect``)."""
    files = {
        "protocol_filter.py": PROTOCOL_FILTER.read_text(),
        f"{name}.json": json.dumps(script),
    }
    command = f"{PYTHON} @DIR@/protocol_filter.py @DIR@/logs/{name}.log @DIR@/{name}.json"
    return files, command


def version() -> str:
    """``OpenSMTPD 6.8.0p2``: what ``smtpd -h`` says."""
    proc = subprocess.run([str(SMTPD), "-h"], capture_output=True, text=True, check=False)
    m = re.search(r"version:\s*(.+)", proc.stdout + proc.stderr)
    return m.group(1).strip() if m else "OpenSMTPD (version unknown)"


def namespace_unavailable() -> str | None:
    """Why no private namespace can be made here (for ``pytest.skip``), or None."""
    if os.geteuid() != 0:
        return "needs root (unshare -m -n)"
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "-m", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"unshare -m -n does not work here: {probe.stderr.decode(errors='replace')}"
    return None


def opensmtpd_unavailable() -> str | None:
    """Why OpenSMTPD cannot be run here (for ``pytest.skip``), or None."""
    if os.geteuid() != 0:
        return "needs root (unshare -m -n, OpenSMTPD 6.8)"
    if not SMTPD.exists():
        return "OpenSMTPD is not installed (scripts/setup --test installs it)"
    return namespace_unavailable()


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    """A fresh directory every user can reach (pytest's tmp_path is under a 0700
    directory), removed afterwards unless it is ``keep``."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        os.chmod(keep, 0o755)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="mta-filter-oracle-"))
    try:
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _prepare(scenario: Scenario, workdir: Path, port: int, sink: int = 0) -> str:
    """Write the scenario's files; the configuration's text."""
    for name in ("mail", "logs"):
        (workdir / name).mkdir()
        os.chmod(workdir / name, 0o1777)
    for relative, content in scenario.files.items():
        path = workdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.replace("@DIR@", str(workdir)).encode()
        path.write_bytes(content)
        os.chmod(path, scenario.modes.get(relative, 0o644))
        if relative in scenario.owners:
            user = pwd.getpwnam(scenario.owners[relative])
            os.chown(path, user.pw_uid, user.pw_gid)
    (workdir / "hosts").write_text(scenario.hosts)
    (workdir / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    config = scenario.config.replace("@DIR@", str(workdir)).replace("@PORT@", str(port))
    return config.replace("@SINK@", str(sink))


def _collected(scenario: Scenario, workdir: Path) -> dict[str, str]:
    files = {}
    for relative in scenario.collect:
        path = workdir / relative
        files[relative] = path.read_bytes().decode("latin-1") if path.exists() else ""
    return files


def run_opensmtpd(scenario: Scenario, *, workdir: Path | None = None) -> Run:
    """The scenario against the real OpenSMTPD 6.8 (check opensmtpd_unavailable first)."""
    with _workdir(workdir) as directory:
        config = _prepare(scenario, directory, NAMESPACE_PORT, NAMESPACE_SINK_PORT)
        (directory / "smtpd.conf").write_text(config)
        argv = [str(SMTPD), "-d", *scenario.smtpd_args, "-f", str(directory / "smtpd.conf")]
        server: dict[str, Any] = {"argv": argv, "env": {}, "log": "smtpd.log", "ready": None}
        return _in_namespace("opensmtpd", scenario, directory, server)


def run_mta(
    scenario: Scenario, *, workdir: Path | None = None, namespace: bool | None = None
) -> Run:
    """The same scenario against ``mta -d`` (deliveries on).  In a private
    namespace as 6.8 runs (``namespace``; None: when one can be made here,
    see :func:`namespace_unavailable`), mta reads the scenario's hosts and
    resolv.conf as /etc/hosts and /etc/resolv.conf, as its filters do, and
    the scenario's zone on 127.0.0.1:53.  Outside (an ordinary user), it gets
    them as ``MTA_HOSTS`` and ``MTA_DNS`` (dnsmasq on a free port): its own
    lookups see the scenario's world, a filter that reads /etc/resolv.conf
    does not (a test of one needs the namespace)."""
    if namespace is None:
        namespace = namespace_unavailable() is None
    with _workdir(workdir) as directory:
        if namespace:
            config = _prepare(scenario, directory, NAMESPACE_PORT, NAMESPACE_SINK_PORT)
            (directory / "mta").mkdir(mode=0o755)
            (directory / "mta" / "smtpd.conf").write_text(config)
            argv = [*MTA, "-d", "-f", "mta/smtpd.conf", "--spool", str(directory / "mta/spool")]
            # unset: mta reads /etc/hosts and /etc/resolv.conf, the scenario's here
            env = {"MTA_HOSTS": None, "MTA_DNS": None}
            server = {"argv": argv, "env": env, "log": "mta/mta.log", "ready": MTA_READY}
            return _in_namespace("mta", scenario, directory, server)
        return _mta_outside(scenario, directory)


def _in_namespace(name: str, scenario: Scenario, directory: Path, server: Mapping[str, Any]) -> Run:
    """Run namespace_driver.py in new mount and network namespaces with ``server``."""
    request = {
        "workdir": str(directory),
        "server": server,
        "port": NAMESPACE_PORT,
        "dialogues": [list(steps) for steps in scenario.dialogues],
        "sources": [scenario.source(i) for i in range(len(scenario.dialogues))],
        "dns": list(scenario.dns) if scenario.dns is not None else None,
        "reply_timeout": scenario.reply_timeout,
        "delivery_timeout": scenario.delivery_timeout,
        "collect": list(scenario.collect),
        "sink": None
        if scenario.sink is None
        else {"port": NAMESPACE_SINK_PORT, "refuse": list(scenario.sink)},
    }
    proc = subprocess.run(
        ["unshare", "-m", "-n", sys.executable, str(DRIVER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120 + scenario.delivery_timeout + 10 * len(scenario.dialogues),
        check=False,
    )
    if proc.returncode != 0:
        log = directory / server["log"]
        text = log.read_text(errors="replace") if log.exists() else ""
        raise RuntimeError(f"namespace driver failed:\n{proc.stderr}\n{name} log:\n{text}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return Run(
        server=name,
        workdir=str(directory),
        transcripts=out["transcripts"],
        delivered=dialogue.delivered(directory / "mail"),
        files=_collected(scenario, directory),
        log=out["log"],
        exit=out["exit"],
        delivered_all=out["delivered_all"],
        sink=out.get("sink", []),
    )


def _mta_outside(scenario: Scenario, directory: Path) -> Run:
    """``mta -d`` in the test's own namespaces, on a free loopback port."""
    port = free_port()
    sink = Sink(refuse=frozenset(scenario.sink)) if scenario.sink is not None else None
    if sink is not None:
        sink.start()
    config = _prepare(scenario, directory, port, sink.port if sink is not None else 0)
    env = {"MTA_HOSTS": str(directory / "hosts"), "MTA_DNS": "none"}
    with _dns(scenario.dns) as nameserver:
        if nameserver is not None:
            env["MTA_DNS"] = nameserver
        (directory / "mta").mkdir(mode=0o755)
        daemon = Daemon(directory / "mta", config, env=env, paused=())
        transcripts: list[list[str]] = []
        daemon.start()
        try:
            for index, steps in enumerate(scenario.dialogues):
                if daemon.process is not None and daemon.process.poll() is not None:
                    transcripts.append([dialogue.CLOSED])
                    continue
                transcripts.append(
                    dialogue.converse(
                        "127.0.0.1",
                        port,
                        steps,
                        timeout=scenario.reply_timeout,
                        source=scenario.source(index),
                    )
                )
            delivered_all = dialogue.wait_delivered(
                daemon.log, transcripts, scenario.delivery_timeout
            )
            dialogue.settle([directory / name for name in scenario.collect])
        finally:
            assert daemon.process is not None
            status = daemon.process.poll()
            daemon.stop()
            if sink is not None:
                sink.close()
    return Run(
        server="mta",
        workdir=str(directory),
        transcripts=transcripts,
        delivered=dialogue.delivered(directory / "mail"),
        files=_collected(scenario, directory),
        log=daemon.log(),
        exit=status,
        delivered_all=delivered_all,
        sink=sink.records() if sink is not None else [],
    )


@contextmanager
def _dns(records: Sequence[str] | None) -> Iterator[str | None]:
    if records is None:
        yield None
        return
    if dnsmasq_path() is None:
        raise RuntimeError("dnsmasq is not installed (scripts/setup --test installs it)")
    port = free_port()
    with serve_dnsmasq(records, port=port):
        yield f"127.0.0.1:{port}"


# ---- normalising: what legitimately differs between the two servers ----------------

# OpenSMTPD's time_to_text(): "Mon, 7 Dec 2026 17:03:28 +0000 (UTC)" (Received, Date)
_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} "
    r"\d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z]+\)"
)
_BANNER = re.compile(r"^(220 \S+ ESMTP) (?:OpenSMTPD|mta)$")
_ACCEPTED = re.compile(r"^(250 2\.0\.0 )([0-9a-f]{8})( Message accepted for delivery)$")
_RECEIVED_BY = re.compile(r"(\n\tby \S+ )\((?:OpenSMTPD|mta)\)( with \S+ id )([0-9a-f]{8})\b")
_MESSAGE_ID = re.compile(r"^(Message-ID: <)[0-9a-f]{16}(@\S+>)$", re.MULTILINE)
# extensions mta adds to EHLO's reply (DESIGN.md: RFC 2920 PIPELINING, RFC 6531 SMTPUTF8)
_MTA_EXTENSIONS = ("250-PIPELINING", "250-SMTPUTF8")
# replies where mta adds the enhanced status code that 6.8 leaves out (RFC 2034 wants
# it on every reply once ENHANCEDSTATUSCODES is announced)
_ENHANCED = (
    ("550 5.1.1 Invalid recipient: ", "550 Invalid recipient: "),
    # a filter's reply that is no valid reply, replaced (lka_filter.c)
    ("421 4.0.0 Internal server error", "421 Internal server error"),
    # a filter's reply without an enhanced code: 6.8 sends the text as it is, mta
    # adds x.0.0 (mta.filters.verdict); filter-senderscore's -blockBelow reply
    ("550 5.0.0 your IP reputation ", "550 your IP reputation "),
)


class _Ids:
    """Ids (msgids, session ids, tokens) renamed in order of first appearance, so
    that two runs compare equal when their ids play the same parts."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        return self.names.setdefault(value, f"{self.prefix}{len(self.names) + 1}")


def _reply(line: str, msgids: _Ids) -> str:
    line = _BANNER.sub(r"\1 SOFTWARE", line)
    line = _ACCEPTED.sub(lambda m: m[1] + msgids(m[2]) + m[3], line)
    for mta_form, opensmtpd_form in _ENHANCED:
        if line.startswith(mta_form):
            line = opensmtpd_form + line[len(mta_form) :]
    return line


def _message(content: str, msgids: _Ids, workdir: str) -> str:
    """A delivered message: in its header section, the server's name in the
    Received headers it wrote, their ids and dates, the Date and Message-ID
    it added."""
    head, sep, body = content.partition("\n\n")
    head = _RECEIVED_BY.sub(lambda m: f"{m[1]}(SOFTWARE){m[2]}{msgids(m[3])}", head)
    head = _DATE.sub("DATE", head)
    head = _MESSAGE_ID.sub(r"\1GENERATED\2", head)
    return (head + sep + body).replace(workdir, "@DIR@")


def normalise(run: Run) -> dict[str, Any]:
    """The parts of a run to compare between servers: the transcripts and the
    delivered messages (and the collected files, with the run's directory as
    ``@DIR@``), with the differences that are not behaviour replaced: the
    software's name (banner, Received), message ids (renamed in order of
    appearance: equal ids stay equal), dates the server wrote, generated
    Message-IDs, the EHLO extensions that only mta has, and the enhanced
    status codes mta adds where 6.8 has none; each maildir's messages are
    sorted (ids are named in the order of the transcripts, so that holds).
    Host names are not replaced: both servers find the same name.  The logs
    are left out (their lines differ in detail); ``exit`` is kept."""
    msgids = _Ids("MSGID")
    transcripts = [
        [_reply(line, msgids) for line in transcript if line not in _MTA_EXTENSIONS]
        for transcript in run.transcripts
    ]
    delivered = {  # sorted: the order of deliveries is not behaviour
        maildir: sorted(_message(content, msgids, run.workdir) for content in messages)
        for maildir, messages in run.delivered.items()
    }
    files = {name: text.replace(run.workdir, "@DIR@") for name, text in run.files.items()}
    return {
        "transcripts": transcripts,
        "delivered": delivered,
        "files": files,
        "exit": run.exit,
        "delivered_all": run.delivered_all,
    }


_HEX16 = re.compile(r"\b[0-9a-f]{16}\b")
# where filter lines carry a msgid: tx-* reports, the Received header, the 250 at commit
_TX_MSGID = re.compile(r"^(report\|[^|]+\|[^|]+\|[^|]+\|tx-[a-z]+\|[^|]+\|)([0-9a-f]{8})\b")
_ID_MSGID = re.compile(r"( with E?SMTPS?A? id |250 2\.0\.0 )([0-9a-f]{8})\b")
_TIMESTAMP = re.compile(r"^((?:report|filter)\|[^|]+\|)\d+\.\d{6}\|")
_PORT = re.compile(r"\b((?:\d{1,3}\.){3}\d{1,3}|\[[0-9a-f:]+\]):\d+\b")
_SOFTWARE_BY = re.compile(r"(\tby \S+ )\((?:OpenSMTPD|mta)\)")
_SOFTWARE_BANNER = re.compile(r"(\|protocol-server\|[^|]+\|220 \S+ ESMTP) (?:OpenSMTPD|mta)$")


def normalise_filter_log(text: str) -> list[str]:
    """The lines of a protocol_filter.py log (``< `` received, ``> `` sent, ``# ``
    notes) with their variable parts replaced: timestamps (``TS``), session
    ids, tokens and envelope ids (16 hex digits: ``ID<n>``), message ids
    (8 hex digits: ``MSGID<n>``), client ports, dates and the software's name
    (in the Received header's data-lines and the banner's protocol-server report)."""
    ids, msgids = _Ids("ID"), _Ids("MSGID")
    lines = []
    for line in text.splitlines():
        direction, _, rest = line.partition(" ")
        rest = _TIMESTAMP.sub(r"\1TS|", rest)
        rest = _HEX16.sub(lambda m: ids(m[0]), rest)
        rest = _TX_MSGID.sub(lambda m: m[1] + msgids(m[2]), rest)
        rest = _ID_MSGID.sub(lambda m: m[1] + msgids(m[2]), rest)
        rest = _PORT.sub(r"\1:PORT", rest)
        rest = _DATE.sub("DATE", rest)
        rest = _SOFTWARE_BY.sub(r"\1(SOFTWARE)", rest)
        rest = _SOFTWARE_BANNER.sub(r"\1 SOFTWARE", rest)
        lines.append(f"{direction} {rest}")
    return lines
