"""The sweep report: `python scripts/report.py [RUN_ID] [--experiment NAME] [--out DIR]` (see --help)."""

import sys

from backprop_lab.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
