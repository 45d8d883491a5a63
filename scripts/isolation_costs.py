"""What a learner's own process costs, side by side: `python scripts/isolation_costs.py [--submissions 30]`."""

import sys

from backprop_lab.cli.isolation_costs import main

if __name__ == "__main__":
    sys.exit(main())
