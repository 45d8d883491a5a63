"""Run, rerun, compare: identical when nothing changed, and exactly the change when something did."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import preloaded
import pytest
import yaml
from helpers import composed
from mlflow.tracking import MlflowClient

from backprop_lab import rerun
from backprop_lab.cli import USER_ERROR_EXIT
from backprop_lab.cli import rerun as rerun_cli
from backprop_lab.config import run_params
from backprop_lab.core import names
from backprop_lab.study import pipeline
from backprop_lab.tracking import runs

FAST = ["data=synthetic", "data.n_train=200", "data.n_valid=50", "timing.min_run_time=0.01"]


pytestmark = pytest.mark.slow  # each reruns the pipeline


@pytest.fixture
def logged(tmp_path, store):
    result = pipeline.run(composed(*FAST, f"tracking.uri={store}"), ["impl=module"], launch_dir=tmp_path)
    return store, result.run.run_id


def test_rerun_is_identical_and_tagged(logged, tmp_path, capsys):
    store, run_id = logged
    assert rerun_cli.main([run_id, "--tracking-uri", store]) == 0
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
    assert rerun_cli.main([run_id, "--tracking-uri", store]) == 1


def test_a_changed_seed_changes_what_the_seed_drives(logged, tmp_path):
    store, run_id = logged
    client = MlflowClient(store)
    config_yaml = (runs.logged_run(store, run_id).config_yaml or "").replace("seed: 0", "seed: 1")
    client.log_text(run_id, config_yaml, "config/config.yaml")
    (verdict,) = rerun.rerun(run_id, store, tmp_path, 1e-6, 1e-9, console=_quiet(), accept_edited=True)
    said = client.get_run(verdict.rerun_id).data.tags[names.EDITED_TAG]
    assert said.endswith("edited after the run, at seed (0 -> 1)")
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
    client.log_text(broken, text, "config/config.yaml")  # as another version of the project would have logged it:
    client.set_tag(broken, "config.sha256", run_params.config_digest(yaml.safe_load(text)))  # its tag agrees
    cases = {
        "no-such-run": "error: run no-such-run: not found in",
        foreign: f"error: run {foreign} has no config/config.yaml artifact",
        broken: f"error: run {broken}: its config no longer validates (shiny_new_key: unknown key",
    }
    for bad, expected in cases.items():
        capsys.readouterr()
        assert rerun_cli.main([bad, "--tracking-uri", store]) == USER_ERROR_EXIT
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(expected), err


def test_a_config_edited_in_the_store_is_refused_before_anything_runs(logged, capsys):
    store, run_id = logged
    client = MlflowClient(store)
    text = runs.logged_run(store, run_id).config_yaml
    client.log_text(run_id, text.replace("factor: 8.0", "factor: 999"), "config/config.yaml")
    before = len(client.search_runs([client.get_run(run_id).info.experiment_id]))
    assert rerun_cli.main([run_id, "--tracking-uri", store]) == USER_ERROR_EXIT
    (err,) = capsys.readouterr().err.strip().splitlines()
    tag = client.get_run(run_id).data.tags["config.sha256"]
    assert err == (f"error: run {run_id}: its config/config.yaml does not hash to its config.sha256 tag "
                   f"({tag[:12]}...): edited after the run, at check.factor (8.0 -> 999); refused "
                   "(--accept-edited-config reruns it as it is now)")  # fmt: skip
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == before  # nothing ran
    client.delete_tag(run_id, "config.sha256")
    assert rerun_cli.main([run_id, "--tracking-uri", store]) == USER_ERROR_EXIT
    assert "it has no config.sha256 tag to check its config/config.yaml against" in capsys.readouterr().err
    assert rerun_cli.main([run_id, "--tracking-uri", store, "--accept-edited-config"]) == 0  # said, then rerun
    assert "note: run " in capsys.readouterr().out


def test_a_sweep_with_one_edited_child_reruns_none(tmp_path, capsys):
    from helpers import cli

    done = cli(tmp_path, "-m", "impl=functional,nn", *FAST)
    assert done.returncode == 0, done.stderr
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    parent = runs.latest_sweep(uri, "backprop-lab")
    client = MlflowClient(uri)
    last = sorted(runs.child_statuses(uri, parent))[-1]
    client.log_text(last, runs.logged_run(uri, last).config_yaml.replace("seed: 0", "seed: 3"), "config/config.yaml")
    before = len(client.search_runs([client.get_run(parent).info.experiment_id]))
    assert rerun_cli.main([parent, "--tracking-uri", uri]) == USER_ERROR_EXIT
    assert f"error: run {last}: its config/config.yaml does not hash" in capsys.readouterr().err
    assert len(client.search_runs([client.get_run(parent).info.experiment_id])) == before  # not even a parent


@pytest.mark.parametrize(
    "text, error",
    [
        ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
                                                          for a, b in zip("abcdefgh", "bcdefghi")),
         "config/config.yaml: a YAML anchor or alias at line 1"),
        ("[" * 5000 + "]" * 5000, "config/config.yaml: nested deeper than 16 levels at line 1"),
    ],
)  # fmt: skip
def test_a_logged_config_bomb_is_refused_in_a_line(logged, tmp_path, text, error):
    import sys

    from helpers import ROOT

    store, run_id = logged
    client = MlflowClient(store)
    artifacts = client.get_run(run_id).info.artifact_uri.removeprefix("file://")
    (Path(artifacts) / "config" / "config.yaml").write_text(text)
    started = time.time()
    done = preloaded.run([sys.executable, str(ROOT / "scripts" / "rerun.py"), run_id, "--tracking-uri", store],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert time.time() - started < 20
    assert done.returncode == USER_ERROR_EXIT and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"error: run {run_id}: {error}")


def test_unreachable_server_fails_fast(capsys):
    started = time.time()
    assert rerun_cli.main(["abc", "--tracking-uri", "http://127.0.0.1:9"]) == USER_ERROR_EXIT
    assert time.time() - started < 15
    assert capsys.readouterr().err.startswith("error: tracking server http://127.0.0.1:9 does not answer")


def _quiet():
    from rich.console import Console

    return Console(quiet=True)


USER = ["impl=user", "impl.code=my_backward.py"]


@pytest.fixture
def users_run(tmp_path, store, monkeypatch):
    """A run of a learner's own file, my_backward.py in the launch dir, which is the current dir of the rerun."""
    from test_user_code import CORRECT

    (tmp_path / "my_backward.py").write_text(CORRECT)
    monkeypatch.chdir(tmp_path)
    result = pipeline.run(composed(*FAST, *USER, f"tracking.uri={store}"), USER, launch_dir=tmp_path)
    return store, result.run.run_id


