"""The end-of-run summary: tables of each stage's results (tables.Table, rendered by to_rich), and how to open the
run in the MLflow UI."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from backprop_lab.core.names import NONE, VERDICT_WORDS
from backprop_lab.core.tables import Table, to_rich
from backprop_lab.impls.timing import PASSES
from backprop_lab.study import grad_check
from backprop_lab.study.pipeline import Result

COLOURS = {"ok": "green", "wrong": "red", "partial": "yellow", "inconclusive": "yellow"}  # of a verdict's word
SHOUTED = {"non-finite": "NON-FINITE", "shape": "SHAPE"}  # verdicts whose cell is in capitals
# a verdict's cell, styled on the console by its text
VERDICT_STYLES = {"ok": "green", "differs": "red", "NON-FINITE": "red", "SHAPE": "red", "inconclusive": "yellow",
                  "not given": "dim"}  # fmt: skip


# A table of more rows than FOLD_OVER (a deep stack's 101 layers, its 404 nodes) shows its first and last FOLD_KEEP
# rows and those its answer points at, the rest folded into a row that counts them; the run keeps every one
FOLD_OVER, FOLD_KEEP = 40, 6


def _folded(rows: list[tuple], pointed: set[int], where: str) -> list[tuple]:
    """`rows`, folded past FOLD_OVER; `pointed`: the indexes always shown; `where`: where the run keeps them all."""
    if len(rows) <= FOLD_OVER:
        return rows
    shown = set(range(FOLD_KEEP)) | set(range(len(rows) - FOLD_KEEP, len(rows))) | pointed
    out, folded = [], 0
    for i, row in enumerate(rows):
        if i not in shown:
            folded += 1
            continue
        if folded:
            out.append((f"... {folded} more", *[""] * (len(row) - 2), f"all in {where}"))
            folded = 0
        out.append(row)
    return out


def _g(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def _table(title: str, rows: list[tuple], *columns: str, caption: str = "") -> RichTable:
    """Every column right-aligned, as numbers are."""
    table = to_rich(Table(title, list(columns), [list(row) for row in rows], align="", styles=VERDICT_STYLES))
    table.caption = caption or None
    return table


def data_table(r: Result) -> RichTable:
    keys = ("mean_raw", "std_raw", "mean", "std")
    rows = [(split, *(_g(r.data_stats[f"data/{split}_{k}"]) for k in keys)) for split in ("train", "valid")]
    title = f"data: normalized with the training statistics  ({'ok' if r.normalized_ok else 'FAIL'})"
    return _table(title, rows, "split", "mean raw", "std raw", "mean", "std")


def init_table(r: Result) -> RichTable:
    rows = [(str(layer), *(_g(stats[f"init/{k}"]) for k in ("w_mean", "w_std", "b_mean", "b_std")))
            for layer, stats in r.init_stats.items()]  # fmt: skip
    return _table("init: parameters by layer", rows, "layer", "w mean", "w std", "b mean", "b std")


def activation_table(r: Result) -> RichTable:
    rows = [(str(s.layer), _g(s.mean), _g(s.std), _g(s.relu_mean), _g(s.relu_std)) for s in r.layers]
    # the first layer whose values overflowed, and the first all 0, are shown however deep the net
    pointed = {next((i for i, s in enumerate(r.layers) if flag(s)), 0) for flag in (lambda s: not s.finite,
                                                                                  lambda s: s.zero)}  # fmt: skip
    rows = _folded(rows, pointed, "act/* by step")
    title = f"forward: activations by layer (loss {r.loss:.4g})"
    return _table(title, rows, "layer", "linear mean", "linear std", "ReLU-shift mean", "ReLU-shift std")


def grad_table(r: Result) -> RichTable:
    """Every node in backward order, as Karpathy's `cmp` prints them and more: shape, bit-exact, the difference from
    autograd, and the error against the float64 truth in units of autograd's own (the verdict's measure)."""
    def row(c) -> tuple:
        verdict = SHOUTED.get(c.verdict, c.verdict)
        if not c.given:
            return c.node, "x".join(map(str, c.ref_shape)), *["-"] * 6, verdict
        return (c.node, "x".join(map(str, c.shape)), "yes" if c.exact else "no", f"{c.max_abs_diff:.3g}",
                f"{c.max_rel_diff:.3g}", f"{c.error:.3g}", f"{c.autograd_error:.3g}", f"{c.ratio:.3g}", verdict)

    rows = [row(c) for c in r.checks]
    # the first node wrong, the first inconclusive and the first whose truth is not finite: shown however deep
    flags = (lambda c: c.node == r.first_divergent, lambda c: c.verdict == "inconclusive", lambda c: not c.truth_finite)
    pointed = {next((i for i, c in enumerate(r.checks) if flag(c)), 0) for flag in flags}
    rows = _folded(rows, pointed, "grad_check.json")
    first = "" if r.first_divergent == NONE else f"; first divergent: {r.first_divergent}"
    title = f"backward, from the loss to the input: manual against autograd and the float64 truth{first}"
    columns = ("node", "shape", "exact", "max |diff|", "rel diff", "error vs truth", "autograd's", "ratio", "verdict")
    return _table(title, rows, *columns)


def timing_table(r: Result) -> RichTable:
    """Each pass's median and IQR, autograd's backward named by what it computed (the ratio's baseline)."""
    tm = r.timing
    rows = []
    for name in PASSES:
        timed = getattr(tm, name)
        noisy = " (noisy)" if timed.noisy else ""
        iqr = f"{timed.iqr_ms:.2f}" if timed.iqr_ms else "none (one block)"
        rows.append((tm.label(name), f"{timed.median_ms:.2f}", f"{iqr}{noisy}", str(timed.runs)))
    title = f"timing: median of torch.utils.benchmark blocks, {tm.threads} threads; ratios: of interleaved rounds"
    return _table(title, rows, "pass", "median ms", "IQR ms", "runs")


def print_timing(r: Result, console: Console) -> None:
    """The timing table, then the ratios with their baselines, said not firm where a timing is noisy: a line of its
    own, never wrapped to the table's width."""
    console.print(timing_table(r))
    console.print(r.timing.ratio_line(), soft_wrap=True)


def print_summary(r: Result, console: Console) -> None:
    for table in (data_table(r), init_table(r), activation_table(r), grad_table(r)):
        console.print(table)
    console.print(f"verdict: {r.verdict}", soft_wrap=True)
    print_timing(r, console)
    wall = "  ".join(f"{k.removesuffix('_s')} {v:.2f}s" for k, v in r.wall.items())
    console.print(f"wall time: {wall}")
    console.print(f"MLflow run [bold]{escape(r.run_name)}[/] id [bold]{r.run.run_id}[/] (experiment "
                  f"{r.run.experiment_id})")  # fmt: skip
    console.print(f"open it:  {r.ui_command}", soft_wrap=True)  # a command to copy: never broken by a wrap
    console.print(f"          then {r.runs_table_url} (the runs table), {r.run_url} (this run)", soft_wrap=True)


def print_job_line(r: Result, console: Console) -> None:
    """One line per job of a sweep; the sweep's report has the tables. Its numbers under the words the metrics they
    are logged as use (grad/worst_error_ratio, grad/worst_max_rel_diff), the time's ratio with its baseline."""
    given = [c for c in r.checks if c.given]
    error_ratio = max((c.ratio for c in given), default=0.0)
    rel_diff = max((c.max_rel_diff for c in given), default=0.0)
    judged = grad_check.overall(r.checks)
    verdict = f"[{COLOURS[judged]}]{VERDICT_WORDS[judged]}[/]"  # the report's word for it
    if r.first_divergent != NONE:
        verdict += f" from node {r.first_divergent}"
    tm = r.timing
    console.print(
        f"{escape(r.run_name)}: grads {verdict} (worst error ratio {error_ratio:.3g} × autograd's own error, "
        f"worst max rel diff {rel_diff:.2g}), backward {tm.backward.median_ms:.2f} ms "
        f"= {tm.backward_vs_autograd:.2f} × {tm.baseline}" + (" (noisy)" if tm.noise_note() else "")
        + (f", objective {r.objective:.4g}" if r.objective is not None else "") + f", run {r.run.run_id}",
        soft_wrap=True,
    )
