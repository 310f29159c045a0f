"""System users (``auth`` without a table): PAM with service ``smtpd`` as
OpenSMTPD uses on Linux, else a crypt compare against ``/etc/shadow`` when it
is readable.  Everything here blocks: run it in a worker thread."""

from __future__ import annotations

import functools
from typing import Any

from mta.auth.hashes import dummy_hash, verify_password
from mta.auth.result import AuthResult
from mta.log import get_logger, visible

__all__ = ["PAM_SERVICE", "SHADOW", "check_system_user", "pam_usable"]

PAM_SERVICE = "smtpd"
"""OpenSMTPD's ``USE_PAM_SERVICE`` (configure.ac)."""

SHADOW = "/etc/shadow"

log = get_logger("smtp")


def _pam() -> Any:
    """The ``pam`` module, imported at the first use (it loads libpam through
    ctypes: a server without system-user authentication never pays for it)."""
    import pam  # type: ignore[import-untyped]

    return pam


def _pam_tempfail(code: object) -> bool:
    """Whether a PAM code is one OpenSMTPD treats as a temporary failure
    (every other failure is permanent)."""
    pam = _pam()
    return code in (pam.PAM_SYSTEM_ERR, pam.PAM_ABORT, pam.PAM_AUTHINFO_UNAVAIL)


@functools.cache
def pam_usable() -> bool:
    """True when libpam can be loaded."""
    try:
        _pam().PamAuthenticator()
    except (OSError, AttributeError, TypeError):
        return False
    return True


def check_system_user(
    username: str,
    password: str,
    *,
    service: str = PAM_SERVICE,
    use_pam: bool | None = None,
    shadow: str = SHADOW,
) -> AuthResult:
    """Check a system user's password: PAM when usable (``use_pam`` None =
    detect), else the shadow file; ERROR when neither can be used."""
    if use_pam is None:
        use_pam = pam_usable()
    if use_pam:
        return _check_pam(username, password, service)
    return _check_shadow(username, password, shadow)


def _check_pam(username: str, password: str, service: str) -> AuthResult:
    authenticator = _pam().PamAuthenticator()
    try:
        # pam_authenticate then pam_acct_mgmt, no pam_setcred: as OpenSMTPD
        if authenticator.authenticate(
            username, password, service, encoding="utf-8", resetcreds=False
        ):
            return AuthResult.OK
    except ValueError:  # NUL in a name or password
        return AuthResult.FAIL
    except UnicodeEncodeError:
        return AuthResult.FAIL
    if _pam_tempfail(authenticator.code):
        log.warning(
            "smtp authentication PAM error for user %s: %s",
            visible(username),
            visible(str(authenticator.reason)),
        )
        return AuthResult.ERROR
    return AuthResult.FAIL


def _shadow_hash(username: str, shadow: str) -> str | None:
    with open(shadow, encoding="utf-8", errors="surrogateescape") as lines:
        for line in lines:
            name, colon, rest = line.rstrip("\n").partition(":")
            if colon and name == username:
                return rest.split(":", 1)[0]
    return None


def _check_shadow(username: str, password: str, shadow: str) -> AuthResult:
    try:
        stored = _shadow_hash(username, shadow)
    except OSError as exc:
        log.warning(
            "smtp authentication of system users unavailable: PAM cannot be used "
            "and %s cannot be read (%s)",
            shadow,
            exc.strerror or exc,
        )
        return AuthResult.ERROR
    if not stored or stored.startswith(("!", "*")) or ":" in username:
        # unknown user, locked or passwordless account: as slow as a wrong password
        verify_password(dummy_hash(), password)
        return AuthResult.FAIL
    return AuthResult.OK if verify_password(stored, password) else AuthResult.FAIL
