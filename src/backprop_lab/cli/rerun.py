"""Rerun a logged run from MLflow alone, and prove the result is the same (`backprop-lab-rerun`).

    python scripts/rerun.py RUN_ID                      # a run, or a sweep's parent (every child is rerun)
    python scripts/rerun.py RUN_ID --tracking-uri URI   # a store elsewhere, or a tracking server

Before anything runs, each run's logged config (config/config.yaml) is bounded (validation.check_logged_bounds) and
checked against the run's `config.sha256` tag, the digest of the params it ran with: a config edited in the store
since, or one without the tag, is refused unless --accept-edited-config says to rerun it as it is now.

A run of the user's own file (`impl.code=my_backward.py`) reruns the file at the logged path, relative to the
current directory, only when it hashes to the run's `impl.code_sha256` tag: a file changed since, or gone, is refused
unless --accept-changed-code says to run it as it is now (tagged `rerun.code_changed`). The copy logged with the run
(`code/<name>`) is code from the store, which is data: it runs only with --run-logged-code, and only when it hashes to
the tag (tagged `rerun.ran_logged_code`).

The rerun logs a new run tagged `rerun_of=RUN_ID` beside the original. Every metric that is not a timing (data,
init and activation statistics at every step, the loss, the gradient differences) must be bit-identical when the
environment is the same; where it differs (versions, device, CPU, threads, commit, data hash), that is said first
and the metrics are judged within --rtol/--atol instead. Timings are reported as ratios, never judged. Exit 0 only
when every run's verdict is the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from rich.console import Console

from backprop_lab import cli, rerun
from backprop_lab.config import validation
from backprop_lab.core.names import CODE_TAG, CONFIG_TAG
from backprop_lab.tracking import store


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id", help="the run to rerun, or a sweep's parent run")
    parser.add_argument("--tracking-uri", help=f"default: {store.DEFAULT_SHOWN} under the current directory")
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance when the environment differs")
    parser.add_argument("--atol", type=float, default=1e-9, help="absolute tolerance when the environment differs")
    parser.add_argument("--accept-edited-config", action="store_true",
                        help=f"rerun a run whose {validation.LOGGED_CONFIG} no longer matches its {CONFIG_TAG} tag "
                        "(edited in the store, or logged without the tag), as it is now")  # fmt: skip
    parser.add_argument("--accept-changed-code", action="store_true",
                        help=f"rerun a run of your own file though the file no longer matches its {CODE_TAG} tag, "
                        "as it is now")  # fmt: skip
    parser.add_argument("--run-logged-code", action="store_true",
                        help=f"run the copy of your file logged with the run, if it matches its tag: "
                             f"{rerun.TRUST_STORE}")  # fmt: skip
    args = parser.parse_args(argv)

    def command() -> int:
        uri, _ = store.resolve_store(args.tracking_uri, Path.cwd())
        console = Console(width=None if sys.stdout.isatty() else 140)
        trust = rerun.CodeTrust(args.accept_changed_code, args.run_logged_code)
        verdicts = rerun.rerun(args.run_id, uri, Path.cwd(), args.rtol, args.atol, console,
                               args.accept_edited_config, trust)  # fmt: skip
        return 0 if all(v.same for v in verdicts) else 1

    return cli.run(command, "the rerun is marked KILLED")
