"""mta's own ``web inbox on ADDRESS [port PORT] [keep COUNT]`` line: parsed in
both grammars into :class:`~mta.config.model.WebInbox`, its errors located at
``file:line``, rendered back by ``mta -n -v``."""

from __future__ import annotations

import pytest

from mta.config import model
from mta.config import web as webline
from mta.config.load import LoadResult, load_text
from mta.config.render import render
from mta.errors import ConfigErrors

MODERN = 'listen on 127.0.0.1\naction "local" maildir\nmatch for local action "local"\n'
LEGACY = "listen on 127.0.0.1\naccept for local deliver to maildir\n"


def load(text: str) -> LoadResult:
    return load_text(text, "t.conf", hostname="mx.example.org", check_interfaces=False)


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load(text)
    return [str(e) for e in info.value.errors]


@pytest.mark.parametrize("rules", [MODERN, LEGACY], ids=["modern", "legacy"])
@pytest.mark.parametrize(
    ("line", "web"),
    [
        ("web inbox on 127.0.0.1", model.WebInbox("127.0.0.1", 8025, 1000)),
        ("web inbox on localhost", model.WebInbox("127.0.0.1")),
        ("web inbox on LOCALHOST port 0", model.WebInbox("127.0.0.1", 0)),
        ("web inbox on ::1 keep 20 port 8080", model.WebInbox("::1", 8080, 20)),
        ('web inbox on "0:0::1" port 9000', model.WebInbox("::1", 9000)),
        ("web inbox on 0.0.0.0 port 65535 keep 1", model.WebInbox("0.0.0.0", 65535, 1)),
    ],
)
def test_the_line_in_both_grammars(rules: str, line: str, web: model.WebInbox) -> None:
    for text in (f"{line}\n{rules}", f"{rules}{line}\n"):  # anywhere at the top level
        result = load(text)
        assert result.config.web == web
        assert result.grammar == ("legacy" if rules is LEGACY else "modern")


def test_without_the_line_there_is_no_web_inbox() -> None:
    assert load(MODERN).config.web is None


@pytest.mark.parametrize("rules", [MODERN, LEGACY], ids=["modern", "legacy"])
def test_errors_are_located(rules: str) -> None:
    lines = [
        "web inbox on eth0",
        "web inbox on mail.example.org port 8025",
        "web inbox on 127.0.0.1 port 65536",
        "web inbox on 127.0.0.1 keep 0",
        "web inbox on 127.0.0.1 port 1 port 2",
        "web inbox on 127.0.0.1 keep 1 keep 2",
        "web inbox on 127.0.0.1 port http",
        "web inbox on 127.0.0.1 tls",
        "web inbox 127.0.0.1",
        "web on 127.0.0.1",
    ]
    assert errors("\n".join(lines) + "\n" + rules) == [
        't.conf:1: web inbox on "eth0": not an IP address or localhost'
        " (the web inbox looks up no interface or host names)",
        't.conf:2: web inbox on "mail.example.org": not an IP address or localhost'
        " (the web inbox looks up no interface or host names)",
        "t.conf:3: web inbox: port 65536 is not from 0 to 65535",
        "t.conf:4: web inbox: keep must be at least 1 message",
        "t.conf:5: web inbox: port already specified",
        "t.conf:6: web inbox: keep already specified",
        't.conf:7: syntax error: expected a number for port, found "http"',
        't.conf:8: syntax error: expected "port", "keep" or the end of the line,'
        ' found the keyword "tls" (quote it to use it as a value)',
        't.conf:9: syntax error: expected "on", found "127.0.0.1"',
        't.conf:10: syntax error: expected "inbox", found the keyword "on"'
        " (quote it to use it as a value)",
    ]


def test_the_line_is_given_once() -> None:
    text = f"{MODERN}web inbox on 127.0.0.1\n\nweb inbox on ::1\n"
    assert errors(text) == ["t.conf:6: web inbox already specified at t.conf:4"]


def test_web_is_still_a_name() -> None:
    text = 'web = "maildir"\naction web $web\nmatch for local action web\n'
    config = load(text).config
    assert config.web is None and "web" in config.actions


def test_without_the_web_extra_the_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webline, "find_spec", lambda name: None)
    assert errors(f"{MODERN}web inbox on 127.0.0.1\n") == [
        "t.conf:4: web inbox: hypercorn and starlette not installed: pip install 'mta[web]'"
    ]
    assert load(MODERN).config.web is None  # no line, no need


@pytest.mark.parametrize(
    ("line", "rendered"),
    [
        ("web inbox on localhost", 'web inbox on "127.0.0.1"'),
        ("web inbox on ::1 keep 5 port 0", 'web inbox on "::1" port 0 keep 5'),
    ],
)
def test_the_line_renders_and_reads_back(line: str, rendered: str) -> None:
    config = load(f"{line}\n{LEGACY}").config
    text = render(config)
    assert rendered in text.splitlines()
    assert load(text).config == config
