"""Round trips through :func:`mta.config.render.render`.

For every configuration mta accepts (the ``ok`` files of the corpus and the examples in
``conf/examples/``), rendering the model and loading the text again gives an equal model,
and rendering that gives identical text.  Legacy examples go through the modern
rendering: that is how ``mta -n -v`` migrates them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import model
from mta.config.interfaces import resolve_listen
from mta.config.load import LoadResult, load_config, load_text
from mta.config.render import quote, render
from tests.config.corpus_util import (
    EXAMPLES,
    copy_corpus,
    materialise_example,
    ok_corpus_configs,
)

HOST = "mx.example.org"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.conf"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_corpus(tmp_path_factory.mktemp("render-corpus"))


def assert_round_trip(result: LoadResult, *, check_interfaces: bool = True) -> str:
    cfg = result.config
    text = render(cfg)
    again = load_text(text, "rendered.conf", hostname=HOST, check_interfaces=check_interfaces)
    assert again.grammar == "modern"
    assert again.config == cfg, text
    assert render(again.config) == text
    return text


@pytest.mark.parametrize("name", [p.name for p in ok_corpus_configs()])
def test_corpus_round_trip(name: str, corpus: Path) -> None:
    result = load_config(str(corpus / name), hostname=HOST)
    assert_round_trip(result)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_round_trip(path: Path) -> None:
    text = materialise_example(path.read_text(encoding="utf-8"))
    result = load_text(text, str(path), hostname=HOST, check_interfaces=False)
    rendered = assert_round_trip(result, check_interfaces=False)
    assert "accept" not in rendered.split()
    if path.name.startswith("00") and not path.name.startswith("004"):
        assert result.grammar == "legacy"


def test_lo0_resolves_to_loopback() -> None:
    bound = resolve_listen("lo0", None)
    assert bound
    assert all(b.local for b in bound)


@pytest.mark.parametrize(
    "value",
    ["plain", "with space", 'dq"inside', "sq'inside", "both'\"kinds", "back\\slash", "$x"],
)
def test_quote_reads_back(value: str) -> None:
    text = f"table t {{ {quote(value)} }}\nmatch for any reject\n"
    cfg = load_text(text, "q.conf", hostname=HOST, check_interfaces=False).config
    assert cfg.tables["t"].entries == ((value, None),)


def test_render_defaults_is_minimal() -> None:
    cfg = load_text("match for any reject\n", "m.conf", hostname=HOST).config
    assert render(cfg) == "match from local for any reject\n"
    assert cfg == model.Config(rules=cfg.rules)


@pytest.mark.parametrize(
    "text",
    [
        'table "match" { a }\nmatch for domain <"match"> reject\n',
        'table "a>b" { x }\nmatch for domain <"a>b"> reject\n',
        'table "t" { "k y" = "v\\"w", "a\'b" => "c" }\naction a mbox alias <t>\nmatch action a\n',
        "bounce-warn\naccept for any deliver to mbox\n",
        "bounce warn-interval none\nmatch for any reject\n",
        "bounce warn-interval 90m, 2h, 1d\nmatch for any reject\n",
        'action "x y" mbox\nmatch for any action "x y"\n',
        'mta limit for domain "match" inet6\nmatch for any reject\n',
        "mta limit max-conn-per-host 3\nmta limit for domain example.com inet4\nmatch reject\n",
        "match for domain a\\\\ reject\n",
        "queue encryption -\nqueue ttl 90s\nsmtp max-message-size 1.5K\nmatch reject\n",
        'srs key "k"\nsrs ttl 9d\naction r relay srs\nmatch for any action r\n',
        'proc p "/bin/p" user u group g chroot "/c"\nfilter a proc p\n'
        'filter b proc-exec "/bin/b" user u\nfilter c chain { a, b }\n'
        "filter d phase rcpt-to match !rcpt-to regex { x } rewrite 'a\"b'\n"
        "listen on socket filter c\nlisten on lo filter { a, d }\nmatch reject\n",
        "accept for any relay via smtps+auth://label@h.example.com auth { label = u:p } "
        "verify as '@example.org'\n",
        "accept from any for domain example.com alias { a = b } deliver to maildir junk\n"
        "accept for any relay backup mx.example.com tls\n",
    ],
)
def test_tricky_round_trips(text: str) -> None:
    result = load_text(text, "t.conf", hostname=HOST, check_interfaces=False)
    assert_round_trip(result, check_interfaces=False)


def test_bounce_warn_none_means_no_warnings() -> None:
    text = "bounce warn-interval none\nmatch reject\n"
    cfg = load_text(text, "t.conf", hostname=HOST, check_interfaces=False).config
    assert cfg.bounce_warn == ()
