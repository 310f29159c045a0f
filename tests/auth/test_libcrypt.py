"""Tests for mta.auth.libcrypt: the system crypt(3) through ctypes."""

from __future__ import annotations

import threading

import pytest

from mta.auth import libcrypt

pytestmark = pytest.mark.skipif(not libcrypt.available(), reason="no system libcrypt")

DREPPER = (
    b"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYE"
    b"dFCoEOfaS35inz1"
)


def test_published_vector() -> None:
    assert libcrypt.crypt(b"Hello world!", b"$6$saltstring") == DREPPER
    assert libcrypt.crypt(b"Hello world!", DREPPER) == DREPPER


def test_failures_are_none() -> None:
    assert libcrypt.crypt(b"pw\0x", b"$6$saltstring") is None
    assert libcrypt.crypt(b"pw", b"$6$salt\0") is None
    assert libcrypt.crypt(b"pw", b"$nonsense$") is None
    assert libcrypt.crypt(b"pw", b"!locked") is None


def test_threads_do_not_share_a_buffer() -> None:
    results: dict[int, bytes | None] = {}

    def work(n: int) -> None:
        results[n] = libcrypt.crypt(str(n).encode(), b"$6$rounds=20000$salt%d" % n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(8):
        assert results[n] == libcrypt.crypt(str(n).encode(), b"$6$rounds=20000$salt%d" % n)
    assert len(set(results.values())) == 8
