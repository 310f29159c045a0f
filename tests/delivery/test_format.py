"""Format specifiers of local delivery actions (``mta.delivery.format``).

The expected values follow smtpd.conf(5) and OpenSMTPD's ``mda_variables.c``;
the quirks (inclusive end offsets, ``[-1]`` refused, an empty value ignoring
its offsets) are OpenSMTPD's own.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.delivery.format import (
    EXPAND_BUFFER,
    MAXTOKENLEN,
    SAFE_CHARACTERS,
    TEMPLATE_MAX,
    FormatError,
    FormatValues,
    expand,
    expand_path,
)
from mta.envelope import NULL_ADDRESS, Address
from mta.errors import PermanentFailure, TemporaryFailure

MAILADDR_ESCAPE = "!#$%&'*?`{|}~"  # OpenSMTPD's smtpd.h
SENDER = Address("Sender+Tag", "Sender.example")
RCPT = Address("User+Tag", "Example.org")
DEST = Address("final+box", "dest.example")


def values(
    *,
    sender: Address = SENDER,
    rcpt: Address = RCPT,
    dest: Address = DEST,
    username: str = "gilles",
    directory: str = "/home/gilles",
    mda: str | None = None,
    delimiter: str = "+",
) -> FormatValues:
    return FormatValues(
        sender=sender,
        rcpt=rcpt,
        dest=dest,
        username=username,
        directory=directory,
        mda=mda,
        delimiter=delimiter,
    )


def rcpt_values(local: str, domain: str = "example.org") -> FormatValues:
    return values(rcpt=Address(local, domain))


# --- the manual page's examples, verbatim ------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("%{rcpt.domain[0]}", "e"),
        ("%{rcpt.domain[1]}", "x"),
        ("%{rcpt.domain[8:]}", "org"),
        ("%{rcpt.domain[-3:]}", "org"),
        ("%{rcpt.domain[0:6]}", "example"),
        ("%{rcpt.domain[0:-4]}", "example"),
    ],
)
def test_manual_substring_examples(template: str, expected: str) -> None:
    # "with recipient domain example.org"
    assert expand(template, rcpt_values("user", "example.org")) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("%{rcpt:lowercase}", "user+tag@example.org"),
        ("%{rcpt:uppercase}", "USER+TAG@EXAMPLE.ORG"),
        ("%{rcpt:strip}", "User@Example.org"),
        ("%{rcpt:lowercase|strip}", "user@example.org"),
    ],
)
def test_manual_modifier_examples(template: str, expected: str) -> None:
    # "with recipient User+Tag@Example.org"
    assert expand(template, rcpt_values("User+Tag", "Example.org")) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [("%{rcpt}", "user+t:g@example.org"), ("%{rcpt:raw}", "user+t?g@example.org")],
)
def test_manual_sanitising_examples(template: str, expected: str) -> None:
    # "with recipient user+t?g@example.org"
    assert expand(template, rcpt_values("user+t?g", "example.org")) == expected


def test_manual_action_examples() -> None:
    v = values()
    assert expand("/var/mail/%{user.username}/%{rcpt.domain}", v) == "/var/mail/gilles/Example.org"
    assert expand("/usr/bin/procmail -d %{user.username}", v) == "/usr/bin/procmail -d gilles"


# --- every token --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("sender", "Sender+Tag@Sender.example"),
        ("sender.user", "Sender+Tag"),
        ("sender.domain", "Sender.example"),
        ("rcpt", "User+Tag@Example.org"),
        ("rcpt.user", "User+Tag"),
        ("rcpt.domain", "Example.org"),
        ("dest", "final+box@dest.example"),
        ("dest.user", "final+box"),
        ("dest.domain", "dest.example"),
        ("user.username", "gilles"),
        ("user.directory", "/home/gilles"),
        ("mbox.from", "Sender+Tag@Sender.example"),
        ("mda", "/usr/local/bin/procmail -f -"),
    ],
)
def test_every_token(token: str, expected: str) -> None:
    v = values(mda="/usr/local/bin/procmail -f -")
    assert expand(f"%{{{token}}}", v) == expected
    # names are case-insensitive (strcasecmp)
    assert expand(f"%{{{token.upper()}}}", v) == expected


def test_null_sender() -> None:
    v = values(sender=NULL_ADDRESS)
    assert expand("[%{sender}][%{sender.user}][%{sender.domain}]", v) == "[][][]"
    assert expand("%{mbox.from}", v) == "MAILER-DAEMON"
    assert v.mbox_from == "MAILER-DAEMON"


def test_address_with_one_empty_part_keeps_the_at() -> None:
    # only "@" alone becomes the empty string, as in OpenSMTPD
    v = values(sender=Address("", "example.org"), rcpt=Address("user", ""))
    assert expand("%{sender}", v) == "@example.org"
    assert expand("%{mbox.from}", v) == "@example.org"
    assert expand("%{rcpt}", v) == "user@"


def test_mbox_from_is_sanitised() -> None:
    v = values(sender=Address("a$b", "example.org"))
    assert expand("%{mbox.from}", v) == "a:b@example.org"
    assert expand("%{mbox.from:raw}", v) == "a$b@example.org"


def test_mda_only_in_a_wrapper() -> None:
    with pytest.raises(FormatError, match="mda wrapper"):
        expand("/usr/bin/wrapper %{mda}", values(mda=None))
    command = "/usr/bin/procmail -d \"$USER\" | tee -a '/tmp/x' && echo `id`"
    assert expand("/usr/bin/wrapper %{mda}", values(mda=command)) == f"/usr/bin/wrapper {command}"


def test_directory_and_mda_are_never_sanitised() -> None:
    v = values(directory="/home/we ird$`x`", mda="cmd | x ; y")
    assert expand("%{user.directory}", v) == "/home/we ird$`x`"
    assert expand("%{mda}", v) == "cmd | x ; y"


def test_username_is_sanitised() -> None:
    assert expand("%{user.username}", values(username="bad$name")) == "bad:name"


# --- substring offsets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        ("[0]", "e"),
        ("[10]", "g"),
        ("[3:3]", "m"),
        ("[0:100]", "example.org"),  # end past the end: clamped
        ("[0:1024]", "example.org"),
        ("[7:]", ".org"),
        ("[:3]", "exam"),  # end inclusive
        ("[:]", "example.org"),
        ("[:-1]", "example.or"),  # a negative end counts from the last character
        ("[0:-10]", "e"),
        ("[-1:]", "g"),
        ("[-11:]", "example.org"),
        ("[-2:-1]", "r"),
        ("[-4:-2]", ".o"),
        ("[-0]", "e"),
        ("[+1]", "x"),  # strtonum: sign and leading white space are accepted
        ("[ 1]", "x"),
        ("[\t2:\v4]", "amp"),
        ("[007]", "."),
    ],
)
def test_offsets(offsets: str, expected: str) -> None:
    assert expand(f"%{{rcpt.domain{offsets}}}", rcpt_values("u", "example.org")) == expected


@pytest.mark.parametrize(
    "offsets",
    [
        "[11]",  # start at the end
        "[12:]",
        "[100]",
        "[1024]",
        "[-1]",  # begin -1 -> 10, end -1 -> 9: nothing (OpenSMTPD's rule)
        "[-1:-1]",
        "[-12:]",  # before the start
        "[-1024:]",
        "[0:-11]",  # end before the start
        "[0:-1024]",
        "[5:2]",
        "[1025]",  # beyond +-EXPAND_BUFFER: strtonum refuses
        "[-1025:]",
        "[0:1025]",
        "[99999999999999999999]",
        "[]",
        "[x]",
        "[1x]",
        "[1 ]",
        "[1.5]",
        "[0x1]",
        "[1_0]",
        "[1:2:3]",
        "[-]",
        "[:x]",
        "[x:]",
        "[ ]",
    ],
)
def test_bad_offsets(offsets: str) -> None:
    with pytest.raises(FormatError):
        expand(f"%{{rcpt.domain{offsets}}}", rcpt_values("u", "example.org"))


@pytest.mark.parametrize(
    "token",
    [
        "rcpt.domain][0",  # "]" before "["
        "rcpt.domain[0",  # "[" without "]": part of an unknown name
        "rcpt.domain0]",
        "rcpt.domain[0]x",  # text after the offsets (OpenSMTPD ignores it; we refuse)
        "rcpt.domain[0][1]",
        "rcpt.domain[0]]",
        "rcpt.domain:lowercase[0]",  # modifiers come after the offsets
        "[0]",
    ],
)
def test_malformed_brackets(token: str) -> None:
    with pytest.raises(FormatError):
        expand(f"%{{{token}}}", rcpt_values("u", "example.org"))


def test_empty_value_ignores_offsets() -> None:
    v = values(sender=NULL_ADDRESS)
    for offsets in ("[5]", "[-3:]", "[5:2]", "[1024]", "[-1]"):
        assert expand(f"x%{{sender{offsets}}}y", v) == "xy"
    with pytest.raises(FormatError):  # but they must still parse
        expand("%{sender[x]}", v)


def test_offsets_apply_after_modifiers_and_sanitising() -> None:
    v = rcpt_values("User+Tag", "Example.org")
    assert expand("%{rcpt.domain[0:6]:uppercase}", v) == "EXAMPLE"
    assert expand("%{rcpt[0:3]:strip}", v) == "User"
    assert expand("%{rcpt[-3:]:lowercase|strip}", v) == "org"
    q = rcpt_values("a?b", "example.org")
    assert expand("%{rcpt.user[1]}", q) == ":"
    assert expand("%{rcpt.user[1]:raw}", q) == "?"


# --- modifiers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modifiers", "expected"),
    [
        ("lowercase", "user+tag@example.org"),
        ("LowerCase", "user+tag@example.org"),  # names are case-insensitive
        ("UPPERCASE", "USER+TAG@EXAMPLE.ORG"),
        ("strip", "User@Example.org"),
        ("raw", "User+Tag@Example.org"),
        ("strip|uppercase", "USER@EXAMPLE.ORG"),
        ("uppercase|strip", "USER@EXAMPLE.ORG"),
        ("lowercase|uppercase", "USER+TAG@EXAMPLE.ORG"),  # in order: the last wins
        ("uppercase|lowercase", "user+tag@example.org"),
        ("lowercase|lowercase", "user+tag@example.org"),
        ("raw|lowercase", "user+tag@example.org"),
        ("lowercase|raw|strip", "user@example.org"),
        ("strip|strip", "User@Example.org"),
    ],
)
def test_modifiers(modifiers: str, expected: str) -> None:
    assert expand(f"%{{rcpt:{modifiers}}}", rcpt_values("User+Tag", "Example.org")) == expected


@pytest.mark.parametrize(
    "modifiers", ["", "bogus", "lowercase|", "|raw", "lowercase||strip", "raw ", " raw", "lower"]
)
def test_bad_modifiers(modifiers: str) -> None:
    with pytest.raises(FormatError):
        expand(f"%{{rcpt:{modifiers}}}", rcpt_values("User+Tag", "Example.org"))


@pytest.mark.parametrize(
    ("local", "token", "expected"),
    [
        ("user+tag", "rcpt.user", "user"),  # no "@": up to the end
        ("user", "rcpt", "user@example.org"),  # no tag: unchanged
        ("a+b+c", "rcpt", "a@example.org"),  # the first delimiter
        ("+tag", "rcpt", "@example.org"),
        ("user+", "rcpt", "user@example.org"),
    ],
)
def test_strip(local: str, token: str, expected: str) -> None:
    assert expand(f"%{{{token}:strip}}", rcpt_values(local)) == expected


def test_strip_uses_the_configured_delimiter() -> None:
    v = values(rcpt=Address("user-tag+x", "example.org"), delimiter="-")
    assert expand("%{rcpt:strip}", v) == "user@example.org"
    # a delimiter the sanitising would replace: strip sees the raw value
    w = values(rcpt=Address("user#tag", "example.org"), delimiter="#")
    assert expand("%{rcpt:strip}", w) == "user@example.org"
    assert expand("%{rcpt}", w) == "user:tag@example.org"


def test_case_modifiers_are_ascii_only() -> None:
    # tolower/toupper in the C locale: non-ASCII letters are left alone
    v = rcpt_values("ÉCOLE-Ä", "example.org")
    assert expand("%{rcpt.user:lowercase|raw}", v) == "École-Ä"
    assert expand("%{rcpt.user:uppercase|raw}", rcpt_values("école")) == "éCOLE"


@pytest.mark.parametrize("delimiter", ["", "++", " ", "@", "\t", "é", "\x7f"])
def test_invalid_delimiter(delimiter: str) -> None:
    with pytest.raises(ValueError, match="delimiter"):
        values(delimiter=delimiter)


# --- %% and literal text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("%%", "%"),
        ("100%%", "100%"),
        ("%%%%", "%%"),
        ("%%{rcpt}", "%{rcpt}"),  # the escape for a literal %{...}
        ("%%%{rcpt.user}", "%u"),
        ("%", "%"),  # a lone % is kept
        ("50%x", "50%x"),
        ("a%", "a%"),
        ("%%%", "%%"),
        ("{rcpt}", "{rcpt}"),
        ("}", "}"),
        ("", ""),
        ("no tokens at all", "no tokens at all"),
        ("%{rcpt.user}%{rcpt.user}", "uu"),
        ("é%{rcpt.user}é", "éué"),  # the template itself is never sanitised
    ],
)
def test_literals_and_percent(template: str, expected: str) -> None:
    assert expand(template, rcpt_values("u")) == expected


# --- ~/ -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("~/Maildir", "/home/gilles/Maildir"),
        ("~/", "/home/gilles/"),
        ("~/%{rcpt.user}", "/home/gilles/User+Tag"),
        ("~/%{user.directory}", "/home/gilles//home/gilles"),
        ("~", "~"),  # only "~/" at the very start
        ("~gilles/Maildir", "~gilles/Maildir"),
        ("/x/~/y", "/x/~/y"),
        (" ~/x", " ~/x"),
        ("%{rcpt.user}~/", "User+Tag~/"),
    ],
)
def test_home_directory(template: str, expected: str) -> None:
    assert expand(template, values()) == expected


def test_home_directory_is_not_sanitised() -> None:
    assert expand("~/x", values(directory="/home/a b$c")) == "/home/a b$c/x"


def test_home_directory_length() -> None:
    directory = "/" + "d" * (EXPAND_BUFFER - 3)  # with its "/": 1023 bytes
    assert expand("~/", values(directory=directory)) == directory + "/"
    with pytest.raises(FormatError):
        expand("~/", values(directory=directory + "d"))
    with pytest.raises(FormatError):
        expand("~/x", values(directory=directory))  # 1024 bytes in all


# --- sanitising ---------------------------------------------------------------------------------


@pytest.mark.parametrize("char", list(MAILADDR_ESCAPE))
def test_opensmtpd_escape_characters(char: str) -> None:
    v = rcpt_values(f"a{char}b")
    assert expand("%{rcpt.user}", v) == "a:b"
    assert expand("%{rcpt}", v) == "a:b@example.org"
    assert expand("%{rcpt.user:raw}", v) == f"a{char}b"


@pytest.mark.parametrize(
    "char",
    [
        " ",
        '"',
        "\\",
        ";",
        "<",
        ">",
        "(",
        ")",
        ",",
        "\t",
        "\n",
        "\r",
        "\x00",
        "\x01",
        "\x1b",
        "\x7f",
        "\x85",
        "\u00a0",
        "é",
        "€",
        "\u202e",  # right-to-left override
        "\U0001f600",
        "\udcff",  # a surrogate-escaped byte
    ],
)
def test_other_unsafe_characters(char: str) -> None:
    # characters OpenSMTPD's parser never lets into an address: replaced all the same
    assert expand("%{rcpt.user}", rcpt_values(f"a{char}b")) == "a:b"


@pytest.mark.parametrize("char", list("/^=-_.+@:[]Zz09"))
def test_characters_kept(char: str) -> None:
    # "/" and "^" are kept since mda_variables.c 1.6 ("unescape / and ^")
    assert expand("%{rcpt.user}", rcpt_values(f"a{char}b")) == f"a{char}b"


def test_one_colon_per_character() -> None:
    assert expand("%{rcpt.user}", rcpt_values("日本語")) == ":::"
    assert expand("%{rcpt.user:raw}", rcpt_values("日本語")) == "日本語"


def test_shell_injection_is_neutralised() -> None:
    v = rcpt_values("`rm -rf ~`;$(reboot)|x&y'\"")
    assert expand("/usr/bin/procmail -a %{rcpt.user}", v) == (
        "/usr/bin/procmail -a :rm:-rf::::::reboot::x:y::"
    )


def test_quoted_local_part_and_domain_literal() -> None:
    assert expand("%{rcpt}", rcpt_values('"john doe"', "example.org")) == ":john:doe:@example.org"
    assert expand("%{rcpt}", rcpt_values("u", "[IPv6:2001:db8::1]")) == "u@[IPv6:2001:db8::1]"


def test_sanitising_covers_every_sanitised_token() -> None:
    bad = Address("x$y", "d$m")
    v = values(sender=bad, rcpt=bad, dest=bad, username="u$n", directory="/h$d", mda="m$d")
    got = expand(
        "%{sender} %{sender.user} %{sender.domain} %{rcpt} %{rcpt.user} %{rcpt.domain} "
        "%{dest} %{dest.user} %{dest.domain} %{user.username} %{mbox.from} "
        "%{user.directory} %{mda}",
        v,
    )
    assert got == "x:y@d:m x:y d:m x:y@d:m x:y d:m x:y@d:m x:y d:m u:n x:y@d:m /h$d m$d"


def test_safe_characters() -> None:
    assert frozenset(string.ascii_letters + string.digits + "@.+-=_/^:[]") == SAFE_CHARACTERS
    assert not SAFE_CHARACTERS & set(MAILADDR_ESCAPE)


# --- unknown and malformed tokens ---------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "%{}",
        "%{foo}",
        "%{user}",
        "%{rcpt }",
        "%{ rcpt}",
        "%{rcpt.}",
        "%{rcpt.domain.tld}",
        "%{sender.username}",
        "%{mbox}",
        "%{rcpt:}",
        "%{:raw}",
        "%{rcpt",  # unterminated (OpenSMTPD would run the template unexpanded)
        "x %{rcpt.user",
        "%{a%{rcpt}",  # the first "}" ends the token: name "a%{rcpt"
        "%{rcpt\x00}",
    ],
)
def test_unknown_or_malformed(template: str) -> None:
    with pytest.raises(FormatError):
        expand(template, values(mda="cmd"))


def test_token_length() -> None:
    long_name = "rcpt.user:" + "|".join(["raw"] * 100)
    with pytest.raises(FormatError, match="longer"):
        expand("%{" + long_name[:MAXTOKENLEN] + "}", values())
    fits = "rcpt.user:" + "|".join(["raw"] * 29)  # 10 + 29 * 4 - 1 = 125 bytes
    assert len(fits) < MAXTOKENLEN
    assert expand("%{" + fits + "}", values()) == "User+Tag"


# --- limits -------------------------------------------------------------------------------------


def test_value_and_token_limits() -> None:
    # one token expands to at most EXPAND_BUFFER - 2 bytes
    assert expand("%{rcpt.user}", rcpt_values("a" * 1022)) == "a" * 1022
    with pytest.raises(FormatError):
        expand("%{rcpt.user}", rcpt_values("a" * 1023))
    # a value of 1023 bytes is still usable in part; 1024 is not
    assert expand("%{rcpt.user[0:9]}", rcpt_values("a" * 1023)) == "a" * 10
    with pytest.raises(FormatError):
        expand("%{rcpt.user[0:9]}", rcpt_values("a" * 1024))
    # user@domain counts as one value
    with pytest.raises(FormatError):
        expand("%{rcpt[0]}", rcpt_values("a" * 1000, "b" * 30))
    assert expand("%{rcpt.user[0]}", rcpt_values("a" * 1000, "b" * 30)) == "a"


def test_result_limit() -> None:
    v = rcpt_values("a" * 23)
    assert expand("x" * 1000 + "%{rcpt.user}", v) == "x" * 1000 + "a" * 23  # 1023 bytes
    with pytest.raises(FormatError):
        expand("x" * 1001 + "%{rcpt.user}", v)
    with pytest.raises(FormatError):
        expand("x" * EXPAND_BUFFER, v)
    assert expand("x" * (EXPAND_BUFFER - 1), v) == "x" * (EXPAND_BUFFER - 1)


def test_template_limit() -> None:
    v = values(sender=NULL_ADDRESS)
    template = "%{sender}" * 227 + "abcd"  # 2047 bytes expanding to 4
    assert len(template) == TEMPLATE_MAX - 1
    assert expand(template, v) == "abcd"
    with pytest.raises(FormatError):
        expand(template + "e", v)


def test_limits_count_bytes() -> None:
    assert expand("%{rcpt.user:raw}", rcpt_values("é" * 511)) == "é" * 511  # 1022 bytes
    with pytest.raises(FormatError):
        expand("%{rcpt.user:raw}", rcpt_values("é" * 512))
    with pytest.raises(FormatError):
        expand("é" * 512, values())


def test_nul_in_result() -> None:
    with pytest.raises(FormatError, match="NUL"):
        expand("%{user.directory}", values(directory="/home/a\x00b"))
    with pytest.raises(FormatError, match="NUL"):
        expand("%{rcpt.user:raw}", rcpt_values("a\x00b"))
    with pytest.raises(FormatError, match="NUL"):
        expand("a\x00b", values())
    assert expand("%{rcpt.user}", rcpt_values("a\x00b")) == "a:b"


# --- classification -----------------------------------------------------------------------------


def test_format_error_is_permanent() -> None:
    assert issubclass(FormatError, PermanentFailure)
    assert not issubclass(FormatError, TemporaryFailure)


# --- expand_path --------------------------------------------------------------------------------


def test_expand_path() -> None:
    v = values()
    assert expand_path("/var/mail/%{user.username}/%{rcpt.domain}", v) == (
        "/var/mail/gilles/Example.org"
    )
    assert expand_path("~/Maildir", v) == "/home/gilles/Maildir"
    assert expand_path("/var/mail/%{rcpt:lowercase|strip}", v) == "/var/mail/user@example.org"


@pytest.mark.parametrize(
    ("template", "local"),
    [
        ("/var/mail/%{rcpt.user}", "../../etc"),
        ("/var/mail/%{rcpt.user:raw}", "../../etc"),
        ("/var/mail/%{rcpt:raw}", "../../etc"),  # "../../etc@example.org"
        ("/var/mail/%{rcpt}", "../../etc"),
        ("/var/mail/%{rcpt.user}", ".."),
        ("/var/mail/%{rcpt.user}/x", "a/.."),
        ("/var/mail/%{rcpt.user}", "a/../../.."),
        ("/var/mail/%{rcpt.user}.", "x/."),  # ".." assembled from value and template
        ("/var/mail/%{rcpt.user:strip}", "..+x"),
        ("/var/mail/%{rcpt.user[0:1]}", ".."),
    ],
)
def test_expand_path_refuses_dot_dot(template: str, local: str) -> None:
    with pytest.raises(FormatError, match=r"'\.\.'"):
        expand_path(template, rcpt_values(local))


@pytest.mark.parametrize(
    ("template", "v"),
    [
        ("/var/mail/../etc", values()),
        ("/var/mail/..", values()),
        ("~/Maildir", values(directory="/home/../etc")),
        ("%{user.directory}/Maildir", values(directory="/home/x/..")),
    ],
)
def test_expand_path_refuses_dot_dot_anywhere(template: str, v: FormatValues) -> None:
    with pytest.raises(FormatError):
        expand_path(template, v)


@pytest.mark.parametrize("local", ["...", "a..b", "..a", "a..", ".a", "a/./b", "/etc"])
def test_expand_path_allows_other_dots(local: str) -> None:
    assert expand_path("/var/mail/%{rcpt.user:raw}", rcpt_values(local)) == f"/var/mail/{local}"


@pytest.mark.parametrize(
    ("template", "v"),
    [
        ("Maildir", values()),
        ("%{rcpt.user}", values()),
        ("", values()),
        ("%{user.directory}/Maildir", values(directory="home/x")),
        ("%{sender}", values(sender=NULL_ADDRESS)),
    ],
)
def test_expand_path_must_be_absolute(template: str, v: FormatValues) -> None:
    with pytest.raises(FormatError, match="absolute"):
        expand_path(template, v)


def test_expand_path_absolute_after_expansion() -> None:
    assert expand_path("~/Maildir", values(directory="")) == "/Maildir"
    assert expand_path("%{sender}/x", values(sender=NULL_ADDRESS)) == "/x"


def test_expand_path_propagates_format_errors() -> None:
    with pytest.raises(FormatError):
        expand_path("/var/mail/%{bogus}", values())


# --- properties ---------------------------------------------------------------------------------

_locals = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.sampled_from("éÉßø€日本\u00a0\u202e\U0001f600\x00\x01\t\n\x7f\x85"),
        st.characters(),
    ),
    max_size=300,
)
_domains = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + ".-_", max_size=60),
    st.text(max_size=60),
)
_templates = st.sampled_from(
    [
        "%{rcpt}",
        "%{dest.user}",
        "%{rcpt:lowercase}",
        "%{rcpt:strip}",
        "%{dest.user:uppercase|strip}",
        "%{rcpt[-10:]}",
        "%{dest.user[0:5]}",
        "%{rcpt.user}/%{rcpt.domain}",
        "%{sender}%{mbox.from}",
    ]
)


@settings(max_examples=300)
@given(local=_locals, domain=_domains, template=_templates)
def test_sanitised_expansion_is_safe(local: str, domain: str, template: str) -> None:
    address = Address(local, domain)
    v = values(sender=address, rcpt=address, dest=address)
    try:
        result = expand(template, v)
    except FormatError:
        return
    assert set(result) <= SAFE_CHARACTERS


@settings(max_examples=200)
@given(local=_locals, domain=_domains, template=st.text(max_size=40))
def test_any_template_only_raises_format_error(local: str, domain: str, template: str) -> None:
    v = values(rcpt=Address(local, domain), dest=Address(local, domain))
    for t in (template, "%{" + template + "}", "/var/mail/%{rcpt.user" + template):
        try:
            expand(t, v)
            expand_path(t, v)
        except FormatError:
            pass


@settings(max_examples=200)
@given(local=_locals)
def test_expand_path_never_escapes(local: str) -> None:
    v = rcpt_values(local)
    for template in ("/var/mail/%{rcpt.user}", "/var/mail/%{rcpt.user:raw}", "/m/%{rcpt:raw}"):
        try:
            path = expand_path(template, v)
        except FormatError:
            continue
        assert path.startswith("/")
        assert ".." not in path.split("/")
