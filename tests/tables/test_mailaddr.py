"""Tests for mta.tables.mailaddr: hostname_match, mailaddr_match and the key index."""

from __future__ import annotations

import random

from mta.tables.mailaddr import (
    MailAddr,
    MailAddrIndex,
    hostname_match,
    mailaddr_match,
    mailaddr_text_match,
    parse_mailaddr,
)


def test_hostname_match_is_opensmtpd_glob() -> None:
    assert hostname_match("a.example.com", "*.example.com")
    assert hostname_match("A.EXAMPLE.COM", "*.example.com")
    assert not hostname_match("a.b.example.com", "*.example.com")
    assert hostname_match("anything", "*")
    assert not hostname_match("", "*")
    assert hostname_match("mx1.example.org", "mx*.example.org")


def test_parse_mailaddr_splits_at_last_at() -> None:
    assert parse_mailaddr("a@b@c") == MailAddr("a@b", "c")
    assert parse_mailaddr("@") == MailAddr("", "")
    assert parse_mailaddr("user") == MailAddr("user", "")
    assert parse_mailaddr("x" * 300) is None


def test_mailaddr_match() -> None:
    any_addr = MailAddr("", "")
    assert mailaddr_match(MailAddr("a", "b"), any_addr)
    assert mailaddr_match(MailAddr("Jo+x", "d"), MailAddr("jo", ""))
    assert not mailaddr_match(MailAddr("jo", ""), MailAddr("jo", "d"))
    assert mailaddr_match(MailAddr("jo-x", "d"), MailAddr("jo", "d"), "-")


def test_the_index_finds_the_first_key_a_linear_scan_finds() -> None:
    rng = random.Random(15)
    parts = ["", "a", "A", "b+x", "ab", "*"]
    domains = ["", "x.test", "X.TEST", "y.test", "*.test", "*", "a.x.test"]
    for _ in range(300):
        keys = sorted(
            {f"{rng.choice(parts)}@{rng.choice(domains)}".lstrip("@") for _ in range(8)}
            | {rng.choice(["@", "a", "x" * 300 + "@x.test"])}
        )
        index = MailAddrIndex(keys)
        for user in ("a", "A+tag", "b+x", "zz", ""):
            for domain in ("x.test", "X.Test", "y.test", "a.x.test", "q.example", ""):
                candidate = f"{user}@{domain}"
                scan = next(
                    (i for i, k in enumerate(keys) if mailaddr_text_match(candidate, k)), None
                )
                assert index.first(candidate) == scan, (candidate, keys)
