"""A search, not only a grid: Hydra's Optuna sweeper minimizes the config's objective, each trial a child run, the
parent recording the best; a resumed search reuses its trials and ends on the same best."""

from __future__ import annotations

import math
import shlex
import sys
import time

import preloaded
import pytest
import yaml
from helpers import FAST, ROOT, cli, runs_in, split_sweep

from backprop_lab.config import objectives
from backprop_lab.study import theory

pytestmark = pytest.mark.slow
TRIALS = 6
SEARCH = ["-m", "+experiment=shift_search", *FAST, f"hydra.sweeper.n_trials={TRIALS}", "hydra.sweep.dir=sweep"]


def test_the_shift_search_finds_and_records_its_best_trial(tmp_path):
    done = cli(tmp_path, *SEARCH)
    assert done.returncode == 0, done.stderr[-2000:]
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert len(children) == TRIALS and {c.info.status for c in children} == {"FINISHED"}
    for child in children:  # each trial's value is the objective of what it measured
        std = child.data.metrics["act/last_hidden_std"]
        assert child.data.metrics[objectives.METRIC] == pytest.approx(abs(math.log10(std)))
    best = min(children, key=lambda c: c.data.metrics[objectives.METRIC])
    assert parent.data.tags["search.best_run"] == best.info.run_id
    assert parent.data.metrics["search/best_objective"] == best.data.metrics[objectives.METRIC]
    for key in ("model.relu_shift", "init.gain"):
        assert parent.data.params[f"best.{key}"] == best.data.params[key]
    optuna = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert optuna["best_value"] == pytest.approx(best.data.metrics[objectives.METRIC])
    assert {float(best.data.params[k]) for k in optuna["best_params"]} == set(optuna["best_params"].values())

    report = preloaded.run([sys.executable, str(ROOT / "scripts" / "report.py"), "--out", "report"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    assert (tmp_path / "report" / "search_trials.png").stat().st_size > 10_000
    table = (tmp_path / "report" / "report.md").read_text().splitlines()
    header = next(line for line in table if "objective" in line and "| status |" in line)  # every run's table
    assert header.split("|")[1:4] == [" init.gain ", " model.relu_shift ", " status "]
    first = table[table.index(header) + 2].split("|")  # best trial first, its values to 4 digits
    assert float(first[4]) == pytest.approx(best.data.metrics[objectives.METRIC], rel=1e-3)

    again = cli(tmp_path, *SEARCH, "sweep.resume=true", "hydra.sweep.dir=sweep2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("reused run") == TRIALS  # the same seed proposes the same trials, told the same values
    resumed = yaml.safe_load((tmp_path / "sweep2" / "optimization_results.yaml").read_text())
    assert resumed == optuna
    assert len(runs_in(tmp_path / "mlruns")) == TRIALS + 2  # two parents, the trials computed once


def test_the_objective_follows_the_init_gain_as_theory_says(tmp_path):
    """One trial's objective by hand: with no shift, each kaiming layer keeps the std of its input times gain."""
    gain = 1.3
    done = cli(tmp_path, *FAST, "model=deep", "init=kaiming_normal", "model.relu_shift=0", f"init.gain={gain}",
               "objective=last_hidden_unit_std")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = runs_in(tmp_path / "mlruns")
    predicted = theory.forward([784, *[100] * 8, 1], "kaiming_normal", "fan_out", 0.0, 1.0, 0.0, gain)[-2].act_std
    assert run.data.metrics[objectives.METRIC] == pytest.approx(abs(math.log10(predicted)), abs=0.15)


def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path):
    done = cli(tmp_path, "-m", "hydra/sweeper=search", "objective=last_hidden_unit_std", *FAST,
               "init.gain=choice(-1.0,1.0)", "model.relu_shift=interval(0,1)", "hydra.sweeper.n_trials=4")  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"error: 1 of 4 jobs failed (sweep run {parent.info.run_id})"  # the trial with gain -1, seed 0
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    finished = [c for c in children if c.info.status == "FINISHED"]
    best = min(finished, key=lambda c: c.data.metrics[objectives.METRIC])
    assert parent.data.tags["search.best_run"] == best.info.run_id and parent.data.params["best.init.gain"] == "1.0"


def test_a_search_that_maximizes_is_refused(tmp_path):
    done = cli(tmp_path, "-m", "+experiment=shift_search", *FAST, "hydra.sweeper.direction=maximize")
    assert done.returncode == 1 and done.stderr.strip().startswith("error: hydra.sweeper.direction: maximize;")
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("space, expected", [
    ("init.gain=interval(2.0,0.5)",
     "error: init.gain=interval(2.0,0.5): an interval runs from low to high; write interval(0.5, 2.0)"),
    ("init.gain=tag(log,interval(0,2))", "error: init.gain=tag(log,interval(0,2)): a log interval needs low > 0"),
])  # fmt: skip
def test_a_search_space_optuna_would_refuse_is_one_line_before_any_run(tmp_path, space, expected):
    start = time.monotonic()
    done = cli(tmp_path, "-m", "hydra/sweeper=search", "objective=last_hidden_unit_std", *FAST, space)
    assert (done.returncode, done.stderr.strip()) == (1, expected)
    assert time.monotonic() - start < 20 and not (tmp_path / "mlruns").exists()


def test_the_example_in_the_sweepers_config_runs(tmp_path):
    lines = (ROOT / "conf" / "hydra" / "sweeper" / "search.yaml").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if "python scripts/run.py" in line)
    command = []
    for line in lines[first:]:
        command.append(line.lstrip("# ").removesuffix("\\"))
        if not line.endswith("\\"):
            break
    args = shlex.split(" ".join(command))[2:]  # what follows python scripts/run.py
    assert "-m" in args and any("interval" in a for a in args)
    done = cli(tmp_path, *args, *FAST, "hydra.sweeper.n_trials=2")
    assert done.returncode == 0, done.stderr[-2000:]
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert len(children) == 2 and parent.data.params["swept"] == "init.gain"
