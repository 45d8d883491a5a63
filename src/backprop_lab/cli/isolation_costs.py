"""What a learner's own process costs, measured side by side in one run on this machine (`python
scripts/isolation_costs.py`): a child's start (forked from the fork server, or a fresh interpreter), and a teacher's
folder of small submissions swept each way, against the same functions run in the lab's process (`impl=functional`,
the notebook's cell the learner's file copies). Ratios name their baseline; the CPU is named; times are wall-clock.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

SWEEP = ["data=synthetic", "timing=fast"]
MODES = {  # how the folder's jobs run: (overrides, environment)
    "in the lab's process (impl=functional)": (["impl=functional"], {}),
    "fork server (the default)": (["impl=user", "impl.code=subs/"], {}),
    "a fresh interpreter each": (["impl=user", "impl.code=subs/"], {"BACKPROP_LAB_CHILD_START": "fresh"}),
}
BASELINE = next(iter(MODES))


def learners_file() -> str:
    """The notebook's functions, as a learner's file holds them (what impl=functional runs in the lab's process)."""
    from backprop_lab.impls import functional
    from backprop_lab.isolation import cell_source

    return cell_source.module_source({n: getattr(functional, n) for n in ("lin_grad", "relu_grad", "mse_grad")})


def child_starts(source: Path, fresh: bool, count: int) -> list[float]:
    """Seconds from asking for a child to its code loaded, `count` times (the fork server's own start left out)."""
    from backprop_lab.isolation import processes
    from backprop_lab.isolation.submission import Submission

    starter = processes.Fresh() if fresh else processes.ForkServer()
    processes._starter = starter
    Submission(str(source), None, 60.0, None).open().close()  # the fork server started and warm
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        Submission(str(source), None, 60.0, None).open().close()
        seconds.append(time.perf_counter() - started)
    starter.close()
    processes._starter = None
    return seconds


def sweep_seconds(launch: Path, mode: str, submissions: int) -> float:
    overrides, env = MODES[mode]
    if mode == BASELINE:  # as many jobs as the folder has files
        overrides = overrides + [f"seed={','.join(map(str, range(submissions)))}"]
    store = f"tracking.uri=sqlite:///{launch / 'mlruns' / f'{len(os.listdir(launch))}.db'}"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "backprop_lab", "-m", *overrides, *SWEEP, store], cwd=launch,
                          env=os.environ | env, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{mode}: the sweep failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def main(argv: Optional[list[str]] = None) -> int:
    from backprop_lab.tracking import environment

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2, help="sweeps of each mode, alternated")
    args = parser.parse_args(argv)
    print(f"CPU: {environment.cpu_model()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="backprop-lab-costs-") as tmp:
        launch = Path(tmp)
        (launch / "subs").mkdir()
        (launch / "mlruns").mkdir()
        for i in range(args.submissions):
            (launch / "subs" / f"learner_{i:02d}.py").write_text(learners_file())
        for fresh in (False, True):
            starts = child_starts(launch / "subs" / "learner_00.py", fresh, 5)
            print(f"a child's start and load ({'fresh interpreter' if fresh else 'fork server'}): median "
                  f"{statistics.median(starts) * 1e3:.0f} ms of {len(starts)}")  # fmt: skip
        walls: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.repeats):
            for mode in MODES:
                walls[mode].append(sweep_seconds(launch, mode, args.submissions))
    base = statistics.median(walls[BASELINE])
    print(f"\na folder of {args.submissions} submissions ({' '.join(SWEEP)}), wall seconds of each sweep:")
    for mode, seconds in walls.items():
        ratio = statistics.median(seconds) / base
        print(f"  {mode:40} {', '.join(f'{s:.1f}' for s in seconds):>20}   {ratio:.2f} × {BASELINE}")
    return 0
