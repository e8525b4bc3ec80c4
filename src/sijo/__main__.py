"""`python -m sijo` is the `sijo` command."""

import sys

from sijo.cli import main

sys.exit(main())
