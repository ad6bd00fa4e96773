"""Tables as files: a formatted Excel workbook (openpyxl), CSV, or a Markdown table.

What a table from the model becomes in Excel, so that it opens looking finished:
- the first row is the header: bold white on dark blue, frozen, with a filter;
- cells are read as written (tools.documents.numbers): numbers stay numbers,
  "$1,200.50" / "1.234,50 €" are amounts in their currency, "12.5%" is 0.125 shown
  as a percentage, text starting with "=" is a formula (=SUM(B2:B9)), ISO dates
  ("2025-06-02") are real dates, text with a leading zero (IDs, postcodes) stays text;
- number formats: as given per column (by header or letter); otherwise the column's
  own - its currency and decimals, percentages with the decimals the data needs,
  separators on large numbers (not years, weeks or IDs);
- numeric and date columns are right-aligned, their header too; widths fit the
  content as shown (8 to 60 characters);
- highlights (tools.documents.tables.Highlight) fill and embolden rows or cells;
- a chart beside the table of one unit's columns against the label column
  (tools.documents.tables.plan_chart): a line chart when the labels are time (dates,
  weeks, months), else a column chart; total rows left out. When labels repeat, the
  summed (or averaged) figures go to a "Chart data" sheet and the chart draws those.

CSV is written as UTF-8 with a byte-order mark, which Excel needs to show accents
and umlauts correctly; every other program ignores it.
"""

from __future__ import annotations

import csv
import re
from copy import copy
from datetime import date, datetime
from pathlib import Path
from typing import Any, Sequence

from tools.documents import numbers, tables
from tools.documents.numbers import Cell as Parsed, Column
from tools.documents.tables import Highlight
from tools.registry import ToolError

Cell = str | int | float | None

HEADER_FILL = "1F4E78"
MAX_ROWS = 100_000
MAX_CELL_CHARS = 32_767  # Excel's limit; openpyxl would cut longer text without a word


def check_rows(rows: Sequence[Sequence[Cell]]) -> list[list[Cell]]:
    if not rows or not rows[0]:
        raise ToolError("rows is empty: give at least a header row.")
    if len(rows) > MAX_ROWS:
        raise ToolError(f"{len(rows):,} rows is more than the {MAX_ROWS:,} a produced table may have.")
    width = max(len(r) for r in rows)
    return [list(r) + [None] * (width - len(r)) for r in rows]


