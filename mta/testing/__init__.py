"""mta for test suites: an in-process server and the messages it received.

``MailServer`` (a context manager on a background thread), ``serve`` (the
same server in a trio test), the inbox they fill, and the pytest plugin
(:mod:`mta.testing.plugin`, fixture ``mail_server``); see the README, "Using
mta in your tests".
"""

from mta.testing.inbox import Inbox, ReceivedMessage
from mta.testing.server import MailServer, serve

__all__ = ["Inbox", "MailServer", "ReceivedMessage", "serve"]
