"""The fault campaign behind ``scripts/faults``.

It runs the real daemon (``python -m mta -d``, this repository's code) through
crashes while receiving and while delivering, a connection flood, slow
dribblers, garbage input, a full spool and a damaged spool, measures what
happened to every message a client was told was accepted, and prints one
table of figures, each against the promise it checks.  Run it with
``scripts/faults``; ``python -m faultlib --help`` lists the options.
"""
