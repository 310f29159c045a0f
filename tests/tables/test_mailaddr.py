"""Tests for mta.tables.mailaddr: hostname_match and mailaddr_match."""

from __future__ import annotations

from mta.tables.mailaddr import MailAddr, hostname_match, mailaddr_match, parse_mailaddr


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
