"""The end-of-run summary: rich tables of each stage's results, and how to open the run in the MLflow UI."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from backprop_lab.pipeline import Result

OK, BAD = "[green]ok[/]", "[red]FAIL[/]"


def _g(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def data_table(r: Result) -> Table:
    t = Table(title=f"data: normalized with the training statistics  ({OK if r.normalized_ok else BAD})")
    for col in ("split", "mean raw", "std raw", "mean", "std"):
        t.add_column(col, justify="right")
    for split in ("train", "valid"):
        s = r.data_stats
        t.add_row(split, *(_g(s[f"data/{split}_{k}"]) for k in ("mean_raw", "std_raw", "mean", "std")))
    return t


def init_table(r: Result) -> Table:
    t = Table(title="init: parameters")
    for col in ("param", "mean", "std"):
        t.add_column(col, justify="right")
    for key in r.init_stats:
        if key.endswith("_mean"):
            name = key.removeprefix("init/").removesuffix("_mean")
            t.add_row(name, _g(r.init_stats[key]), _g(r.init_stats[f"init/{name}_std"]))
    return t


def activation_table(r: Result) -> Table:
    t = Table(title=f"forward: activations by layer (loss {r.loss:.4g})")
    for col in ("layer", "linear mean", "linear std", "ReLU-shift mean", "ReLU-shift std"):
        t.add_column(col, justify="right")
    for s in r.layers:
        t.add_row(str(s.layer), _g(s.mean), _g(s.std), _g(s.relu_mean), _g(s.relu_std))
    return t


def grad_table(r: Result) -> Table:
    t = Table(title=f"backward: manual against autograd  ({OK if r.all_close else BAD})")
    for col in ("tensor", "shape", "max |diff|", "max |diff| / max |autograd|", "verdict"):
        t.add_column(col, justify="right")
    for d in r.diffs:
        t.add_row(
            d.name,
            "x".join(map(str, d.shape)),
            f"{d.max_abs_diff:.3g}",
            f"{d.max_rel_diff:.3g}",
            OK if d.close else BAD,
        )
    return t


def timing_table(r: Result) -> Table:
    tm = r.timing
    t = Table(title=f"timing: median of torch.utils.benchmark blocks, {tm.threads} threads")
    for col in ("pass", "median ms", "IQR ms", "runs"):
        t.add_column(col, justify="right")
    for name in ("forward", "backward", "backward_autograd"):
        timed = getattr(tm, name)
        t.add_row(name.replace("_", " "), f"{timed.median_ms:.2f}", f"{timed.iqr_ms:.2f}", str(timed.runs))
    t.caption = f"backward / autograd backward = {tm.backward.median_ms / tm.backward_autograd.median_ms:.2f}"
    return t


def print_summary(r: Result, console: Console) -> None:
    for table in (data_table(r), init_table(r), activation_table(r), grad_table(r), timing_table(r)):
        console.print(table)
    wall = "  ".join(f"{k.removesuffix('_s')} {v:.2f}s" for k, v in r.wall.items())
    console.print(f"wall time: {wall}")
    console.print(f"MLflow run [bold]{r.run_name}[/] id [bold]{r.run.run_id}[/] (experiment {r.run.experiment_id})")
    console.print(f"open it:  {r.ui_command}")
    console.print(
        f"          then http://127.0.0.1:5000/#/experiments/{r.run.experiment_id}/runs/{r.run.run_id}", soft_wrap=True
    )
