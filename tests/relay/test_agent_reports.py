"""The relay agent and a relay action's filters: a session of an action with
a proc filter reports (its client emits report events, and it gets a
reports factory for the action's procs, through the filter host in force);
one without does not; a reload hands the agent the new host; sessions of
different filters are never shared."""

from __future__ import annotations

from typing import cast

import trio

from mta.config.model import Config
from mta.delivery.result import Outcome
from mta.filters.host import FilterHost
from mta.filters.outbound import ReportsFactory
from mta.filters.process import FilterProcess
from mta.filters.protocol import ProtocolVersion, ReportEvent, Subsystem
from mta.relay.client import Client
from mta.relay.plan import session_key
from mta.relay.session import ContentSource, Reuse, SessionOutcome
from mta.relay.timeouts import ClientTimeouts
from mta.relay.tlsclient import ClientTls
from tests.relay.test_agent import accepted, agent, envelope
from tests.rules.helpers import load, open_tables

FILTERED = (
    'filter "f" proc-exec "/bin/true"\n'
    'filter "g" proc-exec "/bin/true"\n'
    'action out relay host "smtp://127.0.0.1:2525" filter { "f", "g" }\n'
)
PLAIN = 'action out relay host "smtp://127.0.0.1:2525"\n'


class Sink:
    version = ProtocolVersion.V0_7

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[bytes] = []

    def wants_report(self, subsystem: Subsystem, event: ReportEvent) -> bool:
        return True

    def post(self, line: bytes) -> bool:
        self.lines.append(line)
        return True


class Host(FilterHost):
    def __init__(self, running: dict[str, Sink]) -> None:
        super().__init__(Config(), admd="vm")
        self.running = running

    def get(self, proc: str) -> FilterProcess | None:
        return cast(FilterProcess | None, self.running.get(proc))


class Recorder:
    """A session runner recording the client and the reports factory it got."""

    def __init__(self) -> None:
        self.calls: list[tuple[Client, ReportsFactory | None]] = []

    async def __call__(
        self,
        address: str,
        port: int,
        *,
        client: Client,
        server_name: str,
        content: ContentSource,
        timeouts: ClientTimeouts,
        tls: ClientTls | None = None,
        source: str | None = None,
        stream: trio.abc.Stream | None = None,
        reuse: Reuse | None = None,
        reports: ReportsFactory | None = None,
    ) -> SessionOutcome:
        self.calls.append((client, reports))
        return accepted(address, client)


async def test_a_filtered_action_s_sessions_report_to_its_running_procs() -> None:
    sessions = Recorder()
    relay = agent(FILTERED, sessions)
    f = Sink("f")
    relay.filters = Host({"f": f})  # g is down
    assert (await relay(envelope())).outcome is Outcome.OK
    [(client, reports)] = sessions.calls
    assert client.reports
    assert reports is not None
    made = reports(0x1234)
    assert made.session == 0x1234 and made.sinks == (f,)


async def test_an_unfiltered_action_s_sessions_do_not() -> None:
    sessions = Recorder()
    relay = agent(PLAIN, sessions)
    relay.filters = Host({"f": Sink("f")})
    assert (await relay(envelope())).outcome is Outcome.OK
    [(client, reports)] = sessions.calls
    assert not client.reports and reports is None


async def test_a_reload_gives_the_agent_the_new_filter_host() -> None:
    sessions = Recorder()
    relay = agent(FILTERED, sessions)
    relay.filters = Host({"f": Sink("old")})
    await relay(envelope())
    config = load(FILTERED + "match for any action out\n")
    new = Sink("new")
    relay.reconfigure(config, open_tables(config), Host({"f": new}))
    await relay(envelope(evpid=0x700000002))
    factory = sessions.calls[-1][1]
    assert factory is not None
    assert factory(1).sinks == (new,)


async def test_sessions_of_other_filters_are_not_shared() -> None:
    relay = agent(FILTERED, Recorder())
    filtered = await relay.plan(envelope())
    assert filtered.reports == ("f", "g")
    unfiltered = agent(PLAIN, Recorder())
    plain = await unfiltered.plan(envelope())
    assert plain.reports == ()
    assert session_key(filtered) != session_key(plain)
