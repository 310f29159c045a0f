"""Shared helpers for the filter tests: configurations loaded with the real parser
and builder, their tables opened, and a chain run to its end when it needs
nothing from the outside."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, cast

import attrs

from mta.config.load import load_text
from mta.config.model import Config, FilterRef
from mta.filters.builtin import SessionFacts
from mta.filters.chain import Chain, ChainRun, Done, EmitReport
from mta.filters.protocol import FilterPhase
from mta.rules.tableset import TableSet

HOSTNAME = "mx.example.org"
RULES = 'action "a" relay\nmatch from any for any action "a"\n'

FACTS = SessionFacts(
    src="203.0.113.5",
    rdns="client.example.com",
    fcrdns=True,
    helo="client.example.com",
    auth_user=None,
    mail_from="sender@example.com",
    rcpt_to="rcpt@example.com",
)


def load(text: str) -> Config:
    """A configuration from ``text`` followed by a rule (interfaces not checked)."""
    return load_text(text + RULES, "test.conf", hostname=HOSTNAME, check_interfaces=False).config


def open_tables(config: Config) -> TableSet:
    return TableSet.open(config, HOSTNAME, ["127.0.0.1", "::1"])


def chain_of(
    config: Config,
    tables: TableSet,
    *names: str,
    anonymous: bool = False,
    registrations: Mapping[str, Collection[FilterPhase]] | None = None,
) -> Chain:
    """The chain a listener's ``filter NAME`` (or ``filter { ... }``) would get."""
    ref = FilterRef(tuple(names), chain=anonymous)
    return Chain.build(config, ref, tables, registrations or {})


def param_for(phase: FilterPhase, facts: SessionFacts) -> str:
    """The parameter a session passes at ``phase`` for these facts."""
    if phase is FilterPhase.CONNECT:
        return facts.src
    if phase in (FilterPhase.HELO, FilterPhase.EHLO):
        return facts.helo or ""
    if phase is FilterPhase.AUTH:
        return "PLAIN AGFsaWNlAHNlY3JldA=="
    if phase is FilterPhase.MAIL_FROM:
        return facts.mail_from or ""
    if phase is FilterPhase.RCPT_TO:
        return facts.rcpt_to or ""
    return ""


def run_builtins(chain: Chain, phase: FilterPhase, facts: SessionFacts = FACTS) -> Done:
    """Run a chain of builtin filters on in-memory tables: it finishes at once
    (reports aside, which are skipped)."""
    run = ChainRun(chain, phase, param_for(phase, facts), facts)
    while True:
        step = run.next_step()
        if isinstance(step, Done):
            return step
        assert isinstance(step, EmitReport), step


def with_fact(facts: SessionFacts, field: str, value: object) -> SessionFacts:
    """``facts`` with one field (named at run time) changed."""
    return attrs.evolve(facts, **cast(dict[str, Any], {field: value}))
