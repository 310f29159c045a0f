"""The benchmark harness behind ``scripts/bench``.

It drives Postfix's ``smtp-source`` against ``mta`` and against an aiosmtpd
peer that writes each message durably into a Maildir, then measures both
servers' resident memory with many idle sessions open.  Run it with
``scripts/bench``; ``python -m benchlib --help`` lists the options.
"""
