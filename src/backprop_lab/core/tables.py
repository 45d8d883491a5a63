"""Tables as data: a title, headers and rows of text cells, rendered alike to a rich Table (the console), markdown
and HTML. The bench, the report and reruns build their cells once and render them here."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Optional

from rich.table import Table as RichTable
from rich.text import Text

INF_AS_STORED = 1.7e308  # MLflow stores an infinite metric as the largest double (and -inf as its negative)
MISSING = "n/a"  # a number the run did not log (a run of another version of the project, or one that stopped early)
PAGE_STYLE = (
    "body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}.l{text-align:left}"
    "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}"
)


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    align: str = "l"  # "l" or "r" per column, from the first; the columns past its end are right-aligned numbers
    styles: dict[str, str] = field(default_factory=dict)  # a cell's text -> its rich style, on the console only

    def left(self, column: int) -> bool:
        return self.align[column : column + 1] == "l"


def as_logged(x: float) -> float:
    """An infinity as the run logged it: MLflow stores it as the largest double, which no measurement here reaches."""
    return math.copysign(math.inf, x) if abs(x) >= INF_AS_STORED else x


def number(x: Optional[float], fmt: str = ".3g") -> str:
    """A number as a cell: `inf` for an infinity, also as MLflow gives it back (never 1.7976931348623157e+308), n/a
    for one not logged."""
    if x is None:
        return MISSING
    if math.isinf(as_logged(x)):
        return "inf" if x > 0 else "-inf"
    return format(x, fmt)


def to_rich(table: Table) -> RichTable:
    # Text, not markup: a cell or title holding [brackets] (an override, a status) is shown as written
    out = RichTable(title=Text(table.title))
    for i, header in enumerate(table.headers):
        out.add_column(Text(header), justify="left" if table.left(i) else "right")
    for row in table.rows:
        out.add_row(*(Text(cell, style=table.styles.get(cell, "")) for cell in row))
    return out


MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\|[]<>"})  # a table's rule, a link's or a tag's brackets


def md_text(text: str) -> str:
    """Text that markdown shows as it is: `1.15 [0.54, 2.46] (+x.g)` would be a link, `<x>` a tag."""
    return text.translate(MARKDOWN_SPECIAL)


def _md_cells(cells: list[str]) -> str:
    return "| " + " | ".join(md_text(c) for c in cells) + " |"


def to_markdown(table: Table, level: int = 1) -> str:
    """The title as a heading of `level`, then the table; no trailing newline."""
    rule = "|" + "".join(":---|" if table.left(i) else "---:|" for i in range(len(table.headers)))
    lines = [f"{'#' * level} {md_text(table.title)}", "", _md_cells(table.headers), rule]
    return "\n".join(lines + [_md_cells(row) for row in table.rows])


def _html_row(cells: list[str], tag: str, table: Table) -> str:
    opened = [f'<{tag} class="l">' if table.left(i) else f"<{tag}>" for i in range(len(cells))]
    return "<tr>" + "".join(f"{o}{html.escape(c)}</{tag}>" for o, c in zip(opened, cells)) + "</tr>"


def to_html(table: Table, level: int = 1) -> str:
    """The title as a heading of `level`, then the table."""
    rows = "".join(_html_row(row, "td", table) for row in table.rows)
    head = _html_row(table.headers, "th", table)
    return f"<h{level}>{html.escape(table.title)}</h{level}><table>{head}{rows}</table>"


def html_page(title: str, body: str) -> str:
    """A standalone page around `body` (already HTML)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{PAGE_STYLE}</style></head><body>{body}</body></html>"
    )
