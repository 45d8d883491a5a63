"""A rerun's verdict as the console shows it: what differs in the environment, the metrics compared, the timings
as ratios, and a sweep's children in one table."""

from __future__ import annotations

from typing import Optional

from rich.console import Console

from backprop_lab.core import tables
from backprop_lab.rerun.compare import Verdict


def _f(x: Optional[float]) -> str:
    return "missing" if x is None else repr(x)


def environment_table(v: Verdict) -> tables.Table:
    title = f"the environment differs: metrics judged within rtol={v.tolerance[0]:g}, atol={v.tolerance[1]:g}"
    return tables.Table(title, ["what", "original", "rerun"], [list(row) for row in v.environment], align="lll")


def metrics_table(v: Verdict) -> tables.Table:
    """The values that differ (the first 50), then a count of the rest."""
    cells = [[c.key, str(c.step), _f(c.original), _f(c.rerun), "differs"] for c in v.differing[:50]]
    same = len(v.checks) - len(v.differing)
    total = f"{same} of {len(v.checks)} identical" if v.tolerance is None else f"{same} within tolerance"
    title = f"rerun {v.rerun_id} of {v.original_id}: {len(v.checks)} metric values compared"
    styles = {"differs": "red"} | ({total: "green"} if v.tolerance is None else {})
    return tables.Table(title, ["metric", "step", "original", "rerun", "verdict"], [*cells, [total, "", "", "", ""]],
                        styles=styles)  # fmt: skip


def timings_table(v: Verdict) -> tables.Table:
    cells = [[key, f"{a:.3f}", f"{b:.3f}", f"{b / a:.2f}" if a else "-"] for key, a, b in v.timings
             if key.startswith("time/") and key.endswith("_ms") and not key.endswith("_iqr_ms")]  # fmt: skip
    return tables.Table("timings, as ratios (reported, not judged)", ["metric", "original", "rerun",
                        "rerun / original"], cells)  # fmt: skip


def print_verdict(v: Verdict, console: Console) -> None:
    if v.environment:
        console.print(tables.to_rich(environment_table(v)))
    console.print(tables.to_rich(metrics_table(v)))
    if v.timings:
        console.print(tables.to_rich(timings_table(v)))
    word = ("IDENTICAL" if v.tolerance is None else "THE SAME within tolerance") if v.same else "DIFFERENT"
    console.print(f"verdict: [bold]{word}[/] ({len(v.differing)} of {len(v.checks)} metric values differ)")


def sweep_table(run_id: str, verdicts: list[Verdict], not_rerun: list[tuple[str, str, str]], children: int):
    cells = [[v.original_id, v.rerun_id, "differs" if v.environment else "same", str(len(v.differing)),
              "same" if v.same else "DIFFERENT"] for v in verdicts]  # fmt: skip
    cells += [[child_id, "-", "-", "-", f"not rerun: it ended {status} ({error[:60]})"]
              for child_id, status, error in not_rerun]  # fmt: skip
    title = f"rerun of sweep {run_id}: {len(verdicts)} of {children} children rerun"
    headers = ["original", "rerun", "environment", "differing", "verdict"]
    return tables.Table(title, headers, cells, align="lllll", styles={"same": "green", "DIFFERENT": "red"})
