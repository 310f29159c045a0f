"""``python -m mta``: the same as the ``mta`` command."""

from mta.cli.main import main

raise SystemExit(main())
