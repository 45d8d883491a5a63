"""Every case of `bad_input.CASES` as a user meets it: one line on stderr that names the key or file and what it
allows, the exit code, and no run, or a FAILED one when the problem is found in the data; earlier runs untouched."""

from __future__ import annotations

import pytest
from bad_input import CASES, NO_RUN, run_case, verdict_lines
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def runs_in(directory) -> list:
    db = directory / "mlruns" / "mlflow.db"
    if not db.exists():
        return []
    try:
        client = MlflowClient(f"sqlite:///{db}")
        return [r for e in client.search_experiments(view_type=3) for r in client.search_runs([e.experiment_id])]
    except Exception:  # the cases whose store is no MLflow store hold no run either
        return []


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_bad_input_gets_one_line(case, tmp_path):
    import torch

    if case.what == "device=cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: device=cuda is valid here")
    directory = tmp_path.resolve()
    done, _ = run_case(case, directory)
    lines = done.stderr.strip().splitlines()
    if case.verdict:  # no bad input: nothing on stderr, and the verdict its values earn on stdout
        assert not lines, done.stderr[-3000:]
        lines = verdict_lines(done)
    if case.traceback:  # the learner's own frames follow: theirs only, none of the lab's
        assert lines[1] == "Traceback (your frames):" and "backprop_lab/" not in "\n".join(lines[1:]), done.stderr
        assert all(str(directory) in line for line in lines[2:] if line.startswith('  File "'))
    else:
        assert len(lines) == 1, done.stderr[-3000:]
    run_id = (directory / "run").read_text() if (directory / "run").exists() else None
    assert lines[0].startswith(case.expected.format(dir=directory, run=run_id)), lines[0]
    assert done.returncode == case.exit_code
    if case.setup is None and case.run == NO_RUN:
        assert not (directory / "mlruns").exists()  # not even a store: refused before anything was made
    statuses = [r.info.status for r in runs_in(directory)]
    assert statuses == ([] if case.run == NO_RUN else [case.run])  # FAILED, or the one FINISHED run it started from
    assert not (directory / "pwned").exists()
