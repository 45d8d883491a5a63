"""The benchmark: `python scripts/bench.py [group=option ...] [--min-run-time S] [--sweep] [--no-log]` (see --help)."""

import sys

from backprop_lab.cli.bench_cli import main

if __name__ == "__main__":
    sys.exit(main())
