"""Rerun a logged run and compare: `python scripts/rerun.py RUN_ID [--tracking-uri URI]` (see --help)."""

import sys

from backprop_lab.cli.rerun import main

if __name__ == "__main__":
    sys.exit(main())
