"""mta.server.filtering without a session: what a chain of builtin filters alone
costs a session.  No process to tell, so no report is encoded and the host is
never asked for one; a phase no filter applies to proceeds at once."""

from __future__ import annotations

import ipaddress
from typing import Any, cast

from mta.filters.builtin import DecisionKind
from mta.filters.events import LinkDisconnect
from mta.filters.host import FilterHost
from mta.filters.protocol import FilterPhase, InetAddress
from mta.server.filtering import PROCEED, Outcome, SessionFilters
from tests.filters.helpers import FACTS, chain_of, load, open_tables, param_for


class _Host:
    """A host that records every process asked for (and has none)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get(self, proc: str) -> None:
        self.asked.append(proc)


async def test_builtin_filters_report_to_nobody_and_decide_in_the_daemon() -> None:
    config = load(
        'filter nets phase connect match src { 192.0.2.0/24 } reject "550 go away"\n'
        'filter rcpts phase rcpt-to match rcpt-to { "rcpt@example.com" } reject "550 no"\n'
    )
    tables = open_tables(config)
    try:
        chain = chain_of(config, tables, "nets", "rcpts", anonymous=True)
        host = _Host()
        src = InetAddress(ipaddress.ip_address("203.0.113.5"), 40000)
        filters = SessionFilters(1, chain, cast(FilterHost, host), tables, FACTS, src=src)
        await filters.report(LinkDisconnect())
        outcomes: dict[FilterPhase, Any] = {}
        for phase in (FilterPhase.CONNECT, FilterPhase.HELO, FilterPhase.QUIT):
            outcomes[phase] = await filters.command(phase, param_for(phase, FACTS))
        assert all(o is PROCEED for o in outcomes.values())
        done = await filters.phase(FilterPhase.RCPT_TO, "rcpt@example.com")
        assert done.decision.kind is DecisionKind.REJECT and done.filter == "rcpts"
        refused = Outcome.of(done).refused
        assert refused is not None and refused.text.startswith("550 ")
        assert filters.facts.rcpt_to == "rcpt@example.com"
        assert host.asked == []
        assert filters.processes() == [] and filters.data_stages() == []
    finally:
        tables.close()
