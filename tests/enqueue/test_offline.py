"""The offline file format: round trip, atomic durable writes, and refusal of anything else."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.enqueue.compose import Content
from mta.enqueue.offline import (
    OfflineEnvelope,
    encode_header,
    is_offline_name,
    read_offline,
    write_offline,
)
from mta.errors import SpoolCorrupt

ENVELOPE = OfflineEnvelope(
    sender="alice@x.example",
    recipients=("bob@y.example", '"c d"@z.example'),
    uid=1000,
    created=1700000000,
    eight_bit=True,
    dsn_ret="HDRS",
    dsn_envid="id+2B1",
    dsn_notify="SUCCESS,FAILURE",
)
MESSAGE = b"Subject: s\r\n\r\nbody\r\n.\r\nsender 3:x@y\r\n"


def written(tmp_path: Path, envelope: OfflineEnvelope = ENVELOPE, message: bytes = MESSAGE) -> Path:
    return Path(write_offline(str(tmp_path), envelope, Content(message)))


def test_round_trip(tmp_path: Path) -> None:
    path = written(tmp_path)
    with path.open("rb") as f:
        checked = read_offline(f)
        assert checked.envelope == ENVELOPE
        assert checked.content(f).read_all() == MESSAGE


def test_file_name_mode_and_no_temporary_left(tmp_path: Path) -> None:
    path = written(tmp_path)
    assert is_offline_name(path.name)
    assert len(path.name.partition(".")[0]) == 20
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = written(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    short = Content(b"", io.BytesIO(b"abc"), 0, 10)  # claims more than it has
    with pytest.raises(OSError):
        write_offline(str(tmp_path), ENVELOPE, short)
    assert list(tmp_path.iterdir()) == []


def test_names_sort_in_writing_order(tmp_path: Path) -> None:
    paths = [written(tmp_path) for _ in range(20)]
    assert sorted(paths) == paths


def test_replacing_by_name(tmp_path: Path) -> None:
    path = written(tmp_path)
    fewer = OfflineEnvelope(sender="", recipients=("bob@y.example",), uid=1, created=2)
    write_offline(str(tmp_path), fewer, Content(MESSAGE), name=path.name)
    with path.open("rb") as f:
        assert read_offline(f).envelope == fewer
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recipients": ()},
        {"recipients": ("bob@y.example\r\nRCPT TO:<evil@x>",)},
        {"recipients": ("bob",)},  # unqualified: never written
        {"sender": "a@b>"},
        {"dsn_ret": "FULL SIZE=1"},
        {"dsn_notify": "ALWAYS"},
        {"dsn_envid": "has space"},
    ],
)
def test_envelope_checks(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "sender": "a@b.example",
        "recipients": ("c@d.example",),
        "uid": 1,
        "created": 1,
    }
    fields.update(kwargs)
    with pytest.raises(ValueError):
        OfflineEnvelope(**fields)  # type: ignore[arg-type]


def corrupt(data: bytes) -> None:
    with pytest.raises(SpoolCorrupt):
        read_offline(io.BytesIO(data))


def good_bytes(tmp_path: Path) -> bytes:
    return written(tmp_path).read_bytes()


def test_truncated_anywhere_is_corrupt(tmp_path: Path) -> None:
    data = good_bytes(tmp_path)
    for cut in range(len(data)):
        corrupt(data[:cut])


def test_any_flipped_byte_is_corrupt(tmp_path: Path) -> None:
    data = good_bytes(tmp_path)
    for index in range(len(data)):
        changed = bytearray(data)
        changed[index] ^= 0x01
        corrupt(bytes(changed))


def test_trailing_data_is_corrupt(tmp_path: Path) -> None:
    corrupt(good_bytes(tmp_path) + b"x")


def test_other_version_is_refused(tmp_path: Path) -> None:
    data = good_bytes(tmp_path).replace(b"mta-offline 1\n", b"mta-offline 2\n", 1)
    with pytest.raises(SpoolCorrupt, match="version 2"):
        read_offline(io.BytesIO(data))


def forged(header: bytes, message: bytes = b"x\r\n") -> bytes:
    body = header + b"message %d\n" % len(message) + message
    return body + b"end " + hashlib.sha256(body).hexdigest().encode() + b"\n"


def test_a_valid_checksum_does_not_make_a_bad_envelope_good() -> None:
    base = b"mta-offline 1\ncreated 1\nuid 1\nbody 7bit\nsender 0:\n"
    assert read_offline(io.BytesIO(forged(base + b"rcpt 3:a@b\n"))).envelope.recipients == ("a@b",)
    for bad in [
        base,  # no recipient
        base + b"rcpt 9:a@b\nDATA\n",  # length covering a line break
        base + b"rcpt 3:a@b\nrcpt 4:a\r@b\n",
        base + b"rcpt 3:a@b\nsender 0:\n",  # twice
        base + b"rcpt 03:a@b\n",  # leading zero
        base + b"rcpt 3:a@b\nextra 1:x\n",  # unknown field
        base.replace(b"body 7bit", b"body binary") + b"rcpt 3:a@b\n",
        base.replace(b"uid 1\n", b"") + b"rcpt 3:a@b\n",
        base + b"rcpt 99999:a@b\n",
    ]:
        corrupt(forged(bad))


def test_not_an_offline_file() -> None:
    corrupt(b"")
    corrupt(b"sendmail|-t|bob\nSubject: x\n\n")


@given(
    sender=st.sampled_from(["", "a@b.example", "\u00e9@b.example"]),
    recipients=st.lists(
        st.from_regex(r"[a-z0-9+=-]{1,20}@[a-z0-9]{1,10}\.example", fullmatch=True),
        min_size=1,
        max_size=5,
    ),
    message=st.binary(max_size=300),
)
def test_round_trip_property(sender: str, recipients: list[str], message: bytes) -> None:
    envelope = OfflineEnvelope(
        sender=sender, recipients=tuple(recipients), uid=0, created=0, eight_bit=False
    )
    header = encode_header(envelope, len(message))
    f = io.BytesIO(forged(header.rpartition(b"message ")[0], message))
    checked = read_offline(f)
    assert checked.envelope == envelope
    assert checked.content(f).read_all() == message


def test_offline_names() -> None:
    assert is_offline_name("1700000000.0123456789abcdef")
    assert not is_offline_name(".1700000000.0123456789abcdef.tmp")
    assert not is_offline_name("1700000000.XYZ")
