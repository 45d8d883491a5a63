"""What a run leaves in the store, in a form two versions of the project can be compared by: its params, the names
of its metrics (and the values of those that do not measure the machine), its tags (and the values of those that
do not name the moment or the checkout) and its artifacts' paths. `python tests/run_record.py` writes the record
of the runs below to tests/golden/run_records.json; test_run_record.py checks today's runs against it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "run_records.json"
FAST = ["data=synthetic", "data.n_train=128", "data.n_valid=32", "timing.min_run_time=0.01"]
CONFIGS = {  # a correct run, a known bug (its diagnosis tags), a deep model in float64 (layer by layer)
    "default": FAST,
    "bug": [*FAST, "impl=functional", "bug=relu_unmasked"],
    "deep": [*FAST, "model=deep", "init=kaiming_normal", "dtype=float64", "impl=lean"],
}
MACHINE_METRICS = ("time/", "wall/", "mem/", "grad/")  # timings, and errors that depend on the CPU's rounding
EXACT_GRAD = ("grad/all_close", "grad/all_finite", "grad/inconclusive_nodes", "grad/nodes_not_given")
DIFF = "git.diff"
# (time.noisy says which timings the machine's load made noisy)
MOMENT_TAGS = ("mlflow.", "git.", "config.", "overrides", "command", "backprop_lab.owner", "torch.", "version.",
               "data.sha256", "time.")  # fmt: skip


def _moment(key: str) -> bool:
    return key.startswith(MOMENT_TAGS)


def record(uri: str, run_id: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    metrics = {}
    for key in sorted(run.data.metrics):
        history = client.get_metric_history(run_id, key)
        kept = not key.startswith(MACHINE_METRICS) or key in EXACT_GRAD
        metrics[key] = {str(m.step): (float(f"{m.value:.6g}") if kept else None) for m in history}

    def artifacts(path: str = "") -> list[str]:
        out = []
        for f in client.list_artifacts(run_id, path or None):
            out += artifacts(f.path) if f.is_dir else [f.path] * (not f.path.startswith("git/"))
        return out

    # a checkout with uncommitted changes adds its diff's tags and patch: the state of the tree, not of the run
    tags = {k: (None if _moment(k) else v) for k, v in sorted(run.data.tags.items()) if not k.startswith(DIFF)}
    inputs = [{"name": d.dataset.name, "source_type": d.dataset.source_type, "context": [t.value for t in d.tags]}
              for d in run.inputs.dataset_inputs]  # fmt: skip
    return {"params": dict(sorted(run.data.params.items())), "metrics": metrics, "tags": tags,
            "artifacts": sorted(artifacts()), "inputs": inputs}  # fmt: skip


def records(work: Path) -> dict:
    from backprop_lab.api import run

    out = {}
    for name, overrides in CONFIGS.items():
        result = run(overrides, launch_dir=work)  # the launch dir's store, its artifacts beside it
        out[name] = record(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}", result.run.run_id)
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(records(Path(tmp)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
