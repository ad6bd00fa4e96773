"""Tables as files: a formatted Excel workbook (openpyxl), CSV, or a Markdown table.

What a table from the model becomes in Excel, so that it opens looking finished:
- the first row is the header: bold white on dark blue, frozen, with a filter;
- cells: numbers stay numbers; text starting with "=" is a formula (=SUM(B2:B9));
  ISO dates ("2025-06-02") become real dates; "12.5%" becomes 0.125 shown as a
  percentage; plain numbers sent as text ("1234.5") become numbers, but not ones
  with a leading zero (IDs, postcodes) - those stay text;
- number formats: as given per column (by header or letter); otherwise decimals
  get "#,##0.00" and large whole numbers "#,##0" (not years, weeks or IDs);
- column widths fit the content (8 to 60 characters);
- a chart of the numeric columns against the first one, beside the table: a line
  chart when the first column is time (dates, weeks, months), else a column chart;
  a final "Total" row is left out of it.

CSV is written as UTF-8 with a byte-order mark, which Excel needs to show accents
and umlauts correctly; every other program ignores it.
"""

from __future__ import annotations

import csv
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any, Sequence

from tools.registry import ToolError

Cell = str | int | float | None

HEADER_FILL = "1F4E78"
MAX_ROWS = 100_000
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?")
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")
_PERCENT = re.compile(r"-?\d+(\.\d+)?%")
_TIME_WORDS = re.compile(r"date|day|week|month|quarter|year|period|time|wk", re.I)
_NO_SEPARATOR = re.compile(r"year|week|\bid\b|^no\b|number|code|zip|postcode|phone", re.I)
_TOTAL = re.compile(r"^(grand )?(total|sum|gesamt|summe)\b", re.I)


def check_rows(rows: Sequence[Sequence[Cell]]) -> list[list[Cell]]:
    if not rows or not rows[0]:
        raise ToolError("rows is empty: give at least a header row.")
    if len(rows) > MAX_ROWS:
        raise ToolError(f"{len(rows):,} rows is more than the {MAX_ROWS:,} a produced table may have.")
    width = max(len(r) for r in rows)
    return [list(r) + [None] * (width - len(r)) for r in rows]


def coerce(value: Cell) -> tuple[Any, str | None]:
    """A cell value as Excel should hold it, and the number format it implies."""
    if not isinstance(value, str):
        return value, None
    text = value.strip()
    if text.startswith("="):
        return text, None
    if _ISO_DATE.fullmatch(text):
        try:
            return date.fromisoformat(text), "yyyy-mm-dd"
        except ValueError:
            return value, None
    if _ISO_DATETIME.fullmatch(text):
        try:
            return datetime.fromisoformat(text), "yyyy-mm-dd hh:mm"
        except ValueError:
            return value, None
    if _PERCENT.fullmatch(text):
        return float(text[:-1]) / 100, "0.0%"
    if _NUMBER.fullmatch(text):
        return (float(text) if "." in text else int(text)), None
    return value, None


