"""The system's crypt(3) (libxcrypt) through ctypes, for hash schemes the Python
libraries do not implement (yescrypt ``$y$``, which ``smtpctl encrypt`` and
``passwd`` write on current Linux systems, ``$gy$``, ``$7$``, DES).

``crypt_rn`` is used with a buffer per call, so calls are thread-safe and run
without the GIL.  When the library is missing every call returns None.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["available", "crypt"]

_DATA_SIZE = 32768  # sizeof(struct crypt_data) in libxcrypt


@functools.cache
def _crypt_rn() -> ctypes._NamedFuncPointer | None:
    for name in ("libcrypt.so.1", ctypes.util.find_library("crypt")):
        if not name:
            continue
        try:
            library = ctypes.CDLL(name)
            function = library.crypt_rn
        except (OSError, AttributeError):
            continue
        function.restype = ctypes.c_char_p
        function.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        return function
    return None


def available() -> bool:
    """True when the system crypt library could be loaded."""
    return _crypt_rn() is not None


def crypt(password: bytes, setting: bytes) -> bytes | None:
    """``crypt(password, setting)``: the full hash, or None when the library is
    missing, the setting is not a hash it knows, or the password contains NUL."""
    function = _crypt_rn()
    if function is None or b"\0" in password or b"\0" in setting:
        return None
    data = ctypes.create_string_buffer(_DATA_SIZE)
    result = function(password, setting, data, _DATA_SIZE)
    if not isinstance(result, bytes) or not result or result.startswith(b"*"):
        return None
    return result
