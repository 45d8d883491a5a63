"""Run, rerun, compare: identical when nothing changed, and exactly the change when something did."""

from __future__ import annotations

import time

import pytest
from helpers import composed
from mlflow.tracking import MlflowClient

from backprop_lab import pipeline, rerun, runs

FAST = ["data=synthetic", "data.n_train=200", "data.n_valid=50", "timing.min_run_time=0.01"]


pytestmark = pytest.mark.slow  # each reruns the pipeline


@pytest.fixture
def logged(tmp_path, store):
    result = pipeline.run(composed(*FAST, f"tracking.uri={store}"), ["impl=module"], launch_dir=tmp_path)
    return store, result.run.run_id


def test_rerun_is_identical_and_tagged(logged, tmp_path, capsys):
    store, run_id = logged
    assert rerun.main([run_id, "--tracking-uri", store]) == 0
    out = capsys.readouterr().out
    assert "verdict: IDENTICAL" in out
    client = MlflowClient(store)
    (again,) = client.search_runs([client.get_run(run_id).info.experiment_id], f"tags.rerun_of = '{run_id}'")
    assert again.info.status == "FINISHED" and again.data.tags["overrides"] == "impl=module"


def test_a_changed_metric_is_exactly_the_difference(logged, tmp_path):
    store, run_id = logged
    client = MlflowClient(store)
    loss = client.get_run(run_id).data.metrics["loss"]
    client.log_metric(run_id, "loss", loss + 1.0, timestamp=int(time.time() * 1000) + 1000, step=0)
    (verdict,) = rerun.rerun(run_id, store, tmp_path, 1e-6, 1e-9, console=_quiet())
    assert not verdict.environment
    assert [(c.key, c.step, c.original) for c in verdict.differing] == [("loss", 0, loss + 1.0)]
    assert rerun.main([run_id, "--tracking-uri", store]) == 1


def test_a_changed_seed_changes_what_the_seed_drives(logged, tmp_path):
    store, run_id = logged
    client = MlflowClient(store)
    config_yaml = (runs.logged_run(store, run_id).config_yaml or "").replace("seed: 0", "seed: 1")
    client.log_text(run_id, config_yaml, "config/config.yaml")
    (verdict,) = rerun.rerun(run_id, store, tmp_path, 1e-6, 1e-9, console=_quiet())
    changed = {c.key for c in verdict.differing}
    assert {"init/w_mean", "init/w_std", "loss", "data/train_mean_raw"} <= changed  # synthetic data is seeded too
    assert "init/b_mean" not in changed  # biases are zero whatever the seed


def test_environment_differences_are_said_and_judged_with_tolerance(logged, tmp_path):
    store, run_id = logged
    original = runs.logged_run(store, run_id)
    again = runs.logged_run(store, run_id)
    again.record.tags["torch.threads"] = "64"
    again.points[("loss", 0)] = original.points[("loss", 0)] * (1 + 1e-9)
    verdict = rerun.compare(original, again, rtol=1e-6, atol=0)
    assert [e[0] for e in verdict.environment] == ["threads"] and verdict.same
    verdict = rerun.compare(original, again, rtol=1e-12, atol=0)
    assert [c.key for c in verdict.differing] == ["loss"]


def test_rerun_of_a_sweep_reruns_every_child(tmp_path, capsys):
    from helpers import cli

    done = cli(tmp_path, "-m", "impl=functional,nn", *FAST)
    assert done.returncode == 0, done.stderr
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    parent = runs.latest_sweep(uri, "backprop-lab")
    verdicts = rerun.rerun(parent, uri, tmp_path, 1e-6, 1e-9, console=_quiet())
    assert len(verdicts) == 2 and all(v.same for v in verdicts)
    assert {v.original_id for v in verdicts} == set(runs.child_statuses(uri, parent))
    new_parent = runs.latest_sweep(uri, "backprop-lab")
    assert new_parent != parent and set(runs.child_statuses(uri, new_parent).values()) == {"FINISHED"}


def test_bad_inputs_are_one_line_errors(logged, tmp_path, capsys):
    store, run_id = logged
    client = MlflowClient(store)
    foreign = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    client.set_terminated(foreign)
    broken = pipeline.run(composed(*FAST, f"tracking.uri={store}"), [], launch_dir=tmp_path).run.run_id
    text = runs.logged_run(store, broken).config_yaml.replace("seed: 0", "seed: 0\nshiny_new_key: 1")
    client.log_text(broken, text, "config/config.yaml")
    cases = {
        "no-such-run": "error: run no-such-run: not found in",
        foreign: f"error: run {foreign} has no config/config.yaml artifact",
        broken: f"error: run {broken}: its config no longer validates (shiny_new_key: unknown key",
    }
    for bad, expected in cases.items():
        capsys.readouterr()
        assert rerun.main([bad, "--tracking-uri", store]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(expected), err


def test_unreachable_server_fails_fast(capsys):
    started = time.time()
    assert rerun.main(["abc", "--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert time.time() - started < 15
    assert capsys.readouterr().err.startswith("error: tracking server http://127.0.0.1:9 does not answer")


def _quiet():
    from rich.console import Console

    return Console(quiet=True)
