"""Format specifiers of local delivery actions: ``%{rcpt.user}``, ``~/``, ``%%``.

``action "x" maildir "/var/mail/%{user.username}/%{rcpt.domain}"``, ``mda
"/usr/bin/procmail -d %{user.username}"`` and the commands of ``mda wrapper``
are expanded before each delivery, as OpenSMTPD's ``mda_expand_format`` and
``mda_expand_token`` (``mda_variables.c``) do it:

* ``~/`` at the very start of the template is the user's home directory and
  a slash (anywhere else ``~`` is an ordinary character);
* ``%%`` is a ``%`` (so ``%%{rcpt}`` is the literal text ``%{rcpt}``); a ``%``
  not followed by ``%`` or ``{`` is kept as it is;
* ``%{name}``, ``%{name[offsets]}``, ``%{name:mod|mod}`` and
  ``%{name[offsets]:mod|mod}`` expand a value.  Names and modifiers are
  case-insensitive.  ``sender``, ``rcpt`` and ``dest`` are ``user@domain`` (the
  empty string for ``<>``); ``mbox.from`` is the sender or ``MAILER-DAEMON``;
  ``mda`` (the command being wrapped) exists only in an mda wrapper.
* Offsets select characters: ``[n]`` one, ``[a:b]`` from ``a`` to ``b``
  *inclusive*, ``[a:]`` / ``[:b]`` open-ended; a negative ``a`` counts from
  the end, a negative ``b`` from the last character (so ``[0:-4]`` of
  ``example.org`` is ``example`` and ``[-1]`` is refused, as in OpenSMTPD).  An
  end past the end is clamped; a start past the end is an error; offsets must
  be integers within +-1024 (``strtonum``).  An empty value expands to nothing,
  whatever the offsets.
* Modifiers apply in order to the whole value, before the offsets:
  ``lowercase`` and ``uppercase`` (ASCII only, like ``tolower`` in the C
  locale), ``strip`` (drop the sub-address: from the first ``sub-addr-delim``
  up to the ``@``, or to the end), and ``raw`` (no sanitising).

Sanitising.  The value of every token except ``user.directory`` and ``mda``
(which come from the system and the configuration, not from the network) is
sanitised after the modifiers unless ``raw`` is given: each character outside
:data:`SAFE_CHARACTERS` (ASCII letters and digits and ``@ . + - = _ / ^ : [ ]``)
becomes ``:``.  The expansion ends up in a ``/bin/sh -c`` command line or in a
file name, and addresses are chosen by whoever sends mail: shell
metacharacters (``$ ` ' " ; & | * ? ! # ~ { } ( ) < > \\``, spaces), control
characters and anything non-ASCII must not reach either.  OpenSMTPD replaces
the characters of ``MAILADDR_ESCAPE`` (``!#$%&'*?`{|}~``) and relies on its
parser to have refused every other unsafe character in an address; ours
accepts quoted local parts and SMTPUTF8, so the rule here is the equivalent
allow-list: on every address OpenSMTPD accepts the result is the same.  ``/``
and ``^`` are kept, as OpenSMTPD does since 2019 (``mda_variables.c`` 1.6:
"unescape / and ^ in the general delivery case"); :func:`expand_path` is what
keeps a path inside its directory, by refusing any ``..`` component.

Limits (OpenSMTPD's buffers, counted in UTF-8 bytes): the template at most
2047 (``LINE_MAX``), a token name at most 127 (``MAXTOKENLEN``), a value at
most 1023 and one expanded token at most 1022 (``EXPAND_BUFFER``), the result
at most 1023.

Where OpenSMTPD is lax or broken this module refuses or fixes, deliberately:

* an unterminated ``%{``, a token name of 128 bytes or more, and a home
  directory too long for ``~/`` raise :class:`FormatError` (OpenSMTPD's
  ``mda_expand_format`` returns 0 there and the template runs unexpanded);
* text between ``]`` and the ``:`` of the modifiers (``%{rcpt[0]x}``) is an
  error (OpenSMTPD ignores it);
* offsets and modifiers together (``%{rcpt.domain[0:6]:uppercase}``) work, as
  the manual documents both (OpenSMTPD keeps the ``:`` in front of the first
  modifier name, so such a token never matches a modifier and always fails);
* a NUL character anywhere in the result is an error (C strings end there).

Pure: no I/O.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

import attrs

from mta.envelope import Address
from mta.errors import PermanentFailure

__all__ = [
    "EXPAND_BUFFER",
    "MAXTOKENLEN",
    "SAFE_CHARACTERS",
    "TEMPLATE_MAX",
    "FormatError",
    "FormatValues",
    "expand",
    "expand_path",
]

EXPAND_BUFFER = 1024  # OpenSMTPD's buffer for a value and for the whole result, NUL included
MAXTOKENLEN = 128  # the buffer for the name inside %{...}, NUL included
TEMPLATE_MAX = 2048  # LINE_MAX: mda_unpriv copies the command into a buffer of this size

SAFE_CHARACTERS = frozenset(string.ascii_letters + string.digits + "@.+-=_/^:[]")
"""What a sanitised value may contain; every other character becomes ``:``."""

_REPLACEMENT = ":"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
# strtonum(3): strtoll's optional leading white space and sign, then decimal digits only.
_OFFSET = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+", re.ASCII)


class FormatError(PermanentFailure):
    """A template could not be expanded: the delivery fails for good.

    Permanent, as in OpenSMTPD: when ``mda_expand_format`` fails, the delivery
    child ``mda_unpriv`` ends with ``errx(1, "mda command line could not be
    expanded")``; the parent (``smtpd.c``, ``parent_sig_handler``) treats any
    exit status other than 0, EX_OSERR (71) and EX_TEMPFAIL (75) as
    ``MDA_PERMFAIL``, and ``mda.c`` (``IMSG_MDA_DONE``) then permfails the
    envelope, which bounces.  Retrying would not help: the same template and
    the same addresses fail the same way.
    """


def _check_delimiter(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    # The rule of sub-addr-delim in parse.y: one printable ASCII character, not a space, not @.
    if len(value) != 1 or not ("!" <= value <= "~") or value == "@":
        raise ValueError(f"invalid sub-address delimiter {value!r}")


@attrs.frozen
class FormatValues:
    """Everything a template may refer to, for one delivery."""

    sender: Address  # %{sender}, %{sender.user}, %{sender.domain}; NULL_ADDRESS for <>
    rcpt: Address  # %{rcpt...}: the address given at RCPT TO
    dest: Address  # %{dest...}: the address after alias / virtual / .forward expansion
    username: str  # %{user.username}: the local user the delivery runs as
    directory: str  # %{user.directory} and ~/: their home directory (never sanitised)
    mda: str | None = None  # %{mda}: the command being wrapped, only in an mda wrapper
    delimiter: str = attrs.field(default="+", validator=_check_delimiter)  # for :strip

    @property
    def mbox_from(self) -> str:
        """%{mbox.from}: the sender for mbox ``From `` lines, ``MAILER-DAEMON`` for ``<>``."""
        return _joined(self.sender) or "MAILER-DAEMON"


def expand(template: str, values: FormatValues) -> str:
    """The template with ``~/``, ``%%`` and every ``%{...}`` expanded.

    Raises :class:`FormatError` for an unknown token or modifier, malformed
    offsets, ``%{mda}`` outside an mda wrapper, or a result over the limits.
    """
    if _size(template) >= TEMPLATE_MAX:
        raise FormatError(f"template longer than {TEMPLATE_MAX - 1} bytes")
    parts: list[str] = []
    pos = 0
    if template.startswith("~/"):
        home = values.directory + "/"
        if _size(home) >= EXPAND_BUFFER:
            raise FormatError(f"home directory {values.directory!r} too long to expand ~/")
        parts.append(home)
        pos = 2
    length = len(template)
    while pos < length:
        start = template.find("%", pos)
        if start < 0:
            parts.append(template[pos:])
            break
        parts.append(template[pos:start])
        follower = template[start + 1 : start + 2]
        if follower == "%":
            parts.append("%")
            pos = start + 2
        elif follower != "{":
            parts.append("%")
            pos = start + 1
        else:
            end = template.find("}", start + 2)
            if end < 0:
                raise FormatError(f"unterminated %{{ in {template!r}")
            parts.append(_expand_token(template[start + 2 : end], values))
            pos = end + 1
    result = "".join(parts)
    if _size(result) >= EXPAND_BUFFER:
        raise FormatError(f"expansion longer than {EXPAND_BUFFER - 1} bytes")
    if "\0" in result:
        raise FormatError("expansion contains a NUL character")
    return result


def expand_path(template: str, values: FormatValues) -> str:
    """:func:`expand` for a maildir or mbox path: it must be absolute, without ``..``.

    No value, sanitised or ``raw``, can then make the delivery leave the
    directory the configuration names.
    """
    path = expand(template, values)
    if not path.startswith("/"):
        raise FormatError(f"expanded path {path!r} is not absolute")
    if ".." in path.split("/"):
        raise FormatError(f"expanded path {path!r} has a '..' component")
    return path


def _expand_token(token: str, values: FormatValues) -> str:
    """One ``name[offsets]:modifiers`` (the text between ``%{`` and ``}``)."""
    if _size(token) >= MAXTOKENLEN:
        raise FormatError(f"token %{{{token[:40]}...}} longer than {MAXTOKENLEN - 1} bytes")
    begin, end = 0, EXPAND_BUFFER
    modifiers: str | None = None
    left, right = token.find("["), token.find("]")
    if left >= 0 and right >= 0:
        if right < left + 2:  # "]" before "[", or "[]"
            raise FormatError(f"bad offsets in %{{{token}}}")
        name = token[:left]
        begin, end = _offsets(token[left + 1 : right], token)
        rest = token[right + 1 :]
        if rest.startswith(":"):
            modifiers = rest[1:]
        elif rest:
            raise FormatError(f"unexpected text after the offsets in %{{{token}}}")
    else:
        name, colon, mods = token.partition(":")
        if colon:
            modifiers = mods
    value, sanitise = _lookup(name, values, token)
    if _size(value) >= EXPAND_BUFFER:
        raise FormatError(f"value of %{{{name}}} longer than {EXPAND_BUFFER - 1} bytes")
    if modifiers is not None:
        for modifier in modifiers.split("|"):
            key = modifier.translate(_ASCII_LOWER)
            if key == "raw":
                sanitise = False
            elif key == "lowercase":
                value = value.translate(_ASCII_LOWER)
            elif key == "uppercase":
                value = value.translate(_ASCII_UPPER)
            elif key == "strip":
                value = _strip(value, values.delimiter)
            else:
                raise FormatError(f"unknown modifier {modifier!r} in %{{{token}}}")
    if sanitise:
        value = _sanitise(value)
    return _substring(value, begin, end, token)


def _offsets(content: str, token: str) -> tuple[int, int]:
    """``n`` -> (n, n); ``a:b`` -> (a, b), a missing ``a`` is 0, a missing ``b`` the end."""
    first, colon, second = content.partition(":")
    if not colon:
        offset = _offset(first, token)
        return offset, offset
    begin = _offset(first, token) if first else 0
    end = _offset(second, token) if second else EXPAND_BUFFER
    return begin, end


def _offset(text: str, token: str) -> int:
    if _OFFSET.fullmatch(text) is None:
        raise FormatError(f"bad offset {text!r} in %{{{token}}}")
    value = int(text.lstrip(" \t\n\v\f\r"))
    if not -EXPAND_BUFFER <= value <= EXPAND_BUFFER:
        raise FormatError(f"offset {text!r} out of range in %{{{token}}}")
    return value


def _substring(value: str, begin: int, end: int, token: str) -> str:
    """``value[begin..end]`` (end inclusive) with OpenSMTPD's offset rules."""
    length = len(value)
    if length == 0:
        return ""
    if begin >= length:
        raise FormatError(f"offset {begin} past the end of %{{{token}}}")
    end = min(end, length - 1)
    if begin < 0:
        begin += length
    if end < 0:
        end += length - 1
    if begin < 0 or end < 0 or end < begin:
        raise FormatError(f"offsets select nothing in %{{{token}}}")
    piece = value[begin : end + 1]
    if _size(piece) + 1 >= EXPAND_BUFFER:
        raise FormatError(f"%{{{token}}} longer than {EXPAND_BUFFER - 2} bytes")
    return piece


def _lookup(name: str, values: FormatValues, token: str) -> tuple[str, bool]:
    """The value a token name refers to, and whether it is sanitised."""
    entry = _TOKENS.get(name.translate(_ASCII_LOWER))
    if entry is None:
        raise FormatError(f"unknown token %{{{token}}}")
    getter, sanitise = entry
    value = getter(values)
    if value is None:
        raise FormatError("%{mda} is only available in an mda wrapper")
    return value, sanitise


def _joined(address: Address) -> str:
    text = f"{address.local}@{address.domain}"
    return "" if text == "@" else text


_TOKENS: dict[str, tuple[Callable[[FormatValues], str | None], bool]] = {
    "sender": (lambda v: _joined(v.sender), True),
    "sender.user": (lambda v: v.sender.local, True),
    "sender.domain": (lambda v: v.sender.domain, True),
    "rcpt": (lambda v: _joined(v.rcpt), True),
    "rcpt.user": (lambda v: v.rcpt.local, True),
    "rcpt.domain": (lambda v: v.rcpt.domain, True),
    "dest": (lambda v: _joined(v.dest), True),
    "dest.user": (lambda v: v.dest.local, True),
    "dest.domain": (lambda v: v.dest.domain, True),
    "user.username": (lambda v: v.username, True),
    "user.directory": (lambda v: v.directory, False),
    "mbox.from": (lambda v: v.mbox_from, True),
    "mda": (lambda v: v.mda, False),
}


def _strip(value: str, delimiter: str) -> str:
    """``user+tag@domain`` -> ``user@domain``, ``user+tag`` -> ``user``."""
    tag = value.find(delimiter)
    if tag < 0:
        return value
    at = value.find("@", tag)
    return value[:tag] if at < 0 else value[:tag] + value[at:]


def _sanitise(value: str) -> str:
    return "".join(c if c in SAFE_CHARACTERS else _REPLACEMENT for c in value)


def _size(text: str) -> int:
    """Length in bytes, as OpenSMTPD's buffers count it."""
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))
