"""Local submission: what ``mta-sendmail`` needs to hand a message to the daemon.

Reading and preparing the message (:mod:`.scan`, :mod:`.reader`, :mod:`.compose`),
addresses from arguments and headers (:mod:`.addresses`), the SMTP client
dialogue over the local socket (:mod:`.smtp`, :mod:`.submit`), and the offline
drop used while the daemon is down (:mod:`.offline`).
"""
