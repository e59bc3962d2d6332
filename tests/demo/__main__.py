"""`python -m demo` (with `tests/` on the path; `make demo` runs it so)."""

import sys

from demo import main

sys.exit(main())
