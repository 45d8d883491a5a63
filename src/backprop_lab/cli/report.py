"""`backprop-lab-report` (scripts/report.py): the sweep report's command line; what it writes is report/'s."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from backprop_lab import cli, report
from backprop_lab.tracking import store


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.ArgumentParser(description=report.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("run_id", nargs="?", help="a sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--experiment", help="report every job run of this experiment instead of one sweep")
    parser.add_argument("--tracking-uri", help=f"default: {store.DEFAULT_SHOWN} under the current directory")
    parser.add_argument("--out", type=Path, help="folder for report.md, report.html and the figures")
    args = parser.parse_args(argv)
    # the report starts no run: an interruption leaves only what it wrote so far
    unfinished = "the report is not finished; what it wrote or logged so far may be partial"
    return cli.run(lambda: report.report(args), unfinished)