def _letter(i: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(i)


def sheet_title(title: str) -> str:
    clean = re.sub(r"[\[\]:*?/\\]", " ", title).strip() or "Sheet1"
    return clean[:31]


def write_xlsx(path: Path, rows: list[list[Cell]], title: str, formats: dict[str, str], chart: str,
               series: Sequence[str] = (), highlight: Sequence[Highlight] = ()) -> str:
    """Write the workbook; returns a short description of what was made."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

    wb = Workbook()
    ws = wb.active
    ws.title = sheet_title(title)
    header = ["" if h is None else str(h) for h in rows[0]]
    ncols, nrows = len(header), len(rows)
    by_col = _formats_by_column(header, formats)
    for r, row in enumerate(rows, start=1):
        for c, raw in enumerate(row, start=1):
            if isinstance(raw, str) and len(raw) > MAX_CELL_CHARS:
                raise ToolError(f"Cell {_letter(c)}{r} has {len(raw):,} characters; an Excel cell holds at most "
                                f"{MAX_CELL_CHARS:,}. Shorten it, split it, or save as .csv.")
    columns, cells = numbers.analyse(rows)
    styles, marked = tables.marks(columns, cells, list(highlight))

    ws.append(header)
    edge = Border(bottom=Side(style="thin", color="000000"))
    for c, cell in enumerate(ws[1]):
        cell.font, cell.fill, cell.border = Font(bold=True, color="FFFFFF"), PatternFill("solid", fgColor=HEADER_FILL), edge
        cell.alignment = Alignment(horizontal="right" if columns[c].right else "left", vertical="center",
                                   wrap_text=True)
    widths = [round(len(h) * 1.1) for h in header]
    right = Alignment(horizontal="right")
    # A column's cells mostly share one style; openpyxl hashes every style object set on
    # every cell, so a finished style is copied instead, as openpyxl's own sheet copier does.
    done: dict[tuple[int, str | None], Any] = {}
    for r, row in enumerate(cells):
        for c, parsed in enumerate(row):
            col = columns[c]
            cell = ws.cell(row=r + 2, column=c + 1, value=_stored(parsed, rows[r + 1][c]))
            fmt = by_col.get(c + 1) or parsed.implied or (col.excel_format(parsed) if col.numeric else None)
            style = styles.get((r, c))
            if style is None and (c, fmt) in done:
                cell._style = copy(done[(c, fmt)])
            else:
                if fmt:
                    cell.number_format = fmt
                if col.right:
                    cell.alignment = right
                if style is None:
                    done[(c, fmt)] = cell._style
                else:
                    if style.fill:
                        cell.fill = PatternFill("solid", fgColor=style.fill)
                    cell.font = Font(bold=style.bold or None, color=style.font)
            widths[c] = max(widths[c], min(_shown_width(col, parsed), 60))
    for c, w in enumerate(widths, start=1):
        ws.column_dimensions[_letter(c)].width = max(8, min(60, w + 2))
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{_letter(ncols)}{nrows}"

    made = _add_chart(wb, ws, columns, cells, chart, list(series), by_col) if chart != "none" else ""
    wb.save(path)
    parts = [f"sheet {ws.title!r}: {nrows - 1} rows x {ncols} columns, header frozen"]
    if by_col:
        parts.append("formats on " + ", ".join(header[c - 1] or _letter(c) for c in sorted(by_col)))
    if made:
        parts.append(made)
    if marked:
        parts.append("highlighted " + marked)
    return "; ".join(parts)


def _stored(parsed: Parsed, raw: Cell) -> Any:
    """What the cell holds: the parsed value; placeholders ("n/a") and plain text as written."""
    if parsed.kind == "empty" or parsed.kind == "text":
        return raw
    return parsed.value


def _shown_width(col: Column, parsed: Parsed) -> int:
    if parsed.kind == "formula":
        return 10
    if isinstance(parsed.value, datetime):
        return 16
    if isinstance(parsed.value, date):
        return 10
    return len(col.show(parsed)) if col.numeric else len("" if parsed.value is None else str(parsed.value))


def _formats_by_column(header: list[str], formats: dict[str, str]) -> dict[int, str]:
    out: dict[int, str] = {}
    lower = [h.strip().lower() for h in header]
    for key, fmt in formats.items():
        k = key.strip()
        if k.lower() in lower:
            out[lower.index(k.lower()) + 1] = fmt
        elif re.fullmatch(r"[A-Za-z]{1,3}", k):
            from openpyxl.utils import column_index_from_string

            out[column_index_from_string(k.upper())] = fmt
        else:
            raise ToolError(f"formats names {key!r}, which is neither a column header ({', '.join(header)}) "
                            "nor a column letter.")
    return out


def _add_chart(wb: Any, ws: Any, columns: list[Column], cells: list[list[Parsed]], kind: str, series: list[str],
               by_col: dict[int, str]) -> str:
    from openpyxl.chart import BarChart, LineChart, Reference
    from openpyxl.chart.data_source import AxDataSource, StrRef

    plan = tables.plan_chart(columns, cells, series)
    if plan is None:
        return ""
    line = kind == "line" or (kind == "auto" and plan.time)
    chart = LineChart() if line else BarChart()
    if not line:
        chart.type = "col"
    chart.title = ws.title
    chart.height, chart.width = 9, 18
    first = columns[plan.series[0]]
    chart.y_axis.title = first.header if len(plan.series) == 1 else None
    axis = tables.axis_format(first, [v for vs in plan.values for v in vs if v is not None])
    if axis:
        chart.y_axis.number_format = axis
    chart.x_axis.delete = False  # openpyxl 3.1 hides both axes unless told
    chart.y_axis.delete = False
    direct = not plan.how and plan.rows == list(range(len(plan.rows)))
    if direct:  # the table's own cells, so the chart follows edits
        source, label, cols, last = ws, plan.label + 1, [c + 1 for c in plan.series], len(plan.rows) + 1
    else:
        source = wb.create_sheet(_free_title(wb, "Chart data"))
        source.append([columns[plan.label].header] + [columns[c].header for c in plan.series])
        for i, category in enumerate(plan.categories):
            source.append([category] + [vs[i] for vs in plan.values])
        for i, c in enumerate(plan.series, start=2):
            fmt = by_col.get(c + 1) or columns[c].excel_format()
            for cell in source.iter_rows(min_row=2, min_col=i, max_col=i):
                if fmt:
                    cell[0].number_format = fmt
        label, cols, last = 1, list(range(2, len(plan.series) + 2)), len(plan.categories) + 1
    for c in cols:
        chart.add_data(Reference(source, min_col=c, min_row=1, max_row=last), titles_from_data=True)
    categories = Reference(source, min_col=label, min_row=2, max_row=last)
    if columns[plan.label].kind == "text":  # text labels are a string reference, as Excel writes them
        for s in chart.series:
            s.cat = AxDataSource(strRef=StrRef(f=str(categories)))
    else:
        chart.set_categories(categories)
    ws.add_chart(chart, f"{_letter(len(columns) + 2)}2")
    return plan.describe(columns, line) + ("" if direct else f" (figures on the sheet {source.title!r})")


def _free_title(wb: Any, title: str) -> str:
    n, candidate = 1, title
    while candidate in wb.sheetnames:
        n += 1
        candidate = f"{title} {n}"
    return candidate


def write_csv(path: Path, rows: list[list[Cell]]) -> str:
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows([["" if v is None else v for v in row] for row in rows])
    return f"{len(rows) - 1} rows x {len(rows[0])} columns"


def markdown_table(rows: list[list[Cell]], highlight: Sequence[Highlight] = ()) -> str:
    """A Markdown table: numeric columns right-aligned and shown as in the data; bold highlights."""
    columns, cells = numbers.analyse(rows)
    styles, _ = tables.marks(columns, cells, list(highlight))
    if any(s.fill for s in styles.values()):
        raise ToolError("Markdown has no colours: highlight with bold: true, or make an .xlsx.")

    def text(value: str) -> str:
        return " ".join(value.split()).replace("|", "\\|")

    lines = ["| " + " | ".join(text(col.header) for col in columns) + " |",
             "|" + "|".join("---:" if col.right else "---" for col in columns) + "|"]
    for r, row in enumerate(cells):
        shown = []
        for c, parsed in enumerate(row):
            value = text(columns[c].show(parsed) if columns[c].numeric else
                         "" if parsed.value is None else str(rows[r + 1][c]))
            shown.append(f"**{value}**" if value and (r, c) in styles else value)
        lines.append("| " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"
