"""mta for test suites: an in-process server and the messages it received.

The public names (``MailServer``, ``serve``, the pytest plugin) are built on
:class:`~mta.testing.inbox.Inbox`; see the README, "Using mta in your tests".
"""

from mta.testing.inbox import Inbox, ReceivedMessage

__all__ = ["Inbox", "ReceivedMessage"]
