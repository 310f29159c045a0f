"""Which filter processes a configuration starts, and the subsystems each is
told it serves (OpenSMTPD's ``fork_filter_processes``): ``smtp-in`` for a
listener's filters, ``smtp-out`` for a relay action's, both for both."""

from __future__ import annotations

from mta.config.load import load_text
from mta.config.model import Config, Relay
from mta.filters.encode import encode_handshake
from mta.filters.host import FilterHost, relay_procs, used_procs
from mta.filters.protocol import FilterPhase, Subsystem
from mta.rules.tableset import TableSet

IN, OUT = Subsystem.SMTP_IN, Subsystem.SMTP_OUT

CONFIG = """
filter "in" proc-exec "/bin/in"
filter "out" proc-exec "/bin/out"
filter "both" proc-exec "/bin/both"
filter "idle" proc-exec "/bin/idle"
filter "b" phase connect match rdns bypass
filter "c" chain { "b", "both", "in" }
listen on 127.0.0.1 port 2525 filter "c"
action "r1" relay filter { "out", "both" }
action "r2" relay host "smtp://127.0.0.1:2526"
action "r3" relay filter "out"
match from any for domain "a.test" action "r1"
match from any for domain "b.test" action "r2"
match from any for any action "r3"
"""


def load(text: str) -> Config:
    return load_text(text, "t.conf", hostname="vm", check_interfaces=False).config


def relay(config: Config, action: str) -> Relay:
    method = config.actions[action].method
    assert isinstance(method, Relay)
    return method


def test_each_used_proc_serves_the_subsystems_that_use_it() -> None:
    used = used_procs(load(CONFIG))
    assert {name: subsystems for name, (_proc, subsystems) in used.items()} == {
        "both": frozenset({IN, OUT}),
        "in": frozenset({IN}),
        "out": frozenset({OUT}),
    }
    assert used["out"][0].command == "/bin/out"


def test_a_relay_action_reports_to_its_filter_s_procs_in_order() -> None:
    config = load(CONFIG)
    assert relay_procs(config, relay(config, "r1")) == ("out", "both")
    assert relay_procs(config, relay(config, "r2")) == ()
    assert relay_procs(config, relay(config, "r3")) == ("out",)


def test_the_handshake_names_the_subsystems() -> None:
    host = FilterHost(load(CONFIG), admd="vm")
    assert set(host.procs) == {"both", "in", "out"}
    subsystem_lines = {
        name: [line for line in encode_handshake(h).decode().splitlines() if "subsystem" in line]
        for name, h in host.handshakes.items()
    }
    assert subsystem_lines == {
        "both": ["config|subsystem|smtp-in", "config|subsystem|smtp-out"],
        "in": ["config|subsystem|smtp-in"],
        "out": ["config|subsystem|smtp-out"],
    }


def test_a_configuration_whose_only_filter_is_a_relay_s_has_a_host_to_run() -> None:
    config = load(
        'filter "out" proc-exec "/bin/out"\n'
        'action "r" relay filter "out"\n'
        'match from any for any action "r"\n'
    )
    assert FilterHost(config, admd="vm")
    assert not FilterHost(load('action "r" relay\nmatch from any for any action "r"\n'), admd="vm")


def test_a_listener_s_chain_is_built_once_and_again_when_a_process_registers() -> None:
    config = load(CONFIG)
    host = FilterHost(config, admd="vm")
    ref = config.listeners[0].filter
    assert ref is not None
    tables = TableSet({})
    chain = host.chain(config, ref, tables)
    assert host.chain(config, ref, tables) is chain  # every session shares it
    assert not chain.needs(FilterPhase.MAIL_FROM)
    host._phases["in"] = frozenset({FilterPhase.MAIL_FROM})  # "in" registered mail-from
    rebuilt = host.chain(config, ref, tables)
    assert rebuilt is not chain and rebuilt.needs(FilterPhase.MAIL_FROM)
    assert host.chain(config, ref, tables) is rebuilt
