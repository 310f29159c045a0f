"""A real LMTP server for the tests: Debian's dovecot-lmtpd, started per test.

It listens on a loopback port and on a Unix socket in a temporary directory,
knows only the users it is given (others get 550 at RCPT), and stores into
Maildirs under that directory (``maildir(user)``).  Installed by
``scripts/setup --test``; tests skip when it is missing.
"""

from __future__ import annotations

import contextlib
import grp
import mailbox
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from tests.e2e.daemon import free_port

__all__ = ["DOVECOT", "Dovecot", "dovecot_server"]

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


class Dovecot:
    def __init__(self, root: pathlib.Path, users: list[str]) -> None:
        self.root = root
        self.port = free_port()
        self.socket = str(root / "lmtp.sock")
        self.users = users
        self.conf = root / "dovecot.conf"
        self.process: subprocess.Popen[bytes] | None = None

    def maildir(self, user: str) -> mailbox.Maildir:
        return mailbox.Maildir(str(self.root / "mail" / user), create=False)

    def start(self) -> None:
        root = self.root
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        owner = "nobody" if os.geteuid() == 0 else None
        if owner:
            shutil.chown(root / "mail", user=owner)
        uid, gid = (65534, 65534) if owner else (os.getuid(), os.getgid())
        (root / "users").write_text(
            "".join(f"{u}::{uid}:{gid}::{root / 'mail' / u}::\n" for u in self.users)
        )
        # run unprivileged, every dovecot process and socket is the user's own (the
        # package's dovecot group would need root to give sockets to)
        login = "nobody" if owner else pwd.getpwuid(os.getuid()).pw_name
        group = "nogroup" if owner else grp.getgrgid(os.getgid()).gr_name
        self.conf.write_text(
            f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = lmtp
ssl = no
listen = 127.0.0.1
mail_location = maildir:{root}/mail/%n
auth_username_format = %n
default_login_user = {login}
default_internal_user = {login}
default_internal_group = {group}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
passdb {{
  driver = passwd-file
  args = {root}/users
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
  unix_listener {self.socket} {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
"""
        )
        # in the foreground: the test owns the process, nothing daemonizes
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            if os.path.exists(self.socket):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not start: {(root / 'dovecot.log').read_text()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@contextlib.contextmanager
def dovecot_server(users: list[str]) -> Iterator[Dovecot]:
    """A started server in a directory of its own under /tmp that its unprivileged
    processes can reach (pytest's own temporary directories are private to root)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="mta-dovecot-", dir="/tmp"))
    root.chmod(0o755)
    server = Dovecot(root, users)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
