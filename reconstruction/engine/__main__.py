"""`python -m reconstruction.engine …`: see cli.py."""

import sys

from reconstruction.engine.cli import main

sys.exit(main())
