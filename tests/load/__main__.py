"""`python -m tests.load`: the load driver's command line (see tests/load/driver.py)."""

from tests.load.driver import main

raise SystemExit(main())
