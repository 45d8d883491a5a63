"""The whole job on small synthetic data, into a temporary MLflow store: exactly one run, the contract's metrics,
params and artifacts, reproducible from the seed, and an honest status when something fails."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from helpers import FAST, composed
from mlflow.tracking import MlflowClient

from backprop_lab import impls
from backprop_lab.core.names import CONTRACT
from backprop_lab.impls import timing
from backprop_lab.impls.common import backward_order
from backprop_lab.study import pipeline


def run(store, tmp_path, *overrides):
    cfg = composed(*FAST, f"tracking.uri={store}", *overrides)
    return pipeline.run(cfg, list(overrides), launch_dir=tmp_path)


def artifacts(client, run_id, path=None):
    out = []
    for f in client.list_artifacts(run_id, path):
        out += artifacts(client, run_id, f.path) if f.is_dir else [f.path]
    return out


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    result = run(store, tmp)
    return store, result, MlflowClient(store)


def test_exactly_one_finished_run(one_run):
    store, result, client = one_run
    runs = client.search_runs([result.run.experiment_id])
    assert [r.info.run_id for r in runs] == [result.run.run_id]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].info.run_name == "module·kaiming_uniform·synthetic·n_train=128"  # FAST reads 128 rows, not 1,000


def test_contract_metrics_and_verdict(one_run):
    _, result, client = one_run
    metrics = client.get_run(result.run.run_id).data.metrics
    missing = [m for m in CONTRACT if m not in metrics]
    assert not missing
    assert metrics["grad/all_close"] == 1.0 and metrics["data/normalized_ok"] == 1.0
    assert abs(metrics["data/train_mean"]) < 1e-3 and abs(metrics["data/train_std"] - 1) < 1e-3


def test_activation_stats_logged_by_layer(one_run):
    _, result, client = one_run
    history = client.get_metric_history(result.run.run_id, "act/std")
    assert sorted(m.step for m in history) == [1, 2]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([s.std for s in result.layers])


def test_params_tags_and_artifacts(one_run):
    _, result, client = one_run
    run_ = client.get_run(result.run.run_id)
    params = run_.data.params
    assert params["impl.name"] == "module" and params["model.widths"] == "784-80-1" and params["seed"] == "0"
    tags = run_.data.tags
    assert {"git.commit", "git.dirty", "overrides", "command", "version.torch", "version.mlflow",
            "version.numpy", "version.hydra-core", "version.omegaconf", "version.python"} <= set(tags)  # fmt: skip
    assert "seed" not in tags and "device" not in tags  # one place each: the params
    assert params["seed"] == "0" and params["device"] == "cpu" and not any(k.startswith("tracking.") for k in params)
    assert tags["torch.deterministic_algorithms"] in ("true", "false")
    assert tags["mlflow.note.content"].startswith(run_.info.run_name + ": gradients ok at every node")
    assert int(tags["torch.threads"]) >= 1 and tags["data.sha256"].startswith("none")
    files = set(artifacts(client, result.run.run_id))
    assert {
        "config/config.yaml",
        "config/overrides.json",
        "device.json",
        "grad_check.json",
        "figures/activations.png",
        "figures/grad_diff.png",
    } <= files
    table = json.loads(Path(client.download_artifacts(result.run.run_id, "grad_check.json")).read_text())
    # every node in backward order, as MLflow's table format; module computes x.g, as the notebook did
    nodes = [row[table["columns"].index("node")] for row in table["data"]]
    assert nodes == ["lin2", "w2", "b2", "act1", "lin1", "w1", "b1", "x"]
    assert table["columns"][:2] == ["node", "verdict"]  # what a reader looks for first
    errors = [row[table["columns"].index("error")] for row in table["data"]]
    assert errors == [c.error for c in result.checks]  # numbers, each float whole (MLflow's writer keeps ten decimals)
    assert run_.data.tags["first_divergent"] == "none"
    device = json.loads(Path(client.download_artifacts(result.run.run_id, "device.json")).read_text())
    assert {"versions", "cpu_model", "cpu_cores", "torch_threads", "blas"} <= set(device)


def test_the_input_grad_param_is_what_the_run_computed(one_run):
    """module, one of the notebook's four, computes x.g whatever `impl.compute_input_grad` (false here) says."""
    _, result, client = one_run
    assert result.timing.reference_input_grad and "x" in [c.node for c in result.checks]
    assert client.get_run(result.run.run_id).data.params["impl.compute_input_grad"] == "true"


