"""`python -m minivln_core` is the same as `minivln`."""

import sys

from minivln_core.cli import main

sys.exit(main())