def _letter(i: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(i)


def sheet_title(title: str) -> str:
    clean = re.sub(r"[\[\]:*?/\\]", " ", title).strip() or "Sheet1"
    return clean[:31]


def write_xlsx(path: Path, rows: list[list[Cell]], title: str, formats: dict[str, str], chart: str) -> str:
    """Write the workbook; returns a short description of what was made."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

    wb = Workbook()
    ws = wb.active
    ws.title = sheet_title(title)
    header = ["" if h is None else str(h) for h in rows[0]]
    ncols, nrows = len(header), len(rows)
    by_col = _formats_by_column(header, formats)

    ws.append(header)
    bold = Font(bold=True, color="FFFFFF")
    fill = PatternFill("solid", fgColor=HEADER_FILL)
    edge = Border(bottom=Side(style="thin", color="000000"))
    for cell in ws[1]:
        cell.font, cell.fill, cell.border = bold, fill, edge
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)

    kinds: list[set[str]] = [set() for _ in range(ncols)]
    widths = [len(h) for h in header]
    for r, row in enumerate(rows[1:], start=2):
        for c, raw in enumerate(row, start=1):
            value, implied = coerce(raw)
            cell = ws.cell(row=r, column=c, value=value)
            if isinstance(value, str) and value.startswith("="):
                kinds[c - 1].add("formula")
                shown = 10
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                kinds[c - 1].add("float" if isinstance(value, float) else "int")
                shown = len(f"{value:,.2f}")
            elif value is None:
                shown = 0
            else:
                kinds[c - 1].add("date" if isinstance(value, (date, datetime)) else "text")
                shown = 16 if isinstance(value, datetime) else 10 if isinstance(value, date) else len(str(value))
            fmt = by_col.get(c) or implied
            if fmt:
                cell.number_format = fmt
            widths[c - 1] = max(widths[c - 1], min(shown, 60))

    auto = []
    for c in range(1, ncols + 1):
        if c in by_col or nrows < 2:
            continue
        fmt = _auto_format(header[c - 1], kinds[c - 1], ws, c, nrows)
        if fmt:
            auto.append(header[c - 1])
            for r in range(2, nrows + 1):
                cell = ws.cell(row=r, column=c)
                if cell.number_format == "General" and cell.value is not None:
                    cell.number_format = fmt
    for c, w in enumerate(widths, start=1):
        ws.column_dimensions[_letter(c)].width = max(8, min(60, w + 2))
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{_letter(ncols)}{nrows}"

    made = _add_chart(ws, header, kinds, rows, chart, by_col) if nrows > 2 else ""
    wb.save(path)
    parts = [f"sheet {ws.title!r}: {nrows - 1} rows x {ncols} columns, header frozen"]
    if by_col:
        parts.append("formats on " + ", ".join(header[c - 1] or _letter(c) for c in sorted(by_col)))
    if made:
        parts.append(made)
    return "; ".join(parts)


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


def _auto_format(head: str, kinds: set[str], ws: Any, col: int, nrows: int) -> str | None:
    if "float" in kinds and kinds <= {"float", "int", "formula"}:
        return "#,##0.00"
    if kinds and kinds <= {"int", "formula"} and not _NO_SEPARATOR.search(head):
        biggest = max((abs(ws.cell(row=r, column=col).value) for r in range(2, nrows + 1)
                       if isinstance(ws.cell(row=r, column=col).value, (int, float))), default=0)
        if biggest >= 10_000:
            return "#,##0"
    return None


def _add_chart(ws: Any, header: list[str], kinds: list[set[str]], rows: list[list[Cell]], kind: str,
               by_col: dict[int, str]) -> str:
    from openpyxl.chart import BarChart, LineChart, Reference

    if kind == "none":
        return ""
    numeric = [c for c in range(2, len(header) + 1)
               if kinds[c - 1] & {"int", "float"} and kinds[c - 1] <= {"int", "float", "formula"}]
    plain = [c for c in numeric if "%" not in (by_col.get(c) or ws.cell(row=2, column=c).number_format)]
    if plain:  # percentages next to amounts would be a flat line at zero
        numeric = plain
    if not numeric:
        return ""
    last = len(rows)
    if _TOTAL.match(str(rows[-1][0] or "")):
        last -= 1  # a totals row would dwarf the series
    if last < 3:
        return ""
    timeish = "date" in kinds[0] or bool(_TIME_WORDS.search(header[0]))
    line = kind == "line" or (kind == "auto" and timeish)
    chart = LineChart() if line else BarChart()
    if not line:
        chart.type = "col"
    chart.title = ws.title
    chart.height, chart.width = 9, 18
    chart.y_axis.title = header[numeric[0] - 1] if len(numeric) == 1 else None
    values = [v for r in rows[1:last] for c in numeric if isinstance(v := r[c - 1], (int, float))]
    if values and max(abs(v) for v in values) >= 10:  # whole numbers on the axis, not 45,000.00
        chart.y_axis.number_format = "#,##0"
    chart.x_axis.delete = False  # openpyxl 3.1 hides both axes unless told
    chart.y_axis.delete = False
    for c in numeric:
        chart.add_data(Reference(ws, min_col=c, min_row=1, max_row=last), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=1, min_row=2, max_row=last))
    ws.add_chart(chart, f"{_letter(len(header) + 2)}2")
    names = ", ".join(header[c - 1] for c in numeric)
    return f"{'line' if line else 'column'} chart of {names} by {header[0]}"


def write_csv(path: Path, rows: list[list[Cell]]) -> str:
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows([["" if v is None else v for v in row] for row in rows])
    return f"{len(rows) - 1} rows x {len(rows[0])} columns"


def markdown_table(rows: list[list[Cell]]) -> str:
    def cell(v: Cell) -> str:
        if v is None:
            return ""
        text = f"{v:,.2f}" if isinstance(v, float) else str(v)
        return " ".join(text.split()).replace("|", "\\|")

    numeric = [all(isinstance(r[c], (int, float)) or r[c] is None for r in rows[1:]) for c in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell(h) for h in rows[0]) + " |",
             "|" + "|".join("---:" if n and len(rows) > 1 else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"