def test_both_ratios_are_logged_with_their_baselines_and_the_load(one_run):
    _, result, client = one_run
    data = client.get_run(result.run.run_id).data
    assert data.metrics[timing.COMMON_RATIO_METRIC] > 0 and data.metrics[timing.LOAD_METRIC] >= 0
    assert data.metrics[timing.RATIO_METRIC] == result.timing.backward_vs_autograd
    assert data.tags[timing.NOISY_TAG] == (",".join(result.timing.noisy()) or "none")
    note = data.tags["mlflow.note.content"]
    assert note.endswith(result.timing.ratio_line()) and "× autograd (+x.g)" in note and "(no x.g)" in note
@pytest.mark.slow  # a store of its own: a few seconds each
def test_same_seed_same_results(tmp_path, store):
    a, b = run(store, tmp_path, "impl=functional"), run(store, tmp_path, "impl=functional")
    c = run(store, tmp_path, "impl=functional", "seed=1")
    client = MlflowClient(store)
    ma, mb, mc = (client.get_run(r.run.run_id).data.metrics for r in (a, b, c))
    deterministic = [k for k in ma if not k.startswith(("time/", "wall/", "mem/"))]
    assert {k: ma[k] for k in deterministic} == {k: mb[k] for k in deterministic}
    w_std = [[m.value for m in client.get_metric_history(r.run.run_id, "init/w_std")] for r in (a, c)]
    assert w_std[0] != w_std[1]


@pytest.mark.slow  # a store of its own: a few seconds each
@pytest.mark.parametrize("impl", impls.built_in())
def test_every_implementation_agrees_with_input_grad(tmp_path, store, impl):
    result = run(
        store, tmp_path, f"impl={impl}", "impl.compute_input_grad=true", "model=deep", "model.widths=[784,16,16,16,1]"
    )
    assert result.all_close and result.first_divergent == "none"
    assert [c.node for c in result.checks] == backward_order(4, input_grad=True)


@pytest.mark.slow  # a store of its own: a few seconds each
@pytest.mark.parametrize("asked", [False, True])
def test_an_implementation_that_may_skip_x_g_logs_what_was_asked(tmp_path, store, asked):
    result = run(store, tmp_path, "impl=lean", f"impl.compute_input_grad={str(asked).lower()}")
    data = MlflowClient(store).get_run(result.run.run_id).data
    assert data.params["impl.compute_input_grad"] == str(asked).lower() and result.timing.reference_input_grad is asked
    if not asked:  # its own baseline is the common one: one measurement, one ratio
        assert data.metrics[timing.COMMON_RATIO_METRIC] == data.metrics[timing.RATIO_METRIC]
        assert "(+x.g)" not in data.tags["mlflow.note.content"]


@pytest.mark.slow  # a store of its own: a few seconds each
def test_a_noisy_timing_is_tagged_and_its_ratio_not_called_firm(tmp_path, store, monkeypatch):
    def noisy(net, reference, x, y, min_run_time, threads, reference_input_grad, common=None):
        busy = timing.Timed(38.3, 65.7, 10)  # the notebook's forward, seen in issue 21
        return timing.Timing(busy, busy, timing.Timed(30.0, 1.0, 10), threads, 1.28, reference_input_grad, 3.19, 4.5)

    monkeypatch.setattr(timing, "time_passes", noisy)
    result = run(store, tmp_path)
    data = MlflowClient(store).get_run(result.run.run_id).data
    assert data.tags[timing.NOISY_TAG] == "forward,backward" and data.metrics[timing.LOAD_METRIC] == 4.5
    assert "NOT firm: timing noisy (forward: IQR 65.7 ms > 0.5 × median 38.3 ms" in data.tags["mlflow.note.content"]
    assert "load average 4.50" in data.tags["mlflow.note.content"]


