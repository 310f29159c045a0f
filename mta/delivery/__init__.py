"""Local delivery: the methods of local actions (maildir, mbox, mda, lmtp) and their results."""
