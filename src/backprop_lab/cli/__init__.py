"""One way to fail, for every command (run, report, rerun, bench).

- A user error (UserError, and argparse's usage errors) is one line on stderr, `error: ...`, and exit status
  USER_ERROR_EXIT, whichever command it came from.
- Ctrl-C or SIGTERM ends the runs the command started KILLED and says so in one line, exit status INTERRUPTED_EXIT.
- Anything else is a bug of the project: the runs end FAILED, then its traceback.

What the command started is ended honestly before the process leaves, and the line says so only when that is true.
MLflow and the sweep's module are imported only to end runs, so a command's start-up pays for neither.

The top floor but for api.py: every command's main (entry.py: the study, hydra.main; report.py, rerun.py,
bench_cli.py, isolation_costs.py) and, here, the one way to fail.

Add a command here as a main that parses its arguments and calls the floor below; no work of its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from backprop_lab.core import redaction, stop, streams
from backprop_lab.core.errors import USER_ERROR_EXIT, UserError, error_line

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def usage_error(message: str) -> NoReturn:
    """argparse's usage error as any other bad input: one line, not the usage block and status 2."""
    print(error_line(message), file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        usage_error(message)


def end_runs(status: str) -> list[str]:
    """End, with `status`, what this process started and did not end: a sweep's parent (and its children still
    RUNNING) first, then any other run. Returns a line per run that could not be ended."""
    from backprop_lab.sweeps import sweep  # neither imports MLflow until it is used
    from backprop_lab.tracking import lifecycle

    problems = sweep.abort_active(status)
    return problems + [f"run {run_id}: {why}" for run_id, why in lifecycle.end_open_runs(status) if why]


def end_runs_saying_so(status: str) -> bool:
    """End the runs (end_runs), a line on stderr for each that could not be; True when every one was ended."""
    problems = end_runs(status)
    for problem in problems:
        print(f"could not end {problem}; the next run, report or rerun in this store on this host ends it",
              file=sys.stderr)  # fmt: skip
    return not problems


def prepare_process() -> None:
    """What every command does first: secrets kept out of its output, any stdout encoding tolerated, and Ctrl-C
    and SIGTERM turned into KeyboardInterrupt, so that the runs end KILLED."""
    redaction.protect_process()
    streams.tolerate_any_encoding()
    stop.install()


def run(command: Callable[[], int], interrupted: str) -> int:
    """The command's exit status: its own (a verdict), or the user error's, or the interruption's, each said in one
    line once the runs it started are ended. `interrupted` says what an interruption leaves, after `interrupted: `."""
    prepare_process()
    try:
        return command()
    except UserError as e:
        end_runs_saying_so("FAILED")
        stop.ignore_further()
        print(error_line(e), file=sys.stderr)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        ended = end_runs_saying_so("KILLED")
        stop.ignore_further()
        print(f"interrupted: {interrupted if ended else 'some runs could not be ended (see above)'}", file=sys.stderr)
        return INTERRUPTED_EXIT
    except BaseException:  # a line already said (SystemExit: a sweep's verdict), or a bug: its traceback, after
        end_runs_saying_so("FAILED")
        raise
