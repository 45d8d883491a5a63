"""`backprop-lab-report` (scripts/report.py): the sweep report's command line; what it writes is report/'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from rich.console import Console

from backprop_lab import cli, tracking
from backprop_lab import report as report_package
from backprop_lab.core import tables
from backprop_lab.core.errors import UserError
from backprop_lab.report import note_lines, report_tables, to_rows
from backprop_lab.tracking import lifecycle, runs, store


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.ArgumentParser(description=report_package.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("run_id", nargs="?", help="a sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--experiment", help="report every job run of this experiment instead of one sweep")
    parser.add_argument("--tracking-uri", help=f"default: {store.DEFAULT_SHOWN} under the current directory")
    parser.add_argument("--out", type=Path, help="folder for report.md, report.html and the figures")
    args = parser.parse_args(argv)
    # the report starts no run: an interruption leaves only what it wrote so far
    unfinished = "the report is not finished; what it wrote or logged so far may be partial"
    return cli.run(lambda: report(args), unfinished)


def report(args: argparse.Namespace) -> int:
    """The report of a sweep (or an experiment): its tables printed, its files written and logged on the parent."""
    from backprop_lab.config import TrackingConfig

    uri, _ = store.resolve_store(args.tracking_uri, Path.cwd())
    console = Console(width=None if sys.stdout.isatty() else 140)
    if args.out and args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out: {args.out} is a file; give a folder for report.md, report.html and the figures")
    store.check_store(uri, existing=True)  # a reader: a mistyped path creates no store
    experiment = args.experiment or TrackingConfig.experiment
    for run_id in lifecycle.end_dead_runs_in(uri, experiment):
        console.print(f"note: run {run_id} was left RUNNING by a process that died; it is now marked KILLED")

    parent_id = None
    if args.experiment and not args.run_id:
        records = runs.experiment_records(uri, args.experiment)
        title = f"experiment {args.experiment}"
    else:
        parent_id = args.run_id or runs.latest_sweep(uri, experiment)
        if parent_id is None:
            raise UserError("no sweep found in the store; run one with scripts/run.py -m ..., or name a run id")
        parent, records = runs.sweep_records(uri, parent_id)
        # its name, as the UI shows it: a teacher's folder, not the file list Hydra expanded it into
        title = f"sweep {parent_id}: {parent.name or parent.tags.get('overrides', '')}"
        if parent.status != "FINISHED":
            why = parent.tags.get("error", "")
            console.print(f"note: this sweep ended {parent.status}" + (f" ({why})" if why else "") +
                          "; the rows below are what its jobs logged before")  # fmt: skip
            title += f" [{parent.status}]"
    if not records:
        raise UserError(f"no job runs found for {title}")

    rows = to_rows(records, parent_id)
    for shown in report_tables(rows, title):
        console.print(tables.to_rich(shown))
    for line in note_lines(rows):
        console.print(line)
    out_dir = args.out or Path("reports") / (parent_id or args.experiment)
    from backprop_lab.report import pages

    written = pages.write(rows, title, out_dir)
    if parent_id:
        tracking.log_artifacts(out_dir, "report", parent_id, uri)
    console.print(f"wrote {', '.join(str(p) for p in written)}" + (f"; logged on run {parent_id}" if parent_id else ""))
    return 0
