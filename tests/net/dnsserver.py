"""A small authoritative DNS server for tests: trio UDP on loopback, answers
built with dnspython's ``dns.message``.  Names can be made to answer
NXDOMAIN, SERVFAIL, or nothing at all."""

from __future__ import annotations

import enum

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trio

from mta.net.resolver import Nameserver


class Behaviour(enum.Enum):
    """What the server does for a name besides answering its records."""

    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    DROP = "drop"  # never answer


def _key(name: str | dns.name.Name) -> str:
    text = name.to_text() if isinstance(name, dns.name.Name) else name
    return text.lower().rstrip(".") + "."


class DnsServer:
    """Records by (name, type); any name without records is NXDOMAIN, a name with
    records of other types only answers NODATA."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.records: dict[tuple[str, dns.rdatatype.RdataType], list[str]] = {}
        self.behaviour: dict[str, Behaviour] = {}
        self.queries: list[tuple[str, str]] = []

    @property
    def nameserver(self) -> Nameserver:
        return Nameserver(self.host, self.port)

    def add(self, name: str | dns.name.Name, rdtype: str, *values: str) -> None:
        key = (_key(name), dns.rdatatype.from_text(rdtype))
        self.records.setdefault(key, []).extend(values)

    def set(self, name: str | dns.name.Name, behaviour: Behaviour) -> None:
        self.behaviour[_key(name)] = behaviour

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        name = _key(question.name)
        self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
        behaviour = self.behaviour.get(name)
        if behaviour is Behaviour.DROP:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if behaviour is Behaviour.SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif behaviour is Behaviour.NXDOMAIN:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, question.rdtype) in self.records:
            values = self.records[(name, question.rdtype)]
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, 60, dns.rdataclass.IN, question.rdtype, values
                )
            )
        elif not any(key == name for key, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    async def serve(
        self, *, task_status: trio.TaskStatus[DnsServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        family = trio.socket.AF_INET6 if ":" in self.host else trio.socket.AF_INET
        with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as sock:
            await sock.bind((self.host, 0))
            self.port = sock.getsockname()[1]
            task_status.started(self)
            while True:
                data, peer = await sock.recvfrom(4096)
                try:
                    query = dns.message.from_wire(data)
                except dns.exception.DNSException:
                    continue
                response = self.answer(query)
                if response is not None:
                    await sock.sendto(response.to_wire(), peer)