def _runs_of(store, run_id) -> list:
    client = MlflowClient(store)
    return client.search_runs([client.get_run(run_id).info.experiment_id])


def _rerun_tags(store, run_id) -> dict:
    client = MlflowClient(store)
    (again,) = client.search_runs([client.get_run(run_id).info.experiment_id], f"tags.rerun_of = '{run_id}'")
    return again.data.tags


def test_a_users_unchanged_file_reruns_identical(users_run, capsys):
    store, run_id = users_run
    assert rerun_cli.main([run_id, "--tracking-uri", store]) == 0
    assert "verdict: IDENTICAL" in capsys.readouterr().out
    tags = _rerun_tags(store, run_id)
    assert names.CODE_CHANGED_TAG not in tags and names.LOGGED_CODE_TAG not in tags


def test_a_users_changed_file_is_refused_unless_accepted(users_run, tmp_path, capsys):
    import hashlib

    store, run_id = users_run
    path = tmp_path / "my_backward.py"
    then = MlflowClient(store).get_run(run_id).data.tags[names.CODE_TAG]
    path.write_text(path.read_text() + "# fixed since\n")
    now = hashlib.sha256(path.read_bytes()).hexdigest()
    before = len(_runs_of(store, run_id))
    assert rerun_cli.main([run_id, "--tracking-uri", store]) == USER_ERROR_EXIT
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err == (f"error: impl.code: my_backward.py has changed since run {run_id} (sha256 {now[:12]}... now, "
                   f"{then[:12]}... then); --accept-changed-code reruns today's file, --run-logged-code runs the copy "
                   "logged with the run: code from the store, run it only if you trust the store")  # fmt: skip
    assert len(_runs_of(store, run_id)) == before  # nothing ran
    assert rerun_cli.main([run_id, "--tracking-uri", store, "--accept-changed-code"]) == 0  # a comment: same numbers
    assert f"note: run {run_id}: my_backward.py has changed since run" in capsys.readouterr().out
    tags = _rerun_tags(store, run_id)
    assert tags[names.CODE_CHANGED_TAG].startswith("my_backward.py has changed") and tags[names.CODE_TAG] == now


SIDE_EFFECT = "\nimport pathlib\npathlib.Path(__file__).with_name('EXECUTED').write_text('store code ran')\n"


def test_the_logged_copy_runs_only_when_asked_and_only_as_logged(users_run, tmp_path, capsys):
    store, run_id = users_run
    client = MlflowClient(store)
    (tmp_path / "my_backward.py").unlink()
    # nothing there to accept
    assert rerun_cli.main([run_id, "--tracking-uri", store, "--accept-changed-code"]) == USER_ERROR_EXIT
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"error: impl.code: my_backward.py is gone from {tmp_path} since run {run_id} (sha256 ")
    assert err.endswith("; --run-logged-code runs the copy logged with the run: code from the store, run it only "
                        "if you trust the store")  # fmt: skip
    assert rerun_cli.main([run_id, "--tracking-uri", store, "--run-logged-code"]) == 0
    assert "verdict: IDENTICAL" in capsys.readouterr().out
    tags = _rerun_tags(store, run_id)
    assert tags[names.LOGGED_CODE_TAG] == f"code/my_backward.py ({tags[names.CODE_TAG]})"

    artifacts = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    logged = artifacts / "code" / "my_backward.py"
    logged.write_text(logged.read_text() + SIDE_EFFECT)  # the store changed: its copy would write a file if run
    before = len(_runs_of(store, run_id))
    for flags in (["--run-logged-code"], ["--run-logged-code", "--accept-changed-code", "--accept-edited-config"]):
        assert rerun_cli.main([run_id, "--tracking-uri", store, *flags]) == USER_ERROR_EXIT
        (err,) = capsys.readouterr().err.strip().splitlines()
        assert err.startswith(f"error: run {run_id}: impl.code: its logged copy code/my_backward.py does not hash to "
                              "its impl.code_sha256 tag (")  # fmt: skip
        assert err.endswith("tagged): changed in the store; refused")
    assert len(_runs_of(store, run_id)) == before and not list(tmp_path.rglob("EXECUTED"))


