"""MAIL / RCPT parameters and xtext."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.envelope import Body, DsnNotify, DsnRet
from mta.reply import Reply
from mta.smtp.params import (
    ENVID_MAX,
    ORCPT_MAX,
    MailParams,
    RcptParams,
    decode_xtext,
    encode_notify,
    encode_xtext,
    has_smtputf8,
    parse_mail_params,
    parse_rcpt_params,
)


def mail(tokens: str, *, dsn: bool = True, max_size: int = 1000) -> MailParams | Reply:
    return parse_mail_params(tokens, dsn=dsn, max_size=max_size)


def rcpt(tokens: str, *, dsn: bool = True) -> RcptParams | Reply:
    return parse_rcpt_params(tokens, dsn=dsn)


def text(result: object) -> str:
    assert isinstance(result, Reply)
    return result.encode().decode()


def test_mail_parameters() -> None:
    assert mail("") == MailParams()
    assert mail("size=999 body=8bitmime SMTPUTF8 AUTH=<> RET=full ENVID=abc+2Bdef") == MailParams(
        size=999,
        body=Body.EIGHTBITMIME,
        smtputf8=True,
        auth="<>",
        ret=DsnRet.FULL,
        envid="abc+def",
    )
    assert mail("BODY=7BIT  RET=HDRS") == MailParams(body=Body.SEVENBIT, ret=DsnRet.HDRS)
    assert mail("SIZE=5000", max_size=0) == MailParams(size=5000)


@pytest.mark.parametrize(
    ("tokens", "reply"),
    [
        ("SIZE=1001", "552 5.3.4 Message too big for system: "),
        ("SIZE=12x", "501 5.5.4 Invalid command arguments: Invalid SIZE value 12x"),
        ("SIZE=", "501 5.5.4 Invalid command arguments: Invalid SIZE value "),
        ("SIZE", "555 5.5.4 Unsupported option SIZE"),
        ("BODY=BINARYMIME", "555 5.5.4 Unsupported option BODY=BINARYMIME"),
        ("SMTPUTF8=yes", "555 5.5.4 Unsupported option SMTPUTF8=yes"),
        ("RET=ALL", "501 5.5.4 Invalid command arguments: Invalid RET value ALL"),
        ("ENVID=a+2b", "501 5.5.4 Invalid command arguments: Invalid ENVID value"),
        ("ENVID=a+0A", "501 5.5.4 Invalid command arguments: Invalid ENVID value"),
        ("ENVID=a=b", "501 5.5.4 Invalid command arguments: Invalid ENVID value"),
        ("ENVID=", "501 5.5.4 Invalid command arguments: Invalid ENVID value"),
        ("ENVID=" + "x" * (ENVID_MAX + 1), "501 5.5.4 Invalid command arguments: option too"),
        ("BODY=7BIT body=8BITMIME", "501 5.5.4 Invalid command arguments: Duplicate option BODY"),
        ("X-FOO=1", "555 5.5.4 Unsupported option X-FOO=1"),
        ("-X=1", "555 5.5.4 Unsupported option -X=1"),
        ("\xe9=1", "555 5.5.4 Unsupported option \xe9=1"),
    ],
)
def test_mail_parameter_errors(tokens: str, reply: str) -> None:
    assert text(mail(tokens)).startswith(reply)


def test_envid_limit_is_inclusive() -> None:
    assert mail("ENVID=" + "x" * ENVID_MAX) == MailParams(envid="x" * ENVID_MAX)


def test_dsn_parameters_without_dsn() -> None:
    assert text(mail("RET=FULL", dsn=False)) == "555 5.5.4 Unsupported option RET=FULL\r\n"
    assert text(mail("ENVID=x", dsn=False)) == "555 5.5.4 Unsupported option ENVID=x\r\n"
    assert text(rcpt("NOTIFY=NEVER", dsn=False)) == "555 5.5.4 Unsupported option NOTIFY=NEVER\r\n"
    assert text(rcpt("ORCPT=rfc822;a", dsn=False)).startswith("555 ")


def test_rcpt_parameters() -> None:
    assert rcpt("") == RcptParams()
    assert rcpt("NOTIFY=never") == RcptParams(notify=DsnNotify.NEVER)
    assert rcpt("notify=SUCCESS,FAILURE,DELAY ORCPT=rfc822;a+2Bb+40c.example") == RcptParams(
        notify=DsnNotify.SUCCESS | DsnNotify.FAILURE | DsnNotify.DELAY,
        orcpt="rfc822;a+b@c.example",
    )


@pytest.mark.parametrize(
    ("tokens", "reply"),
    [
        ("NOTIFY=NEVER,SUCCESS", "553 5.5.4 NOTIFY option NEVER cannot be combined"),
        ("NOTIFY=DELAY,NEVER", "553 5.5.4 NOTIFY option NEVER cannot be combined"),
        ("NOTIFY=SOMETIMES", "553 5.5.4 Invalid NOTIFY option"),
        ("NOTIFY=SUCCESS,SUCCESS", "553 5.5.4 Invalid NOTIFY option"),
        ("NOTIFY=", "553 5.5.4 Invalid NOTIFY option"),
        ("ORCPT=rfc822", "553 5.5.4 ORCPT address syntax error"),
        ("ORCPT=;a@b.example", "553 5.5.4 ORCPT address syntax error"),
        ("ORCPT=rfc 822;a", "553 5.5.4 ORCPT address syntax error"),
        ("ORCPT=rfc822;", "553 5.5.4 ORCPT address syntax error"),
        ("ORCPT=rfc822;a+0Db", "553 5.5.4 ORCPT address syntax error"),
        ("ORCPT=rfc822;a+zz", "553 5.5.4 ORCPT address syntax error"),
        ("ORCPT=rfc822;" + "x" * ORCPT_MAX, "553 5.5.4 ORCPT address syntax error"),
        ("NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4 Invalid command arguments: Duplicate option"),
        ("SIZE=10", "555 5.5.4 Unsupported option SIZE=10"),
    ],
)
def test_rcpt_parameter_errors(tokens: str, reply: str) -> None:
    assert text(rcpt(tokens)).startswith(reply)


def test_orcpt_limit_is_inclusive() -> None:
    value = "rfc822;" + "x" * (ORCPT_MAX - 7)
    assert rcpt("ORCPT=" + value) == RcptParams(orcpt=value)


def test_has_smtputf8() -> None:
    assert has_smtputf8("BODY=8BITMIME smtputf8")
    assert not has_smtputf8("SMTPUTF8=1")
    assert not has_smtputf8("")


@pytest.mark.parametrize(
    ("xtext", "decoded"),
    [
        ("plain", "plain"),
        ("a+2Bb+3Dc", "a+b=c"),
        ("+20", " "),
        ("a+2b", None),  # lowercase hex
        ("a+2", None),
        ("a+", None),
        ("a=b", None),
        ("a b", None),
        ("+7F", None),
        ("+1F", None),
        ("+C3+A9", None),
        ("\xe9", None),
    ],
)
def test_decode_xtext(xtext: str, decoded: str | None) -> None:
    assert decode_xtext(xtext) == decoded


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_xtext_round_trip(value: str) -> None:
    encoded = "".join(f"+{ord(c):02X}" if c in "+= " or ord(c) < 33 else c for c in value)
    assert decode_xtext(encoded) == value


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_encode_xtext_round_trips(value: str) -> None:
    assert decode_xtext(encode_xtext(value)) == value


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        (DsnNotify.NONE, None),
        (DsnNotify.NEVER, "NEVER"),
        (DsnNotify.DELAY | DsnNotify.SUCCESS, "SUCCESS,DELAY"),
        (DsnNotify.FAILURE | DsnNotify.DELAY | DsnNotify.SUCCESS, "SUCCESS,FAILURE,DELAY"),
    ],
)
def test_encode_notify(flags: DsnNotify, text: str | None) -> None:
    assert encode_notify(flags) == text
    if text is not None:  # and it parses back to the same flags
        params = parse_rcpt_params(f"NOTIFY={text}", dsn=True)
        assert isinstance(params, RcptParams) and params.notify == flags
