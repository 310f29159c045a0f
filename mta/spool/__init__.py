"""The on-disk queue: messages and envelopes, durable commits, recovery."""
