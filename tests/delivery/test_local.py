"""Local delivery and a message that fails its checks: CorruptMessage is no
delivery result but goes to the queue runner (which quarantines the message),
whether opening the message finds it or the stream fails half-way; nothing is
delivered then.  Another spool error stays a temporary failure."""

from __future__ import annotations

import io
import os
import pathlib
import threading
from typing import BinaryIO

import pytest

from mta.delivery.local import LocalDeliverer
from mta.delivery.result import Outcome
from mta.envelope import EnvelopeKind
from mta.errors import CorruptMessage, SpoolError
from tests.envelopes import make_envelope
from tests.rules.helpers import load, open_tables

HEAD = b"Subject: hi\r\nFrom: alice@example.org\r\n\r\n"
REASON = "message file: content checksum mismatch"


class HalfReadable(io.BytesIO):
    """A message stream whose content changes under it: the rest of it fails."""

    def read(self, size: int | None = -1, /) -> bytes:
        raise CorruptMessage(REASON)


class Source:
    """Opens message 7: ``error`` raised at once, else the head and then a
    stream that fails."""

    def __init__(self, error: SpoolError | None = None) -> None:
        self.error = error

    async def open_message_head(self, msgid: int, size: int) -> tuple[BinaryIO, bytes]:
        return self.open_head(msgid, size)

    def open_head(self, msgid: int, size: int) -> tuple[BinaryIO, bytes]:
        assert msgid == 7
        if self.error is not None:
            raise self.error
        return HalfReadable(), HEAD


def deliverer(tmp_path: pathlib.Path, source: Source) -> LocalDeliverer:
    uid, gid = os.getuid(), os.getgid()
    config = load(
        f"""table users {{ bob = "{uid}:{gid}:{tmp_path}" }}
action "maildir" maildir "{tmp_path}/Maildir" userbase <users>
action "mda" mda "cat > {tmp_path}/got && touch {tmp_path}/done" userbase <users>
match for any action "maildir"
"""
    )
    return LocalDeliverer(
        config, open_tables(config), source, spool_dir=str(tmp_path), privileged=False
    )


@pytest.mark.parametrize("action", ["maildir", "mda"])
async def test_a_message_failing_its_checks_when_opened_is_not_a_delivery_result(
    tmp_path: pathlib.Path, action: str
) -> None:
    local = deliverer(tmp_path, Source(CorruptMessage(REASON)))
    with pytest.raises(CorruptMessage, match="checksum"):
        await local(make_envelope(kind=EnvelopeKind.MDA, dispatcher=action, msgid=7))
    assert not (tmp_path / "Maildir").exists() and not (tmp_path / "got").exists()


@pytest.mark.parametrize("action", ["maildir", "mda"])
async def test_a_stream_failing_half_way_delivers_nothing(
    tmp_path: pathlib.Path, action: str
) -> None:
    local = deliverer(tmp_path, Source())
    with pytest.raises(CorruptMessage, match="checksum"):
        await local(make_envelope(kind=EnvelopeKind.MDA, dispatcher=action, msgid=7))
    if action == "maildir":
        assert list((tmp_path / "Maildir" / "new").iterdir()) == []
        assert list((tmp_path / "Maildir" / "tmp").iterdir()) == []
    else:
        assert not (tmp_path / "done").exists()  # killed before the end of its input


async def test_another_spool_error_is_a_temporary_failure(tmp_path: pathlib.Path) -> None:
    local = deliverer(tmp_path, Source(SpoolError("spool: reading message: I/O error")))
    result = await local(make_envelope(kind=EnvelopeKind.MDA, dispatcher="maildir", msgid=7))
    assert result.outcome is Outcome.TEMPFAIL and "I/O error" in result.text


class ThreadSource(Source):
    """A whole message (:data:`HEAD`), noting how and in which thread it was opened."""

    def __init__(self) -> None:
        super().__init__()
        self.opened_in: list[str] = []

    async def open_message_head(self, msgid: int, size: int) -> tuple[BinaryIO, bytes]:
        self.opened_in.append("event loop trip")
        return io.BytesIO(b""), HEAD

    def open_head(self, msgid: int, size: int) -> tuple[BinaryIO, bytes]:
        self.opened_in.append(
            "main" if threading.current_thread() is threading.main_thread() else "worker"
        )
        return io.BytesIO(b""), HEAD


async def test_a_maildir_delivery_opens_the_message_in_the_thread_that_writes_it(
    tmp_path: pathlib.Path,
) -> None:
    source = ThreadSource()
    local = deliverer(tmp_path, source)
    result = await local(make_envelope(kind=EnvelopeKind.MDA, dispatcher="maildir", msgid=7))
    assert result.outcome is Outcome.OK
    assert source.opened_in == ["worker"]  # one trip to a thread: opened, checked, written
    (delivered,) = (tmp_path / "Maildir" / "new").iterdir()
    assert delivered.read_bytes().endswith(HEAD.replace(b"\r\n", b"\n"))


async def test_a_loop_found_in_the_worker_thread_is_a_permanent_failure(
    tmp_path: pathlib.Path,
) -> None:
    class Looping(ThreadSource):
        def open_head(self, msgid: int, size: int) -> tuple[BinaryIO, bytes]:
            return io.BytesIO(b""), b"Delivered-To: bob@example.org\r\nSubject: x\r\n\r\nhi\r\n"

    local = deliverer(tmp_path, Looping())
    result = await local(make_envelope(kind=EnvelopeKind.MDA, dispatcher="maildir", msgid=7))
    assert result.outcome is Outcome.PERMFAIL and result.text == "Loop detected"
    assert not (tmp_path / "Maildir").exists()
