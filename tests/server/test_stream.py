"""ConnectionStream: data both ways, large sends, EOF, errors, close, fairness, cancellation."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from mta.server import stream as stream_mod
from mta.server.stream import ConnectionStream


def pair() -> tuple[ConnectionStream, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    return ConnectionStream(ours), theirs


async def test_receive_and_send() -> None:
    ours, theirs = pair()
    theirs.send(b"EHLO x\r\n")
    assert await ours.receive_some() == b"EHLO x\r\n"
    await ours.send_all(b"250 ok\r\n")
    assert theirs.recv(100) == b"250 ok\r\n"
    await ours.aclose()
    theirs.close()


async def test_receive_waits_for_data_and_honours_max_bytes() -> None:
    ours, theirs = pair()

    async def later() -> None:
        await trio.sleep(0.05)
        theirs.send(b"abcdef")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        assert await ours.receive_some(4) == b"abcd"
    assert await ours.receive_some(4) == b"ef"
    with pytest.raises(ValueError):
        await ours.receive_some(0)
    theirs.close()
    assert await ours.receive_some() == b""  # end of file
    await ours.aclose()


async def test_large_send_waits_for_the_reader() -> None:
    ours, theirs = pair()
    payload = bytes(range(256)) * 40000  # ~10 MB: far more than the socket buffers
    received = bytearray()

    async def reader() -> None:
        while len(received) < len(payload):
            await trio.lowlevel.wait_readable(theirs)
            received.extend(theirs.recv(1 << 20))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await ours.send_all(payload)
    assert received == payload
    await ours.aclose()
    theirs.close()


async def test_broken_and_closed() -> None:
    ours, theirs = pair()
    theirs.close()
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(100):  # the first sends may still fit in a buffer
            await ours.send_all(b"x" * 65536)
    await ours.aclose()
    await ours.aclose()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        await ours.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await ours.receive_some()


async def test_close_wakes_a_waiting_receiver() -> None:
    ours, theirs = pair()

    async def receive() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await ours.receive_some()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        await ours.aclose()
    theirs.close()


async def test_ready_data_still_yields_and_sees_cancellation() -> None:
    ours, theirs = pair()
    theirs.send(b"x" * 100_000)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        for _ in range(stream_mod.YIELD_EVERY * 4):
            await ours.receive_some(10)  # data is always there: never waits
        assert ticks >= 3  # yet the other task ran
        with trio.CancelScope() as scope:
            scope.cancel()
            await ours.receive_some(10)
        assert scope.cancelled_caught
        nursery.cancel_scope.cancel()
    await ours.aclose()
    theirs.close()


async def test_take_a_trio_socket_stream() -> None:
    a, b = socket.socketpair()
    trio_stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    ours = ConnectionStream.take(trio_stream)
    b.sendall(b"hello")
    assert await ours.receive_some() == b"hello"
    assert trio_stream.socket.fileno() == -1  # the socket now belongs to ours alone
    await ours.aclose()
    b.close()


class CountingSocket(socket.socket):
    """A socket that counts its recv calls (the failed ones too)."""

    recvs = 0

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.recvs += 1
        return super().recv(size, flags)


async def test_a_read_tries_recv_before_waiting_even_after_a_reply() -> None:
    a, theirs = socket.socketpair()
    counting = CountingSocket(fileno=a.detach())
    ours = ConnectionStream(counting)
    theirs.send(b"EHLO x\r\n")  # the client's answer is there by the time we read
    await ours.send_all(b"220 ready\r\n")
    with trio.fail_after(1):
        assert await ours.receive_some() == b"EHLO x\r\n"
    assert counting.recvs == 1  # read at once: no wait, no epoll registration

    async def answer() -> None:
        await trio.sleep(0.05)
        theirs.send(b"MAIL FROM:<>\r\n")

    await ours.send_all(b"250 ok\r\n")
    async with trio.open_nursery() as nursery:  # not there yet: one failed recv, then a wait
        nursery.start_soon(answer)
        assert await ours.receive_some() == b"MAIL FROM:<>\r\n"
    assert counting.recvs == 3
    await ours.aclose()
    theirs.close()
