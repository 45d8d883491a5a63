"""The sweep report, from MLflow alone: one row per job, four figures, written to a folder and logged on the parent.

python scripts/report.py                    # the latest sweep in the default store
python scripts/report.py RUN_ID --out DIR   # a given sweep's parent run
python scripts/report.py --experiment NAME  # every job run of an experiment
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console

from backprop_lab import redaction, runs, store, tables, tracking
from backprop_lab.errors import UserError
from backprop_lab.runs import RunRecord

CHOICE_KEYS = ("impl.name", "init.scheme", "model.name", "data.name")  # what a run name is made of


@dataclass
class Row:
    run_id: str
    choices: dict[str, str]  # the swept params, e.g. {"impl.name": "nn", "init.scheme": "xavier"}
    status: str
    all_close: Optional[float]
    worst_rel_diff: Optional[float]
    forward_ms: Optional[float]
    forward_iqr_ms: Optional[float]
    backward_ms: Optional[float]
    backward_iqr_ms: Optional[float]
    autograd_ms: Optional[float]
    ratio: Optional[float]
    act_std: list[tuple[int, float]]

    @property
    def label(self) -> str:
        return "·".join(self.choices.values()) or self.run_id[:8]


def swept_keys(records: list[RunRecord]) -> list[str]:
    """Params whose value differs between the runs: the sweep's choices (the name's parts when nothing differs)."""
    keys = sorted({k for r in records for k in r.params})
    varying = [k for k in keys if len({r.params.get(k) for r in records}) > 1]
    return varying or [k for k in CHOICE_KEYS if any(k in r.params for r in records)]


def to_rows(records: list[RunRecord]) -> list[Row]:
    keys = swept_keys(records)
    rows = []
    for r in records:
        m = r.metrics
        rel = [v for k, v in m.items() if k.startswith("grad/") and k.endswith("/max_rel_diff")]
        rows.append(
            Row(
                r.run_id,
                {k: r.params.get(k, "-") for k in keys},
                r.status,
                m.get("grad/all_close"),
                max(rel, key=lambda v: (math.isnan(v), v)) if rel else None,
                m.get("time/forward_ms"),
                m.get("time/forward_iqr_ms"),
                m.get("time/backward_ms"),
                m.get("time/backward_iqr_ms"),
                m.get("time/backward_autograd_ms"),
                m.get("time/backward_vs_autograd"),
                r.act_std,
            )
        )
    return sorted(rows, key=lambda row: list(row.choices.values()))


def _f(x: Optional[float], fmt: str = ".3g") -> str:
    return "-" if x is None else format(x, fmt)


def _ms(median: Optional[float], iqr: Optional[float]) -> str:
    return "-" if median is None else f"{median:.2f} ± {iqr or 0:.2f}"


METRIC_HEADERS = ["status", "all close", "worst rel diff", "forward ms (IQR)", "backward ms (IQR)", "× autograd"]


def headers(rows: list[Row]) -> list[str]:
    """One column per swept choice (`impl`, `init`, ...), then the results."""
    return [key.split(".")[0] for key in rows[0].choices] + METRIC_HEADERS


def cells(row: Row) -> list[str]:
    verdict = {1.0: "yes", 0.0: "NO"}.get(row.all_close, "-")
    return [
        *row.choices.values(),
        row.status,
        verdict,
        _f(row.worst_rel_diff, ".2e"),
        _ms(row.forward_ms, row.forward_iqr_ms),
        _ms(row.backward_ms, row.backward_iqr_ms),
        _f(row.ratio, ".2f"),
    ]


def table(rows: list[Row], title: str) -> tables.Table:
    """The swept choices left-aligned, the results right-aligned."""
    return tables.Table(title, headers(rows), [cells(row) for row in rows], align="l" * len(rows[0].choices))


def markdown(rows: list[Row], title: str, figures: list[str]) -> str:
    images = [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join([tables.to_markdown(table(rows, title)), "", *images, ""])


def html_page(rows: list[Row], title: str, figures: list[str]) -> str:
    images = "".join(f'<p><img src="{html.escape(f)}" alt="{html.escape(Path(f).stem)}"></p>' for f in figures)
    return tables.html_page(title, tables.to_html(table(rows, title)) + images)


def figures(rows: list[Row]) -> dict[str, object]:
    """The four figures, by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.backward_ms is not None]
    labels = [r.label for r in done]
    out = {}

    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(done)), 3.8))
    iqr = [(r.backward_iqr_ms or 0) / 2 for r in done]
    ax.bar(labels, [r.backward_ms for r in done], yerr=iqr, capsize=3, label="backward")
    ax.plot(labels, [r.autograd_ms for r in done], "k_", markersize=18, label="autograd's backward, same run")
    ax.set(ylabel="median ms (bars: IQR)", title="backward time per implementation")
    ax.legend(fontsize=8)
    out["backward_time.png"] = fig

    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(done)), 3.8))
    ax.bar(labels, [r.ratio for r in done])
    ax.axhline(1, color="k", lw=0.8)
    ax.set(ylabel="backward / autograd backward", title="backward against autograd (below 1: faster)")
    out["backward_vs_autograd.png"] = fig

    checked = [r for r in rows if r.worst_rel_diff is not None]
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(checked)), 3.8))
    tiny = 1e-12  # an exact match has no logarithm: drawn at 1e-12
    ax.bar([r.label for r in checked], [max(r.worst_rel_diff, tiny) for r in checked])
    ax.set_yscale("log")
    ax.set(ylabel="max |manual − autograd| / max |autograd|", title="worst gradient difference (log scale)")
    out["grad_diff.png"] = fig

    fig, ax = plt.subplots(figsize=(6, 3.8))
    by_init: dict[str, Row] = {}
    for r in rows:
        by_init.setdefault(r.choices.get("init.scheme") or r.label, r)
    for name, r in by_init.items():
        if r.act_std:
            ax.plot(*zip(*r.act_std), "o-", label=name)
    ax.axhline(1, color="grey", lw=0.6, ls=":")
    ax.set_yscale("log")  # vanishing and exploding both show as straight lines
    ax.set(xlabel="layer", ylabel="std of the linear output", title="activation std across layers")
    ax.legend(fontsize=8)
    out["activation_std.png"] = fig

    for fig in out.values():
        for ax in fig.axes:
            ax.tick_params(axis="x", labelrotation=35, labelsize=7)
        fig.tight_layout()
    return out


