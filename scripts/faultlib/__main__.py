"""``python -m faultlib``: run the fault campaign (see :mod:`faultlib.main`)."""

from faultlib.main import main

raise SystemExit(main())
