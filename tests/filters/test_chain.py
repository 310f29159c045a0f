"""Tests for mta.filters.chain: resolving a listener's filter into a flat chain,
the phases it needs, and running it for one phase: order, skipped filters,
process requests, bypass, junk, rewrite and report, every decision at every
phase, lookups in blocking tables, and filters that misbehave."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from mta.config.model import FilterBuiltin, FilterProc, FilterRef
from mta.errors import ConfigError, ConfigErrors, TableError
from mta.filters.builtin import Decision, DecisionKind, SessionFacts
from mta.filters.chain import (
    AskProcess,
    BuiltinEntry,
    Chain,
    ChainRun,
    Done,
    EmitReport,
    FilterMisbehaved,
    NeedLookup,
    ProcEntry,
    drive,
    resolve,
)
from mta.filters.protocol import FilterPhase
from mta.rules.tableset import TableSet
from mta.tables.proctable import ProcTable
from tests.filters.helpers import FACTS, chain_of, load, open_tables, param_for, run_builtins
from tests.rules.helpers import write_proc_helper

ALL_PROC_PHASES = [p for p in FilterPhase if p is not FilterPhase.DATA_LINE]
BUILTIN_PHASE_NAMES = ["connect", "helo", "ehlo", "auth", "mail-from", "rcpt-to", "data", "commit"]

HELO_PARAM = param_for(FilterPhase.HELO, FACTS)
RCPT_PARAM = param_for(FilterPhase.RCPT_TO, FACTS)

# a condition that holds for FACTS (the client has a name) and one that does not
YES = "rdns"
NO = "!rdns"


def _run(chain: Chain, phase: FilterPhase, facts: SessionFacts = FACTS) -> ChainRun:
    return ChainRun(chain, phase, param_for(phase, facts), facts)


def _steps(run: ChainRun, answers: dict[str, Decision] | None = None) -> list[object]:
    """Every step to the end, answering processes from ``answers`` (proceed when absent)."""
    steps: list[object] = []
    while True:
        step = run.next_step()
        steps.append(step)
        if isinstance(step, Done):
            return steps
        if isinstance(step, AskProcess):
            run.receive((answers or {}).get(step.filter, Decision.proceed()))
        elif isinstance(step, NeedLookup):
            run.answer(step.lookup.perform())


def _chain(
    text: str, *names: str, anonymous: bool = False, **registrations: list[FilterPhase]
) -> Chain:
    config = load(text)
    return chain_of(
        config, open_tables(config), *names, anonymous=anonymous, registrations=registrations
    )


# -- resolution -----------------------------------------------------------------------

CONFIG = (
    'filter b1 phase connect match rdns reject "550 b1"\n'
    "filter b2 phase helo match !fcrdns junk\n"
    'filter p1 proc-exec "/usr/bin/true"\n'
    'proc shared "/usr/bin/true"\n'
    "filter p2 proc shared\n"
    "filter c chain { b2, p1, b1, p2 }\n"
)


def test_resolve_a_single_filter_a_named_chain_and_an_anonymous_one() -> None:
    config = load(CONFIG)
    b1 = config.filters["b1"]
    p1 = config.filters["p1"]
    assert resolve(config, FilterRef(("b1",), chain=False)) == (("b1", b1),)
    assert resolve(config, FilterRef(("p1",), chain=False)) == (("p1", p1),)
    named = resolve(config, FilterRef(("c",), chain=False))
    assert [name for name, _ in named] == ["b2", "p1", "b1", "p2"]
    anonymous = resolve(config, FilterRef(("p2", "b1"), chain=True))
    assert anonymous == (("p2", config.filters["p2"]), ("b1", b1))
    assert isinstance(named[0][1], FilterBuiltin) and isinstance(named[1][1], FilterProc)


def test_resolve_refuses_what_the_parser_refuses() -> None:
    config = load(CONFIG)
    with pytest.raises(ConfigError, match="no filter exist with that name: nope"):
        resolve(config, FilterRef(("nope",), chain=False))
    with pytest.raises(ConfigError, match="no filter chain allowed within a filter chain: c"):
        resolve(config, FilterRef(("b1", "c"), chain=True))
    # and the parser indeed refuses them (parse.y filterel)
    for bad in ("filter d chain { b1, c }\n", "listen on lo filter { b1, c }\n"):
        with pytest.raises(ConfigErrors, match="no filter chain allowed within a filter chain"):
            load(CONFIG + bad)
    with pytest.raises(ConfigErrors, match="no proc allowed twice within a filter chain"):
        load(CONFIG + "filter p3 proc shared\nfilter d chain { p2, p3 }\n")


def test_build_opens_tables_and_records_registrations() -> None:
    config = load(
        "table nets { 192.0.2.0/24 }\n" + CONFIG + "filter s phase data match src <nets> junk\n"
    )
    tables = open_tables(config)
    chain = Chain.build(
        config,
        FilterRef(("b2", "p1", "s"), chain=True),
        tables,
        {"p1": [FilterPhase.MAIL_FROM, FilterPhase.DATA_LINE], "other": [FilterPhase.CONNECT]},
    )
    b2, p1, s = chain.entries
    assert isinstance(b2, BuiltinEntry) and b2.phase is FilterPhase.HELO and b2.table is None
    assert p1 == ProcEntry("p1", "p1", frozenset({FilterPhase.MAIL_FROM, FilterPhase.DATA_LINE}))
    assert isinstance(s, BuiltinEntry) and s.table is not None
    assert s.table is tables.get(s.filter.table)  # type: ignore[arg-type]
    assert chain.phases == {
        FilterPhase.HELO,
        FilterPhase.MAIL_FROM,
        FilterPhase.DATA_LINE,
        FilterPhase.DATA,
    }
    assert chain.at(FilterPhase.DATA_LINE) == (p1,)
    assert chain.at(FilterPhase.CONNECT) == ()
    assert chain.procs == ("p1",)


def test_a_proc_that_registered_nothing_is_asked_nothing_but_is_in_the_chain() -> None:
    chain = _chain(CONFIG, "c", p1=[FilterPhase.CONNECT])
    assert chain.procs == ("p1", "shared")
    assert chain.phases == {FilterPhase.CONNECT, FilterPhase.HELO}
    assert [e.name for e in chain.at(FilterPhase.CONNECT)] == ["p1", "b1"]
    assert not chain.needs(FilterPhase.RCPT_TO)
    assert chain.needs(FilterPhase.HELO)


def test_each_phase_has_its_filters_in_chain_order_worked_out_once() -> None:
    text = CONFIG + 'filter p3 proc-exec "/usr/bin/true"\nfilter b3 phase connect match rdns junk\n'
    connect, helo = FilterPhase.CONNECT, FilterPhase.HELO
    chain = _chain(
        text, "p1", "b1", "p3", "b2", "b3", "p2", p1=[connect, helo], p3=[helo], shared=[connect]
    )
    assert [e.name for e in chain.at(connect)] == ["p1", "b1", "b3", "p2"]
    assert [e.name for e in chain.at(helo)] == ["p1", "p3", "b2"]
    assert chain.at(FilterPhase.MAIL_FROM) == ()
    assert chain.phases == {connect, helo}
    assert chain.procs == ("p1", "p3", "shared")
    assert chain.at(connect) is chain.at(connect)  # not rebuilt at each call
    b1 = chain.entries[1]
    assert isinstance(b1, BuiltinEntry) and b1.phase is connect
    # equality is the entries'
    assert chain == Chain(chain.entries) and chain != Chain(chain.entries[:2])


def test_missing_table_at_build() -> None:
    config = load("table nets { 192.0.2.0/24 }\nfilter s phase data match src <nets> junk\n")
    with pytest.raises(TableError, match="no such table: nets"):
        Chain.build(config, FilterRef(("s",), chain=False), TableSet({}), {})


# -- running: order, skipping, ending ---------------------------------------------------------


def test_nothing_applies_proceeds() -> None:
    chain = _chain(CONFIG, "c")
    done = _run(chain, FilterPhase.RCPT_TO).next_step()
    assert done == Done(Decision.proceed(), None, ())
    # b1 applies to connect but does not match a client without a name
    assert _run(chain, FilterPhase.CONNECT, attrs.evolve(FACTS, rdns=None)).next_step() == Done(
        Decision.proceed()
    )


def test_filters_run_in_declaration_order_first_decision_wins() -> None:
    text = (
        f'filter a phase mail-from match {NO} reject "550 a"\n'
        f'filter b phase mail-from match {YES} reject "550 b"\n'
        f'filter c phase mail-from match {YES} reject "551 c"\n'
        f'filter d phase rcpt-to match {YES} reject "552 d"\n'
    )
    done = run_builtins(_chain(text, "a", "d", "b", "c", anonymous=True), FilterPhase.MAIL_FROM)
    assert done == Done(Decision.reject("550 b"), "b")
    done = run_builtins(_chain(text, "a", "d", "c", "b", anonymous=True), FilterPhase.MAIL_FROM)
    assert done == Done(Decision.reject("551 c"), "c")
    # a builtin of another phase is skipped: d decides only at rcpt-to
    done = run_builtins(_chain(text, "d", "c", anonymous=True), FilterPhase.RCPT_TO)
    assert done.filter == "d"


def test_a_process_is_asked_only_for_the_phases_it_registered() -> None:
    chain = _chain(
        CONFIG, "c", p1=[FilterPhase.HELO], shared=[FilterPhase.HELO, FilterPhase.COMMIT]
    )
    steps = _steps(_run(chain, FilterPhase.HELO, attrs.evolve(FACTS, fcrdns=True)))
    assert steps == [
        AskProcess("p1", "p1", FilterPhase.HELO, HELO_PARAM),
        AskProcess("p2", "shared", FilterPhase.HELO, HELO_PARAM),
        Done(Decision.proceed()),
    ]
    steps = _steps(_run(chain, FilterPhase.COMMIT))
    assert steps == [AskProcess("p2", "shared", FilterPhase.COMMIT, ""), Done(Decision.proceed())]
    assert _steps(_run(chain, FilterPhase.DATA)) == [Done(Decision.proceed())]


def test_builtins_and_processes_mix_in_order() -> None:
    # b2 (helo, !fcrdns) junks before p1 is asked; otherwise p1 then p2 are asked
    chain = _chain(CONFIG, "c", p1=[FilterPhase.HELO], shared=[FilterPhase.HELO])
    junked = _steps(_run(chain, FilterPhase.HELO, attrs.evolve(FACTS, fcrdns=False)))
    assert junked == [Done(Decision.junk(), "b2")]
    answered = _steps(
        _run(chain, FilterPhase.HELO),
        {"p1": Decision.proceed(), "p2": Decision.reject("450 later")},
    )
    assert answered[-1] == Done(Decision.reject("450 later"), "p2")


def test_the_parameter_is_the_same_for_every_filter() -> None:
    chain = _chain(CONFIG, "c", p1=[FilterPhase.MAIL_FROM], shared=[FilterPhase.MAIL_FROM])
    run = ChainRun(chain, FilterPhase.MAIL_FROM, "alice@example.com", FACTS)
    steps = _steps(run, {"p1": Decision.report("seen")})
    assert [s.param for s in steps if isinstance(s, AskProcess)] == ["alice@example.com"] * 2
    assert run.facts.mail_from == "alice@example.com"


def test_bypass_skips_the_rest_of_the_chain_for_the_phase_only() -> None:
    text = (
        f"filter by phase data match {YES} bypass\n"
        f'filter no phase data match {YES} reject "550 no"\n'
        f'filter nc phase commit match {YES} reject "550 no commit"\n'
        'filter p proc-exec "/usr/bin/true"\n'
    )
    chain = _chain(
        text, "by", "p", "no", "nc", anonymous=True, p=[FilterPhase.DATA, FilterPhase.COMMIT]
    )
    assert _steps(_run(chain, FilterPhase.DATA)) == [Done(Decision.proceed(), "by")]
    # nothing is remembered: the next phase runs its filters
    assert _steps(_run(chain, FilterPhase.COMMIT)) == [
        AskProcess("p", "p", FilterPhase.COMMIT, ""),
        Done(Decision.reject("550 no commit"), "nc"),
    ]


def test_bypass_that_does_not_match_goes_on() -> None:
    text = f"filter by phase data match {NO} bypass\nfilter j phase data match {YES} junk\n"
    assert run_builtins(_chain(text, "by", "j", anonymous=True), FilterPhase.DATA).filter == "j"


def test_report_emits_and_goes_on() -> None:
    text = (
        f'filter r1 phase rcpt-to match {YES} report "first"\n'
        f'filter r2 phase rcpt-to match {NO} report "not matched"\n'
        'filter p proc-exec "/usr/bin/true"\n'
        f'filter r3 phase rcpt-to match {YES} report "third"\n'
        f'filter end phase rcpt-to match {YES} reject "550 done"\n'
    )
    chain = _chain(text, "r1", "r2", "p", "r3", "end", anonymous=True, p=[FilterPhase.RCPT_TO])
    steps = _steps(_run(chain, FilterPhase.RCPT_TO), {"p": Decision.report("from the process")})
    assert steps == [
        EmitReport("r1", True, "first"),
        AskProcess("p", "p", FilterPhase.RCPT_TO, RCPT_PARAM),
        EmitReport("p", False, "from the process"),
        EmitReport("r3", True, "third"),
        Done(Decision.reject("550 done"), "end"),
    ]


def test_junk_ends_the_chain() -> None:
    text = (
        f"filter j phase ehlo match {YES} junk\n"
        f'filter r phase ehlo match {YES} reject "550 never"\n'
        'filter p proc-exec "/usr/bin/true"\n'
    )
    chain = _chain(text, "p", "j", "r", anonymous=True, p=[FilterPhase.EHLO])
    assert _steps(_run(chain, FilterPhase.EHLO)) == [
        AskProcess("p", "p", FilterPhase.EHLO, HELO_PARAM),
        Done(Decision.junk(), "j"),
    ]
    # a process's junk ends it as well
    assert _steps(_run(chain, FilterPhase.EHLO), {"p": Decision.junk()})[-1] == Done(
        Decision.junk(), "p"
    )


def test_rewrite_ends_the_chain_later_filters_never_see_it() -> None:
    text = (
        f'filter w phase rcpt-to match {YES} rewrite "<postmaster@example.org>"\n'
        'filter p proc-exec "/usr/bin/true"\n'
        f'filter r phase rcpt-to match rcpt-to "postmaster@example.org" reject "550 never"\n'
    )
    chain = _chain(text, "w", "p", "r", anonymous=True, p=[FilterPhase.RCPT_TO])
    assert _steps(_run(chain, FilterPhase.RCPT_TO)) == [
        Done(Decision.rewrite("<postmaster@example.org>"), "w")
    ]
    chain = _chain(text, "p", "r", "w", anonymous=True, p=[FilterPhase.RCPT_TO])
    steps = _steps(_run(chain, FilterPhase.RCPT_TO), {"p": Decision.rewrite("<other@example.org>")})
    assert steps[-1] == Done(Decision.rewrite("<other@example.org>"), "p")


def test_reject_and_disconnect_replies_are_validated() -> None:
    text = 'filter p proc-exec "/usr/bin/true"\n'
    chain = _chain(text, "p", p=list(ALL_PROC_PHASES))
    for answer, kind, wire in (
        (Decision.reject("550 5.7.1 no"), DecisionKind.REJECT, b"550 5.7.1 no\r\n"),
        (Decision.reject("421 bye"), DecisionKind.DISCONNECT, b"421 4.0.0 bye\r\n"),
        (
            Decision.reject("no code"),
            DecisionKind.DISCONNECT,
            b"421 4.0.0 Internal server error\r\n",
        ),
        (Decision.disconnect("554 go"), DecisionKind.DISCONNECT, b"554 5.0.0 go\r\n"),
    ):
        done = _steps(_run(chain, FilterPhase.MAIL_FROM), {"p": answer})[-1]
        assert isinstance(done, Done) and done.decision.kind is kind
        assert done.decision.reply is not None and done.decision.reply.encode() == wire


# -- every decision at every phase ----------------------------------------------------------

BUILTIN_DECISIONS = {
    "reject": ('reject "550 5.7.1 refused"', Decision.reject("550 5.7.1 refused")),
    "disconnect": ('disconnect "421 4.7.0 bye"', Decision.disconnect("421 4.7.0 bye")),
    "rewrite": ('rewrite "new.example"', Decision.rewrite("new.example")),
    "junk": ("junk", Decision.junk()),
    "bypass": ("bypass", Decision.proceed()),
}


# commit takes no junk or bypass: test_builtin.test_commit_takes_no_junk_or_bypass
@pytest.mark.parametrize(
    ("phase", "decision"),
    [
        (phase, decision)
        for phase in BUILTIN_PHASE_NAMES
        for decision in [*BUILTIN_DECISIONS, "report"]
        if not (phase == "commit" and decision in ("junk", "bypass"))
    ],
)
def test_builtin_decision_at_phase(phase: str, decision: str) -> None:
    text = "" if decision == "report" else BUILTIN_DECISIONS[decision][0]
    conf = f"filter f phase {phase} match {YES} {text or 'report ' + json.dumps('seen')}\n"
    conf += f'filter last phase {phase} match {YES} reject "550 last"\n'
    chain = _chain(conf, "f", "last", anonymous=True)
    steps = _steps(_run(chain, FilterPhase(phase)))
    if decision == "report":
        assert steps == [EmitReport("f", True, "seen"), Done(Decision.reject("550 last"), "last")]
    else:
        assert steps == [Done(BUILTIN_DECISIONS[decision][1], "f")]


PROC_ANSWERS = [
    Decision.proceed(),
    Decision.junk(),
    Decision.reject("550 no"),
    Decision.disconnect("421 bye"),
    Decision.rewrite("<x@example.org>"),
    Decision.report("note"),
]


@pytest.mark.parametrize("phase", ALL_PROC_PHASES)
@pytest.mark.parametrize("answer", PROC_ANSWERS, ids=lambda d: d.kind.value)
def test_process_decision_at_phase(phase: FilterPhase, answer: Decision) -> None:
    text = 'filter p proc-exec "/usr/bin/true"\nfilter q proc-exec "/usr/bin/false"\n'
    chain = _chain(text, "p", "q", anonymous=True, p=[phase], q=[phase])
    run = _run(chain, phase)
    assert run.next_step() == AskProcess("p", "p", phase, param_for(phase, FACTS))
    if phase is FilterPhase.COMMIT and answer.kind is DecisionKind.JUNK:
        with pytest.raises(FilterMisbehaved, match="filter p: junk at commit"):
            run.receive(answer)
        return
    run.receive(answer)
    rest = _steps(run, {"q": Decision.proceed()})
    if answer.kind is DecisionKind.PROCEED:
        assert rest == [AskProcess("q", "q", phase, param_for(phase, FACTS)), Done(answer)]
    elif answer.kind is DecisionKind.REPORT:
        assert rest[0] == EmitReport("p", False, "note")
        assert rest[1:] == [
            AskProcess("q", "q", phase, param_for(phase, FACTS)),
            Done(Decision.proceed()),
        ]
    else:
        assert rest == [Done(answer, "p")]


def test_a_process_cannot_bypass() -> None:
    chain = _chain('filter p proc-exec "/usr/bin/true"\n', "p", p=[FilterPhase.DATA])
    run = _run(chain, FilterPhase.DATA)
    run.next_step()
    with pytest.raises(FilterMisbehaved, match="bypass is not a filter result"):
        run.receive(Decision.bypass())


# -- the stepper's protocol ------------------------------------------------------------


def test_the_pending_step_repeats_and_answers_must_match_it() -> None:
    chain = _chain('filter p proc-exec "/usr/bin/true"\n', "p", p=[FilterPhase.DATA])
    run = _run(chain, FilterPhase.DATA)
    with pytest.raises(RuntimeError, match="no filter process is awaited"):
        run.receive(Decision.proceed())
    first = run.next_step()
    assert run.next_step() == first
    with pytest.raises(RuntimeError, match="no lookup is awaited"):
        run.answer(True)
    run.receive(Decision.proceed())
    assert run.next_step() == run.next_step() == Done(Decision.proceed())


def test_data_line_is_not_a_decision() -> None:
    chain = _chain('filter p proc-exec "/usr/bin/true"\n', "p", p=[FilterPhase.DATA_LINE])
    with pytest.raises(ValueError, match="data-line"):
        ChainRun(chain, FilterPhase.DATA_LINE, "line", FACTS)


# -- blocking tables ---------------------------------------------------------------------


@pytest.fixture
def helper(tmp_path: Path) -> Path:
    return write_proc_helper(tmp_path)


def _proc_tables(helper: Path, domains: list[str]) -> TableSet:
    # the configuration names a table "names"; at run time it is a helper process
    return TableSet({"names": ProcTable("names", str(helper), json.dumps([{}, domains]))})


PROC_CONFIG = (
    'table names { "placeholder" }\n'
    'filter r phase connect match rdns <names> report "known"\n'
    'filter n phase connect match !rdns <names> reject "550 unknown"\n'
    'filter p proc-exec "/usr/bin/true"\n'
)


async def test_drive_runs_blocking_lookups_in_a_thread(helper: Path) -> None:
    config = load(PROC_CONFIG)
    tables = _proc_tables(helper, ["client.example.com"])
    chain = Chain.build(
        config, FilterRef(("r", "p", "n"), chain=True), tables, {"p": [FilterPhase.CONNECT]}
    )
    asked: list[AskProcess] = []
    reports: list[EmitReport] = []

    async def ask(step: AskProcess) -> Decision:
        asked.append(step)
        return Decision.proceed()

    async def report(step: EmitReport) -> None:
        reports.append(step)

    try:
        run = _run(chain, FilterPhase.CONNECT)
        first = run.next_step()
        assert isinstance(first, NeedLookup) and first.filter == "r"
        done = await drive(run, tables, ask, report)
        assert done == Done(Decision.proceed())
        assert reports == [EmitReport("r", True, "known")]
        assert asked == [AskProcess("p", "p", FilterPhase.CONNECT, FACTS.src)]
        other = attrs.evolve(FACTS, rdns="client.example.net")
        done = await drive(_run(chain, FilterPhase.CONNECT, other), tables, ask, report)
        assert done == Done(Decision.reject("550 unknown"), "n")
    finally:
        tables.close()


async def test_a_failed_blocking_lookup_is_no_match(tmp_path: Path) -> None:
    config = load(PROC_CONFIG)
    tables = TableSet({"names": ProcTable("names", str(tmp_path / "missing-helper"))})
    chain = Chain.build(config, FilterRef(("r", "n"), chain=True), tables, {})

    async def ask(step: AskProcess) -> Decision:
        raise AssertionError(step)

    async def report(step: EmitReport) -> None:
        raise AssertionError(step)

    done = await drive(_run(chain, FilterPhase.CONNECT), tables, ask, report)
    assert done.decision == Decision.reject("550 unknown") and done.filter == "n"
    assert [e.split(":")[0] for e in done.lookup_errors] == ["filter r", "filter n"]
    assert all("domain lookup failed" in e for e in done.lookup_errors)
