"""Relaying mail to other hosts over SMTP and LMTP (the ``mta`` subsystem)."""
