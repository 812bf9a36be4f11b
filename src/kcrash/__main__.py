"""Allow ``python -m kcrash``."""

import sys

from kcrash.cli import main

sys.exit(main())
