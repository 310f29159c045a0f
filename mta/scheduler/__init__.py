"""When to try each queued envelope (:mod:`mta.scheduler.core`), and the trio
runner that loads the queue, hands envelopes to deliveries and records outcomes."""