@pytest.mark.slow  # a store of its own: a few seconds each
def test_failure_marks_run_failed_and_keeps_what_was_logged(tmp_path, store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("timer broke")

    monkeypatch.setattr(timing, "time_passes", broken)
    with pytest.raises(RuntimeError, match="timer broke"):
        run(store, tmp_path)
    client = MlflowClient(store)
    (failed,) = client.search_runs([client.get_experiment_by_name("backprop-lab").experiment_id])
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error"] == "RuntimeError: timer broke"
    assert failed.data.metrics["grad/all_close"] == 1.0  # logged before the failure, kept
    assert mlflow.active_run() is None
@pytest.mark.slow  # a store of its own: a few seconds each
def test_interrupt_marks_run_killed(tmp_path, store, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(timing, "time_passes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(store, tmp_path)
    client = MlflowClient(store)
    (killed,) = client.search_runs([client.get_experiment_by_name("backprop-lab").experiment_id])
    assert killed.info.status == "KILLED"
@pytest.mark.slow  # a store of its own: a few seconds each
def test_credentials_never_reach_params_tags_artifacts_or_console(tmp_path, store, capsys, monkeypatch):
    """A password in a URI on the command line and in the overrides: logged everywhere redacted. (The run's own
    store must work, so the secret rides in the command line and the overrides, both logged.)"""
    import sys

    from backprop_lab.core import redaction

    password = "s3" + "cr3t-pw"  # built here, so the git diff logged with a dirty tree does not hold it either
    secret = f"postgresql://alice:{password}@db.example:5432/mlflow"
    monkeypatch.setattr(sys, "argv", ["run.py", f"tracking.uri={secret}"])
    cfg = composed(*FAST, f"tracking.uri={store}")
    result = pipeline.run(cfg, [f"tracking.uri={secret}"], launch_dir=tmp_path)
    client = MlflowClient(store)
    run_ = client.get_run(result.run.run_id)
    logged = json.dumps(run_.data.params) + json.dumps(run_.data.tags)
    for path in artifacts(client, result.run.run_id):
        if path.endswith((".json", ".yaml", ".patch")):
            logged += Path(client.download_artifacts(result.run.run_id, path)).read_text()
    assert password not in logged and "alice:***@db.example" in run_.data.tags["overrides"]
    assert redaction.redact(secret) == "postgresql://alice:***@db.example:5432/mlflow"
    assert redaction.redact("https://ghp_token123@host/x") == "https://***@host/x"
    assert password not in capsys.readouterr().out
@pytest.mark.slow  # a store of its own: a few seconds each
def test_exploding_statistics_are_a_result_not_a_crash(tmp_path, store):
    widths = "[" + ",".join(["784"] + ["100"] * 25 + ["1"]) + "]"
    result = run(store, tmp_path, "init=normal", "model=deep", f"model.widths={widths}")
    run_ = MlflowClient(store).get_run(result.run.run_id)
    assert run_.info.status == "FINISHED"
    assert run_.data.metrics["act/all_finite"] == 0.0 and "non_finite" in run_.data.tags
    assert run_.data.metrics["act/std"] > 1e15  # the last layer's std, exploded
@pytest.mark.slow  # a store of its own: a few seconds each
def test_a_1001_layer_model_logs_every_layer_in_batches(tmp_path, store, monkeypatch):
    """Logging grows gently with depth: metrics go in batches (log_batch), the difference figure stays one panel."""
    from mlflow.tracking import MlflowClient as Client

    calls = []
    original = Client.log_batch
    monkeypatch.setattr(Client, "log_batch", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    widths = "[" + ",".join(["784"] + ["16"] * 1000 + ["1"]) + "]"
    result = run(store, tmp_path, "model=deep", f"model.widths={widths}", "data.n_train=64", "init=kaiming_normal")
    history = MlflowClient(store).get_metric_history(result.run.run_id, "act/std")
    assert sorted(m.step for m in history) == list(range(1, 1002))
    # about 4,000 act/* values and 4,000 init/* and grad/* values in 17 batches; the rest a few writes per stage (its
    # params, metrics, tags), whatever the depth
    assert len(calls) < 32


@pytest.mark.slow  # a store of its own: a few seconds each
@pytest.mark.parametrize("mode, cap, logged", [("patch", 10**6, True), ("hash", 10**6, False), ("patch", 10, False)])
def test_the_git_diff_is_logged_as_asked(tmp_path, store, monkeypatch, mode, cap, logged):
    from backprop_lab.tracking import environment

    diff = "diff --git a/x b/x\n+url = postgresql://u:hunter2-pw@db/m\n"
    monkeypatch.setattr(environment, "git_state", lambda: {"git.commit": "abc", "git.dirty": "true"})
    monkeypatch.setattr(environment, "git_diff", lambda: diff)
    result = run(store, tmp_path, f"tracking.git_diff={mode}", f"tracking.git_diff_max_bytes={cap}")
    client = MlflowClient(store)
    tags = client.get_run(result.run.run_id).data.tags
    files = set(artifacts(client, result.run.run_id))
    assert ("git/diff.patch" in files) == logged and tags["git.diff_bytes"] == str(len(diff))
    assert len(tags["git.diff_sha256"]) == 64
    if logged:
        patch = Path(client.download_artifacts(result.run.run_id, "git/diff.patch")).read_text()
        assert "hunter2-pw" not in patch and "u:***@db" in patch
    else:
        assert tags["git.diff"].startswith("hash only")


@pytest.mark.slow  # a store of its own: a few seconds
def test_a_run_whose_precision_cannot_tell_says_inconclusive_everywhere(tmp_path, store):
    """The issue's case on synthetic data: a gradient stopped at layer 1, at a gain whose gradients underflow
    there: never "ok", all_close 0, no first divergent node, and the one line that says what would decide."""
    result = run(store, tmp_path, "model=deep", "init.gain=3e-6", "impl=functional", "bug=layer_passes_zero")
    assert not result.all_close and result.first_divergent == "none"
    assert {c.node: c.verdict for c in result.checks}["w1"] == "inconclusive"
    assert result.verdict.startswith("gradients INCONCLUSIVE at ") and "dtype=float64" in result.verdict
    logged = MlflowClient(store).get_run(result.run.run_id).data
    assert logged.metrics["grad/all_close"] == 0.0 and logged.metrics["grad/inconclusive_nodes"] >= 4
    assert logged.tags["grad.verdict"] == "inconclusive" and logged.tags["first_divergent"] == "none"
    assert logged.tags["grad.inconclusive"] in logged.tags["mlflow.note.content"]


def test_a_partial_backwards_row_names_the_step_that_left_a_gradient_unset(tmp_path):
    """The report's diagnosis column (and the UI's tag) says, for a partial backward, which of the lesson's steps
    left which gradient unset, where a mistake's words would stand."""
    from test_user_code import CORRECT

    (tmp_path / "mine.py").write_text(CORRECT.replace("    inp.g = out.g @ w.t()\n", ""))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run(store, tmp_path, "impl=user", "impl.code=mine.py")
    tags = MlflowClient(store).get_run(result.run.run_id).data.tags
    assert tags["grad.verdict"] == "partial"
    assert tags["grad.mistake_words"].startswith("PARTIAL: lin_grad set w.g and b.g but not inp.g: the chain stops at")
