"""The study from Python: `run` validates and logs as the CLI does and ends its run honestly whatever stops it;
`runs_frame` gives one flat row per job run, per-layer metrics as columns; `check` runs a learner's functions as
`impl=user` does a file."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from helpers import FAST, ROOT, runs_in

from backprop_lab import api, check, run, runs_frame
from backprop_lab.cli import rerun as rerun_cli
from backprop_lab.core.errors import ConfigError, TrackingError, UserCodeError
from backprop_lab.tracking.runs import RunRecord

LAYERS = (1, 2)  # the notebook's 784-80-1: two linear layers


def test_bad_input_is_one_line_naming_the_key_before_any_run(tmp_path):
    with pytest.raises(ConfigError) as raised:
        run([*FAST, "init=nope"], launch_dir=tmp_path)
    assert str(raised.value).startswith("init: no option 'nope'") and "\n" not in str(raised.value)
    assert not (tmp_path / "mlruns").exists()


def test_importing_the_package_imports_neither_torch_nor_mlflow_nor_pandas():
    code = "import sys, backprop_lab; backprop_lab.run; print(sorted({'torch', 'mlflow', 'pandas'} & set(sys.modules)))"
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_overrides_as_one_string_are_refused():
    with pytest.raises(TypeError, match=r"\['init=xavier'\]"):
        run("init=xavier")


def test_a_run_record_becomes_flat_columns():
    record = RunRecord("id1", "module·xavier", "FINISHED", {"init.scheme": "xavier"},
                       {"loss": 1.5, "act/std": 0.6, "act/last_hidden_std": 0.9},
                       {"first_divergent": "none", "mlflow.user": "me"},
                       {"act/std": [(1, 0.9), (2, 0.6)]})  # fmt: skip
    assert api.flat_row(record) == {
        "run_id": "id1", "name": "module·xavier", "status": "FINISHED", "params.init.scheme": "xavier",
        "metrics.loss": 1.5, "metrics.act/last_hidden_std": 0.9,  # act/std's last layer is act/std@2, not repeated
        "metrics.act/std@1": 0.9, "metrics.act/std@2": 0.6, "tags.first_divergent": "none",
    }  # fmt: skip


@pytest.mark.slow
def test_a_run_returns_its_result_logged_finished(tmp_path):
    result = run([*FAST, "init=xavier"], launch_dir=tmp_path)
    assert result.all_close and result.first_divergent == "none"
    assert [s.layer for s in result.layers] == list(LAYERS)
    (logged,) = runs_in(tmp_path / "mlruns")
    assert logged.info.run_id == result.run.run_id and logged.info.status == "FINISHED"
    assert logged.data.params["init.scheme"] == "xavier" and "act/std" in logged.data.metrics


@pytest.mark.slow
def test_a_bad_combination_found_by_the_pipeline_creates_no_run(tmp_path):
    with pytest.raises(ConfigError, match=r"^bug\.name: .*impl=functional"):
        run([*FAST, "bug=relu_unmasked", "impl=nn"], launch_dir=tmp_path)
    assert runs_in(tmp_path / "mlruns") == []


@pytest.mark.slow
@pytest.mark.parametrize("raised, status", [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_stage_that_stops_leaves_the_run_ended_and_raises(tmp_path, monkeypatch, raised, status):
    from backprop_lab.study import forward

    def stopped(*args, **kwargs):
        raise raised

    monkeypatch.setattr(forward, "activation_stats", stopped)
    with pytest.raises(type(raised)):
        run(FAST, launch_dir=tmp_path)
    (logged,) = runs_in(tmp_path / "mlruns")
    assert logged.info.status == status
    assert ("boom" if status == "FAILED" else "interrupted") in logged.data.tags["error"]
    assert "data/train_mean" in logged.data.metrics  # what came before the failure is kept


@pytest.mark.slow
def test_a_sweep_as_a_frame(small_sweep):
    launch_dir, uri = small_sweep
    children = [r for r in runs_in(launch_dir / "mlruns") if "mlflow.parentRunId" in r.data.tags]
    frame = runs_frame("latest", uri=uri)
    assert len(frame) == len(children) == 4 and set(frame["run_id"]) == {r.info.run_id for r in children}
    assert frame.equals(runs_frame(children[0].data.tags["mlflow.parentRunId"], uri=uri))
    assert len(runs_frame(uri=uri)) == 4  # the experiment: the sweep's parent is no job
    assert frame.map(lambda v: isinstance(v, (dict, list, tuple))).sum().sum() == 0
    for key in ("act/std", "back/std", "init/w_std", "theory/act_std"):
        assert {f"metrics.{key}@{layer}" for layer in LAYERS} <= set(frame.columns)
        assert f"metrics.{key}" not in frame.columns
    assert (frame["status"] == "FINISHED").all() and (frame["metrics.grad/all_close"] == 1.0).all()
    assert sorted(frame["params.impl.name"] + " " + frame["params.init.scheme"]) == [
        "functional kaiming_uniform", "functional xavier", "nn kaiming_uniform", "nn xavier"]  # fmt: skip
    assert frame["metrics.init/w_std@1"].notna().all() and frame["tags.first_divergent"].eq("none").all()


@pytest.mark.slow
def test_a_store_without_runs(tmp_path):
    from backprop_lab.tracking import lifecycle

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lifecycle.prepare_store(uri, "backprop-lab")
    assert list(runs_frame(uri=uri).columns) == ["run_id", "name", "status"]
    with pytest.raises(TrackingError, match="no sweep"):
        runs_frame("latest", uri=uri)


def frame_refusal(uri: str) -> str:
    with pytest.raises(TrackingError) as raised:
        runs_frame(uri=uri)
    assert "\n" not in str(raised.value)
    return str(raised.value)


def test_another_programs_sqlite_file_is_refused_and_left_as_it_was(tmp_path):
    import sqlite3

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    before = db.read_bytes()
    assert frame_refusal(f"sqlite:///{db}").startswith(f"{db}: not an MLflow tracking store (it holds tables users)")
    assert db.read_bytes() == before  # MLflow's tables were not added to it


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(os.urandom(4096))
    assert frame_refusal(f"sqlite:///{db}").startswith(f"{db}: not a readable sqlite database")


def test_a_store_that_is_not_there_is_not_created(tmp_path):
    db = tmp_path / "mlruns" / "mlflow.db"
    assert frame_refusal(f"sqlite:///{db}") == (
        f"{db}: no tracking store there; check the path (a run creates the store)"
    )
    assert os.listdir(tmp_path) == []


# a learner's functions, as a notebook cell holds them
def lin_grad(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g.sum(0)


def relu_grad(inp, out):
    inp.g = (inp > 0).float() * out.g


def mse_grad(inp, targ):
    inp.g = 2. * (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]


def relu_grad_unmasked(inp, out):
    inp.g = out.g


def relu_grad_crashing(inp, out):
    inp.g = out.g @ out  # (n, 80) @ (n, 80)


@pytest.mark.parametrize("given, says", [
    ({}, r"^check: give your backward, e\.g\. check\(lin_grad, relu_grad, mse_grad\)"),
    ({"code": SimpleNamespace(lin=None)}, r"^code: namespace\(lin=None\) defines none of lin_grad, relu_grad"),
    ({"code": "nope.py"}, r"^impl\.code: no file .*nope\.py"),
])  # fmt: skip
def test_check_given_nothing_to_check_is_one_line_before_any_run(tmp_path, given, says):
    with pytest.raises(ConfigError, match=says) as raised:
        check(**given, overrides=FAST, launch_dir=tmp_path)
    assert "\n" not in str(raised.value) and not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("given, says", [
    ({"lin_grad": 3}, r"^lin_grad: int 3 is not callable; give the function itself, e\.g\. check\(lin_grad=lin_grad\)"),
    ({"code": SimpleNamespace(mse_grad="2 * x")}, r"^mse_grad: str '2 \* x' is not callable"),
    ({"lin_grad": lin_grad, "code": SimpleNamespace(lin_grad=lin_grad)}, r"^check: give the functions or code=, not"),
    ({"lin_grad": lin_grad, "overrides": "data=synthetic"}, r"^overrides: a list of strings"),
])  # fmt: skip
def test_check_given_what_is_not_code_is_one_line_before_any_run(tmp_path, given, says):
    with pytest.raises(TypeError, match=says) as raised:
        check(**{"overrides": FAST, **given}, launch_dir=tmp_path)
    assert "\n" not in str(raised.value) and not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_check_on_functions_is_a_logged_run_of_their_source(tmp_path, capsys):
    result = check(lin_grad, relu_grad, mse_grad, overrides=FAST, launch_dir=tmp_path)
    assert result.all_close and result.first_divergent == "none"
    shown = capsys.readouterr().out
    assert "verdict: gradients ok at every node" in shown and f"id {result.run.run_id}" in shown
    assert [line.split()[1] for line in shown.splitlines() if line.startswith("│")] == [
        "lin2", "w2", "b2", "act1", "lin1", "w1", "b1", "x"]  # the node table, from the loss back  # fmt: skip
    (logged,) = runs_in(tmp_path / "mlruns")
    source = tmp_path / logged.data.params["impl.code"]
    assert source.parent == tmp_path / ".backprop_lab" / "cells" and logged.info.run_name.startswith(source.stem)
    text = source.read_text()
    assert all(f"def {name}(" in text for name in ("lin_grad", "relu_grad", "mse_grad"))
    assert logged.data.tags["impl.code_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert logged.data.tags["impl.style"] == "functions" and logged.data.tags["grad.verdict"] == "ok"


def as_module(tmp_path, name: str, source: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UNMASKED = inspect.getsource(lin_grad) + "\n\ndef relu_grad(inp, out):\n    inp.g = out.g\n"


@pytest.mark.slow
@pytest.mark.parametrize("given", ["keywords", "namespace", "module", "file"])
def test_check_on_a_buggy_relu_names_lin1_and_its_mistake(tmp_path, given):
    code = {"keywords": {"lin_grad": lin_grad, "relu_grad": relu_grad_unmasked},
            "namespace": {"code": SimpleNamespace(lin_grad=lin_grad, relu_grad=relu_grad_unmasked)},
            "module": {"code": as_module(tmp_path, "unmasked", UNMASKED)},
            "file": {"code": str(as_module(tmp_path, "unmasked", UNMASKED).__file__)}}[given]  # fmt: skip
    result = check(**code, overrides=FAST, launch_dir=tmp_path)
    assert result.first_divergent == "lin1" and "ReLU" in result.verdict, result.verdict
    (logged,) = runs_in(tmp_path / "mlruns")
    assert logged.info.status == "FINISHED" and logged.data.tags["grad.mistake"] == "relu_mask"
    assert (logged.data.tags["first_divergent"], logged.data.tags["grad.verdict"]) == ("lin1", "wrong")


@pytest.mark.slow
def test_an_error_in_a_learners_function_is_their_traceback_in_their_source(tmp_path):
    with pytest.raises(UserCodeError) as raised:
        check(relu_grad=relu_grad_crashing, overrides=FAST, launch_dir=tmp_path)
    (source,) = (tmp_path / ".backprop_lab" / "cells").glob("cell_*.py")
    text = str(raised.value)
    assert text.startswith(f"{source}: your code raised RuntimeError")
    assert f'File "{source}", line ' in text and "in relu_grad_crashing" in text
    assert "inp.g = out.g @ out  # (n, 80) @ (n, 80)" in text  # the line, read back from the source written
    assert "backprop_lab/" not in text.replace(str(source), "")  # none of the lab's frames
    import traceback

    frames = [f.name for f in traceback.extract_tb(raised.value.__traceback__)]
    assert frames[-1] == "check" and "run" not in frames  # no frame of the lab's below check() (itself hidden)
    (logged,) = runs_in(tmp_path / "mlruns")
    assert logged.info.status == "FAILED"


def einsum_lin_grad(inp, out, w, b):  # a learner's own name, and torch from the notebook's imports
    inp.g = torch.einsum("bj,ij->bi", out.g, w)
    w.g = inp.t() @ out.g
    b.g = out.g.sum(0)


@pytest.mark.slow
def test_a_check_run_reruns_identical(tmp_path, capsys, monkeypatch):
    """Its cell file stands on its own (torch carried, the renamed function bound to lin_grad): a rerun runs it
    again, as it ran, and finds the same numbers."""

    result = check(lin_grad=einsum_lin_grad, overrides=FAST, launch_dir=tmp_path)
    (source,) = (tmp_path / ".backprop_lab" / "cells").glob("cell_*.py")
    assert "import torch" in source.read_text() and "lin_grad = einsum_lin_grad" in source.read_text()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert rerun_cli.main([result.run.run_id, "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"]) == 0
    assert "verdict: IDENTICAL" in capsys.readouterr().out
