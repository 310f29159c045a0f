"""Deciding per recipient: ``match`` rules and recipient expansion
(alias, virtual, userbase, ``.forward``)."""
