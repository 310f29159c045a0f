"""RFC 3463 enhanced status codes (``class.subject.detail``) as one value.

:class:`StatusCode` holds the three numbers as they are: ``5.1.10`` (RFC 7505
Null MX) or a remote server's ``5.7.350`` are carried from where they are made
(a route failure, a remote reply) to the spooled envelope, the bounce's
``Status:`` field and ``mtactl show envelope`` without change.  The grammar
(RFC 3463 section 2, RFC 2034 section 4): the class is ``2``, ``4`` or ``5``,
the subject and the detail 1 to 3 digits each.  :meth:`StatusCode.parse`
accepts exactly that and returns None for anything else, so text from a remote
server can never make an invalid code; the constructor refuses out-of-range
numbers.
"""

from __future__ import annotations

import re

import attrs

__all__ = ["CLASSES", "PART_MAX", "StatusCode"]

CLASSES = (2, 4, 5)
"""Success, persistent transient failure, permanent failure."""

PART_MAX = 999
"""The largest subject or detail (three digits)."""

_SYNTAX = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})\Z", re.ASCII)


def _check_class(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value not in CLASSES:
        raise ValueError(f"status code class must be 2, 4 or 5, not {value!r}")


def _check_part(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 <= value <= PART_MAX:
        raise ValueError(f"status code {attribute.name} must be 0 to {PART_MAX}, not {value!r}")


@attrs.frozen
class StatusCode:
    """``class_.subject.detail``; ``str()`` gives the text form (``5.1.10``)."""

    class_: int = attrs.field(validator=_check_class)
    subject: int = attrs.field(validator=_check_part)
    detail: int = attrs.field(validator=_check_part)

    @classmethod
    def parse(cls, text: str) -> StatusCode | None:
        """The code ``text`` spells (``"5.7.26"``), or None when it is not one
        (no surrounding space, ASCII digits only; leading zeros are read as
        numbers: ``5.01.1`` is ``5.1.1``)."""
        found = _SYNTAX.match(text)
        if found is None:
            return None
        return cls(int(found.group(1)), int(found.group(2)), int(found.group(3)))

    def with_class(self, class_: int) -> StatusCode:
        """The same subject and detail under another class (``5.1.1`` -> ``4.1.1``)."""
        return self if class_ == self.class_ else StatusCode(class_, self.subject, self.detail)

    def __str__(self) -> str:
        return f"{self.class_}.{self.subject}.{self.detail}"
