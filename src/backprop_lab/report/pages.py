"""The report as files, in a folder: report.md (the page MLflow's artifact viewer previews, its figures beside it),
report.html (its figures embedded, to open alone) and the figures."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from backprop_lab.core import tables
from backprop_lab.report import Row, note_lines, report_figures, report_tables, with_notes_markdown


def markdown(rows: list[Row], title: str, figures: list[Path]) -> str:
    """The page MLflow's artifact viewer previews: it strips data: URIs, so each figure is linked by its path
    beside the page (the report's folder is logged whole)."""
    images = [f"![{f.stem}]({f.name})" for f in figures]
    return "\n".join([with_notes_markdown(rows, title), "", *images, ""])


def _embedded(path: Path) -> str:
    """A PNG as a data URI: the HTML page shows its figures wherever it is opened, alone."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def html_page(rows: list[Row], title: str, figures: list[Path]) -> str:
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in note_lines(rows))
    images = "".join(f'<p><img src="{_embedded(f)}" alt="{html.escape(f.stem)}"></p>' for f in figures)
    body = "".join(tables.to_html(t) for t in report_tables(rows, title))
    return tables.html_page(title, body + (f"<ul>{notes}</ul>" if notes else "") + images)


def gemm_peak_gflops() -> float:
    """The best single-precision GEMM throughput of this machine, for the scaling figure's roofline."""
    import torch

    from backprop_lab.study.products import gemm_peak

    return max(gemm_peak([(2048, 2048, 2048)], 0.3, torch.get_num_threads(), torch.device("cpu")).values())


def write(rows: list[Row], title: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    peak = gemm_peak_gflops() if report_figures.scaling_fits(rows) else None
    for name, fig in report_figures.figures(rows, peak).items():
        fig.savefig(out_dir / name, dpi=110)
        names.append(out_dir / name)
    (out_dir / "report.md").write_text(markdown(rows, title, names))
    (out_dir / "report.html").write_text(html_page(rows, title, names))
    return [out_dir / "report.md", out_dir / "report.html", *names]
