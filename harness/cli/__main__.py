"""`python -m harness.cli ...` is `gem-hil ...`."""

import sys

from harness.cli import main

sys.exit(main())
