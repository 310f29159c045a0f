"""Filters (smtpd.conf ``filter``, smtpd-filters(7)): builtin filters evaluated in
the daemon, filter processes spoken to over the filter protocol, and the chains
that mix them, run at each phase of a session."""
