"""``python -m itrlib.suite.bench``: :func:`itrlib.suite.bench.cli.main`."""

from itrlib.suite.bench.cli import main

raise SystemExit(main())