def test_store_code_never_runs_by_default_even_with_its_tag_rewritten(users_run, tmp_path, capsys):
    import hashlib

    store, run_id = users_run
    client = MlflowClient(store)
    artifacts = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    logged = artifacts / "code" / "my_backward.py"
    logged.write_text(logged.read_text() + SIDE_EFFECT)
    client.set_tag(run_id, names.CODE_TAG, hashlib.sha256(logged.read_bytes()).hexdigest())  # a consistent forgery
    (tmp_path / "my_backward.py").unlink()
    for flags in ([], ["--accept-changed-code"]):
        assert rerun_cli.main([run_id, "--tracking-uri", store, *flags]) == USER_ERROR_EXIT
        assert "my_backward.py is gone from" in capsys.readouterr().err
    assert not list(tmp_path.rglob("EXECUTED")) and not list(artifacts.rglob("EXECUTED"))


def test_a_config_edited_to_run_the_stores_copy_is_refused_though_its_hashes_agree(users_run, tmp_path, capsys):
    """The logged config pointed at the copy in the store, and both unkeyed hashes written anew to agree: the file
    is the store's, so it runs only with --run-logged-code (checked against its tag there)."""
    import hashlib

    store, run_id = users_run
    client = MlflowClient(store)
    artifacts = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    logged = artifacts / "code" / "my_backward.py"
    logged.write_text(logged.read_text() + SIDE_EFFECT)
    config = yaml.safe_load(runs.logged_run(store, run_id).config_yaml)
    config["impl"]["code"] = str(logged.relative_to(tmp_path))
    client.log_text(run_id, yaml.safe_dump(config), "config/config.yaml")
    client.set_tag(run_id, names.CONFIG_TAG, run_params.config_digest(config))
    client.set_tag(run_id, names.CODE_TAG, hashlib.sha256(logged.read_bytes()).hexdigest())
    with sqlite3.connect(tmp_path / "mlruns" / "mlflow.db") as db:  # the param too: the store's own file, edited
        db.execute("UPDATE params SET value = ? WHERE run_uuid = ? AND key = 'impl.code'", (config["impl"]["code"],
                                                                                           run_id))  # fmt: skip
    db.close()
    before = len(_runs_of(store, run_id))
    for flags in ([], ["--accept-changed-code"], ["--accept-edited-config"]):
        assert rerun_cli.main([run_id, "--tracking-uri", store, *flags]) == USER_ERROR_EXIT
        (err,) = capsys.readouterr().err.strip().splitlines()
        assert err.startswith(f"error: impl.code: {config['impl']['code']} is inside the tracking store ("), err
        assert err.endswith("code from the store runs only with --run-logged-code, checked against its tag")
    assert len(_runs_of(store, run_id)) == before and not list(tmp_path.rglob("EXECUTED"))


def test_a_sweep_of_a_users_file_changed_since_reruns_no_child(tmp_path, capsys, monkeypatch):
    from helpers import cli
    from test_user_code import CORRECT

    (tmp_path / "my_backward.py").write_text(CORRECT)
    done = cli(tmp_path, "-m", *USER, "seed=0,1", *FAST)
    assert done.returncode == 0, done.stderr
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    parent = runs.latest_sweep(uri, "backprop-lab")
    (tmp_path / "my_backward.py").write_text(CORRECT + "# fixed since\n")
    before = len(_runs_of(uri, parent))
    monkeypatch.chdir(tmp_path)
    assert rerun_cli.main([parent, "--tracking-uri", uri]) == USER_ERROR_EXIT
    (err,) = capsys.readouterr().err.strip().splitlines()
    children = sorted(runs.child_statuses(uri, parent))
    assert err.startswith(f"error: impl.code: my_backward.py has changed since run {children[0]} (sha256 ")
    assert len(_runs_of(uri, parent)) == before  # not even a parent
    verdicts = rerun.rerun(parent, uri, tmp_path, 1e-6, 1e-9, console=_quiet(),
                           trust=rerun.CodeTrust(accept_changed=True))  # fmt: skip
    assert len(verdicts) == 2 and all(v.same for v in verdicts)
