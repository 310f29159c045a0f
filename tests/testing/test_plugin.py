"""The pytest plugin (``mail_server``, ``mail_server_config``), run as a user's
suite runs it: in pytester, and installed from a built wheel in a fresh venv."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).parents[2]


def plugin_args() -> list[str]:
    """``-p mta.testing.plugin`` unless the installed mta registers it (pytest11)."""
    if importlib.metadata.entry_points(group="pytest11", name="mta"):
        return []
    return ["-p", "mta.testing.plugin"]


def test_each_test_gets_a_fresh_started_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import smtplib

        PORTS = []

        def send(server, subject):
            with smtplib.SMTP(server.host, server.port) as smtp:
                smtp.sendmail("a@example.org", ["b@example.com"], f"Subject: {subject}\\n\\nx")

        def test_one(mail_server):
            assert mail_server.inbox.messages == []
            PORTS.append(mail_server.port)
            send(mail_server, "one")
            assert mail_server.inbox.wait().subject == "one"

        def test_two(mail_server):
            assert mail_server.inbox.messages == []  # not the first test's server
            PORTS.append(mail_server.port)
            send(mail_server, "two")
            mail_server.inbox.wait()
            assert [m.subject for m in mail_server.inbox.messages] == ["two"]

        def test_the_servers_were_stopped():
            import socket
            for port in PORTS:
                with socket.socket() as probe:
                    assert probe.connect_ex(("127.0.0.1", port)) != 0
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=3)


def test_a_module_overrides_the_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import smtplib
        import pytest

        @pytest.fixture
        def mail_server_config():
            return "listen on 127.0.0.1 port 0\\nmatch from any for any reject\\n"

        def test_refused(mail_server):
            with smtplib.SMTP(mail_server.host, mail_server.port) as smtp:
                with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                    smtp.sendmail("a@example.org", ["b@example.com"], "Subject: x\\n\\nx")
            assert refused.value.recipients["b@example.com"][0] == 550
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=1)


def test_a_bad_configuration_is_an_error_not_a_traceback_of_mta(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def mail_server_config():
            return "listen on 127.0.0.1 port 0\\nmatch nonsense\\n"

        def test_never_runs(mail_server):
            pass
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ConfigErrors: <MailServer config>:2: *"])


# as a user's shell has it: not this checkout on the path (pip would take it
# for an installed mta, and the suite would import it instead of the wheel's)
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}


def _run(argv: list[str | os.PathLike[str]], cwd: pathlib.Path | None = None) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=cwd, env=ENV
    )
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def build_wheel(into: pathlib.Path) -> pathlib.Path:
    """mta's wheel, built in ``into`` from a copy of the source (the build writes in
    its tree, which may be read-only)."""
    source = into / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "mta", source / "mta", ignore=shutil.ignore_patterns("__pycache__"))
    dist = into / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source])
    [wheel] = dist.glob("mta-*.whl")
    return wheel


def test_the_plugin_from_a_wheel_in_a_fresh_venv(tmp_path: pathlib.Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    # its dependencies (trio, attrs, pytest...) from this environment, not downloaded
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    deps = sysconfig.get_paths()["purelib"]
    (pathlib.Path(purelib.strip()) / "deps.pth").write_text(deps + "\n")
    # --ignore-installed: the mta this suite runs may be a wheel of the same version, which
    # deps.pth shows the venv (pip would find it "already satisfied" and install nothing)
    pip: list[str | os.PathLike[str]] = [sys.executable, "-m", "pip", "--python", python]
    install = [*pip, "install", "-q", "--no-deps"]
    _run([*install, "--ignore-installed", wheel])
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_mail.py").write_text(
        "import smtplib, sys\n"
        "import mta\n\n\n"
        "def test_mail(mail_server):\n"
        "    assert mta.__file__.startswith(sys.prefix)  # the wheel's mta\n"
        "    with smtplib.SMTP(mail_server.host, mail_server.port) as smtp:\n"
        '        smtp.sendmail("a@example.org", ["b@example.com"], "Subject: hi\\n\\nHello")\n'
        '    assert mail_server.inbox.wait(to="b@example.com").subject == "hi"\n'
    )
    out = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=suite)
    assert "1 passed" in out
