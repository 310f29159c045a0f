"""The outcome of checking a user's credentials."""

from __future__ import annotations

import enum

__all__ = ["AuthResult"]


class AuthResult(enum.Enum):
    """OK: authenticated.  FAIL: wrong user or password (``535``).  ERROR: the
    check itself failed, e.g. a table lookup error (``421 4.3.0 Temporary failure``)."""

    OK = "ok"
    FAIL = "fail"
    ERROR = "error"
