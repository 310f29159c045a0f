"""``python -m benchlib``: run the benchmark (see :mod:`benchlib.main`)."""

from benchlib.main import main

raise SystemExit(main())
