"""Allow ``python -m kcrash.cli``."""

import sys

from kcrash.cli import main

sys.exit(main())
