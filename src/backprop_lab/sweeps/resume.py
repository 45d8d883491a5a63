"""Sweeps that resume, and sweeps that only say what they would do.

Hydra cannot resume a multirun; a preempted SLURM or Ray sweep would recompute every job. With `sweep.resume=true`
the same multirun command reuses each job whose config (its params, hashed: `config.sha256`) already has a FINISHED
run in the experiment: the run is linked to the new parent (tag `backprop_lab.also_in.<parent>`, which the report
and the parent's counts read) and nothing is computed again; a job with no such run, or only failed ones, runs. A
job of the user's own file (`impl.code=my_backward.py`) is reused only from a run of the file as it is now (its
`impl.code_sha256` tag): a learner's fixed file runs again.
`sweep.dry_run=true` lists what would run and what would be reused, each job to run with an estimate: the median
wall time of earlier FINISHED runs of the same shape (`config.shape`: implementation, model, data size, timing).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Optional

from backprop_lab import tracking
from backprop_lab.config import run_params
from backprop_lab.core.names import (
    ALSO_IN,
    CODE_TAG,
    CONFIG_TAG,
    OWN_PROCESS_TAG,
    SHAPE_TAG,
    USER_IMPL,
    WALL_RUN_S,
    WALL_STARTUP_S,
)
from backprop_lab.tracking import run_names, runs, store, sweep_env

DRY_RUN_FILE = "dry_run.jsonl"  # in the sweep's directory: one line per job, for the summary at the end


def estimate_s(uri: str, experiment: str, shape: str) -> Optional[float]:
    """The median wall time (start-up included) of earlier finished runs of this shape; None: none yet."""
    earlier = runs.finished_with_tag(uri, experiment, SHAPE_TAG, shape)
    walls = [r.metrics[WALL_RUN_S] + r.metrics.get(WALL_STARTUP_S, 0.0)
             for r in earlier if WALL_RUN_S in r.metrics]  # fmt: skip
    return statistics.median(walls) if walls else None


def handle(cfg: Any, parent_run_id: Optional[str], job: int, sweep_dir: Path,
           refused: Optional[Exception] = None) -> Optional[dict[str, float]]:  # fmt: skip
    """For a job of a resumed or dry-run sweep: None when it must run; when it is done without computing, the
    metrics of the run it reuses ({} when only listed), so that a resumed search is told what the trial gave.
    `refused`: what validation found wrong with the job's config, which a dry run reports as the job would."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from backprop_lab.core.code_files import file_path, file_sha256, is_file

    if not (cfg.sweep.resume or cfg.sweep.dry_run):
        return None
    config = OmegaConf.to_container(cfg)
    launch_dir = Path(HydraConfig.get().runtime.cwd)  # not the working dir: hydra.job.chdir=true moves it
    sweep_dir = launch_dir / sweep_dir  # a relative hydra.sweep.dir is the launch dir's too
    uri, _ = store.resolve_store(cfg.tracking.uri, launch_dir)  # checked once, by the sweep's callback
    db = store.sqlite_file(uri)
    fresh = db is not None and not db.exists()  # nothing logged yet; opening it would create it, in a dry run too
    digest = run_params.config_digest(config)
    done = [] if fresh else runs.finished_with_tag(uri, cfg.tracking.experiment, CONFIG_TAG, digest)
    changed = ""
    if done and cfg.impl.name == USER_IMPL:  # judged before a learner's code had a process of its own: judged again
        own = [r for r in done if r.tags.get(OWN_PROCESS_TAG) == "true"]
        changed = "" if own else f"run {done[0].run_id} ran the code in the lab's own process; "
        done = own
    if done and is_file(cfg.impl.code):  # the same config, but the file it names may have changed since
        now = file_sha256(file_path(cfg.impl.code, launch_dir))
        same = [r for r in done if r.tags.get(CODE_TAG) == now]
        changed = "" if same else f"code changed since run {done[0].run_id}; "
        done = same
    name = run_names.run_name(cfg, sweep_env.swept_from_env())
    if cfg.sweep.dry_run:
        if refused is not None:  # what the job would refuse: it would fail, not run
            raise refused
        guess = None if done or fresh else estimate_s(uri, cfg.tracking.experiment, run_params.shape_digest(config))
        record(sweep_dir, {"job": job, "name": name, "reuse": done[0].run_id if done else None, "estimate_s": guess})
        what = f"would reuse run {done[0].run_id}" if done else f"would run ({changed}" + (
            f"about {guess:.1f} s)" if guess is not None else "no earlier run of its shape to estimate from)")
        print(f"job {job} {name}: {what}")
        return {}
    if done and parent_run_id:
        tracking.set_tags({ALSO_IN + parent_run_id: "reused"}, done[0].run_id, uri)
        print(f"job {job} {name}: reused run {done[0].run_id}, FINISHED in an earlier sweep")
        return dict(done[0].metrics)
    return None


def start_dry_run(sweep_dir: Path) -> None:
    """A dry run's list starts empty: an earlier dry run in the same sweep dir is not this one."""
    (sweep_dir / DRY_RUN_FILE).write_text("")


def record(sweep_dir: Path, line: dict) -> None:
    """A job's line of the dry run: appended, so that a launcher's workers, in other processes, add theirs."""
    with open(sweep_dir / DRY_RUN_FILE, "a") as f:
        f.write(json.dumps(line) + "\n")


def failed_jobs(sweep_dir: Path) -> tuple[int, int]:
    """(jobs that failed, jobs) of the dry run."""
    lines = _lines(sweep_dir)
    return sum(1 for line in lines if line.get("failed")), len(lines)


def _lines(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / DRY_RUN_FILE).read_text().splitlines() if line]


def summary(sweep_dir: Path) -> str:
    """The dry run's last line: how many jobs would run, in about how long, how many would be reused, and how many
    failed to say (a failed job would fail in the sweep too)."""
    lines = _lines(sweep_dir)
    failed = [line for line in lines if line.get("failed")]
    to_run = [line for line in lines if not line.get("failed") and not line["reuse"]]
    known = [line["estimate_s"] for line in to_run if line["estimate_s"] is not None]
    total = f"about {sum(known):.0f} s" + (f" (+ {len(to_run) - len(known)} without an estimate)"
                                            if len(known) < len(to_run) else "")  # fmt: skip
    reused = len(lines) - len(to_run) - len(failed)
    return (f"dry run: {len(to_run)} jobs would run, {total}; {reused} would be reused"
            + (f"; {len(failed)} failed" if failed else ""))  # fmt: skip
