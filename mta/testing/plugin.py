"""The pytest plugin of mta (entry point ``pytest11``, name ``mta``).

Fixtures:

- ``mail_server``: a started :class:`~mta.testing.MailServer`, fresh for each
  test and stopped after it;
- ``mail_server_config``: the configuration it runs (smtpd.conf text; None,
  the default: take any mail into the inbox).  A test module or a conftest
  overrides it to run its own configuration.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mta.testing.server import MailServer

__all__ = ["mail_server", "mail_server_config"]


@pytest.fixture
def mail_server_config() -> str | None:
    """The smtpd.conf text ``mail_server`` runs (override it; None: take any mail)."""
    return None


@pytest.fixture
def mail_server(mail_server_config: str | None) -> Iterator[MailServer]:
    """A started in-process SMTP server, its inbox empty (see ``mta.testing``)."""
    with MailServer(mail_server_config) as server:
        yield server