def write(rows: list[Row], title: str, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for name, fig in figures(rows).items():
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        names.append(name)
    (out_dir / "report.md").write_text(markdown(rows, title, names))
    (out_dir / "report.html").write_text(html_page(rows, title, names))
    return [out_dir / n for n in ("report.md", "report.html", *names)]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("run_id", nargs="?", help="a sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--experiment", help="report every job run of this experiment instead of one sweep")
    parser.add_argument("--tracking-uri", help="default: sqlite:///mlruns/mlflow.db under the current directory")
    parser.add_argument("--out", type=Path, help="folder for report.md, report.html and the figures")
    args = parser.parse_args(argv)
    redaction.protect_process()
    try:
        return report(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def report(args: argparse.Namespace) -> int:
    from backprop_lab.config import TrackingConfig

    uri, _ = store.resolve_store(args.tracking_uri, Path.cwd())
    console = Console(width=None if sys.stdout.isatty() else 140)
    if args.out and args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out: {args.out} is a file; give a folder for report.md, report.html and the figures")
    store.check_store(uri)
    experiment = args.experiment or TrackingConfig.experiment
    for run_id in tracking.end_dead_runs_in(uri, experiment):
        console.print(f"note: run {run_id} was left RUNNING by a process that died; it is now marked KILLED")

    parent_id = None
    if args.experiment and not args.run_id:
        records = runs.experiment_records(uri, args.experiment)
        title = f"experiment {args.experiment}"
    else:
        parent_id = args.run_id or runs.latest_sweep(uri, experiment)
        if parent_id is None:
            raise UserError("no sweep found in the store; run one with scripts/run.py -m ..., or name a run id")
        parent, records = runs.sweep_records(uri, parent_id)
        title = f"sweep {parent_id}: {parent.tags.get('overrides', '')}"
        if parent.status != "FINISHED":
            why = parent.tags.get("error", "")
            console.print(f"note: this sweep ended {parent.status}" + (f" ({why})" if why else "") +
                          "; the rows below are what its jobs logged before")  # fmt: skip
            title += f" [{parent.status}]"
    if not records:
        raise UserError(f"no job runs found for {title}")

    rows = to_rows(records)
    console.print(tables.to_rich(table(rows, title)))
    out_dir = args.out or Path("reports") / (parent_id or args.experiment)
    written = write(rows, title, out_dir)
    if parent_id:
        tracking.log_artifacts_to(uri, parent_id, out_dir, "report")
    console.print(f"wrote {', '.join(str(p) for p in written)}" + (f"; logged on run {parent_id}" if parent_id else ""))
    return 0
