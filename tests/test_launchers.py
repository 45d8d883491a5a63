"""Launchers past one machine: SLURM (hydra-submitit-launcher) composed and validated, and run for real through
submitit's local executor, which runs the same jobs as local processes."""

from __future__ import annotations

import pytest
from helpers import composed, require
from omegaconf.errors import ValidationError

SLURM_TARGET = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def hydra_node(*overrides):
    from helpers import CONF
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True).hydra


def test_slurm_launcher_config_composes_and_validates():
    launcher = hydra_node("hydra/launcher=slurm", "hydra.launcher.partition=gpu").launcher
    assert launcher._target_ == SLURM_TARGET
    assert (launcher.partition, launcher.timeout_min, launcher.cpus_per_task, launcher.array_parallelism) == (
        "gpu", 30, 2, 16,
    )  # fmt: skip
    assert any("BACKPROP_LAB_SERVER_WAIT_S" in line for line in launcher.setup)


def test_slurm_launcher_rejects_a_wrong_type():
    from hydra.errors import ConfigCompositionException

    with pytest.raises((ValidationError, ConfigCompositionException)):
        hydra_node("hydra/launcher=slurm", "hydra.launcher.timeout_min=soon")


def test_slurm_sweep_with_a_remote_store_validates():
    cfg = composed("tracking.uri=http://tracking.example:5000")
    assert cfg.tracking.uri.startswith("http://")


@pytest.mark.slow
def test_submitit_local_executor_runs_the_sweep(tmp_path):
    from helpers import FAST, cli, runs_in, split_sweep

    done = cli(tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "impl=functional,nn",
               *FAST)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED"]
    assert parent.data.metrics["sweep/jobs_finished"] == 2


@pytest.mark.slow
def test_ray_launcher_against_a_local_ray_instance(tmp_path):
    import importlib.util

    require(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None, "hydra-ray-launcher",
            "pip install -e '.[ray]'")  # fmt: skip
    from helpers import FAST, cli, runs_in, split_sweep

    done = cli(tmp_path, "-m", "hydra/launcher=ray_local", "impl=functional,nn", *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED"]
    assert parent.data.metrics["sweep/jobs_finished"] == 2
