"""What every produced table shares, whatever the file: highlights, its chart, its column widths.

Highlights. The model asks for them in a typed parameter (`Highlight`) rather than
by row arithmetic where it can: a test on a column ("Pace below 1", "Client equals
Globex") picks the rows, so the flags land on the right rows even when the table was
sorted or has a total row; a data-row number is there for the rest. A test compares
the number as written in the cell ("95%" is 95, "$1,200" is 1200); formula cells have
no value yet and are not tested (the result says so). Named colours are the soft
fills office users know (Excel's "light red fill with dark red text"); a hex colour is
used as given, with white text on dark fills.

Charts. Only series of one unit share an axis: money of one currency, percentages,
or plain numbers (not those naming a row: week, year, ID); counts next to dollars or percentages next to amounts draw one
series flat at the bottom. Unless the model names the columns, the chart takes the
first numeric column and the others of its unit, and says which it left out. The
categories are the label column (the first column when it is text, dates or time such
as weeks; else the first text or date column, else an ID-like or the first one), never repeated: rows with the same label are summed (money,
numbers) or averaged (percentages), and the chart says so. Total rows are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from tools.documents.numbers import Cell, Column, parse
from tools.registry import ToolError

# Fill and matching text colour for each named colour.
COLOURS = {
    "red": ("FFC7CE", "9C0006"), "yellow": ("FFEB9C", "9C5700"), "green": ("C6EFCE", "006100"),
    "orange": ("FCE4D6", "C65911"), "blue": ("DDEBF7", "1F4E78"), "grey": ("E7E6E6", "3A3838"),
}
_HEX = re.compile(r"#?([0-9A-Fa-f]{6})")
_TOTAL = re.compile(r"^(grand |sub)?(total|sum|gesamt|summe)\b", re.I)
_TIME = re.compile(r"date|day|week|month|quarter|year|period|time|wk", re.I)
# Numbers that name a row rather than measure it (week 23, year 2025, ID 7): never charted unasked.
_DIMENSION = re.compile(r"^\s*(week|wk|year|month|quarter|day|period|id|no\.?|#)\b|\bid\s*$", re.I)
_LABELISH = re.compile(r"week|year|month|quarter|day|period|wk|\bid\b|^no\b|number", re.I)
Number = Annotated[float | None, WithJsonSchema({"type": "number"})]  # one line of schema, not an anyOf


class Highlight(BaseModel):
    """Marks rows whose column is below/above a number ("95%" is 95) or equals a value, or data row N (1 = first); a column alone marks its cells. E.g. {"column":"Pace","below":1,"fill":"red"}"""  # noqa: E501

    model_config = ConfigDict(json_schema_extra=lambda schema: no_defaults(schema))

    column: str = ""
    below: Number = None
    above: Number = None
    equals: str = ""
    row: int = 0
    fill: str = Field("", description="red, yellow, green, orange, blue, grey or hex")
    bold: bool = False
    cell: bool = Field(False, description="Only the column's cell, not the row")

    @field_validator("fill")
    @classmethod
    def _known_colour(cls, value: str) -> str:
        value = value.strip().lower()
        if value and value not in COLOURS and not _HEX.fullmatch(value):
            raise ValueError(f"unknown colour {value!r}: use {', '.join(COLOURS)} or a hex colour like FFC7CE")
        return value


def no_defaults(schema: dict[str, Any]) -> None:
    """Drop the defaults from a nested model's schema: `required` already says which fields
    may be left out, the defaults tell the model nothing more, and the schema is sent with
    every request."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


@dataclass
class Style:
    fill: str | None = None  # RRGGBB
    font: str | None = None
    bold: bool = False


def marks(columns: list[Column], cells: list[list[Cell]], wanted: list[Highlight]) -> tuple[dict[tuple[int, int], Style], str]:
    """The style of each marked cell, by (data row from 0, column from 0), and a line saying what was marked."""
    styles: dict[tuple[int, int], Style] = {}
    said = []
    for h in wanted:
        if not h.fill and not h.bold:
            raise ToolError("A highlight needs a fill colour or bold: true.")
        col = _column_index(columns, h.column) if h.column else None
        if col is None and (h.cell or h.below is not None or h.above is not None or h.equals):
            raise ToolError("A highlight that tests or marks a cell needs its column (a header).")
        tested = h.below is not None or h.above is not None or bool(h.equals)
        if h.row:
            if not 1 <= h.row <= len(cells):
                raise ToolError(f"highlight row {h.row}: the table has data rows 1 to {len(cells)}.")
            rows, untested = [h.row - 1], 0
        else:
            if col is not None and (h.below is not None or h.above is not None) and \
                    all(row[col].written is None for row in cells):
                raise ToolError(f"{columns[col].header} holds no numbers, so below/above cannot test it.")
            rows, untested = _matching(cells, col, h)
        only_cell = col is not None and (h.cell or not (tested or h.row))
        fill = font = None
        if h.fill:
            fill, font = COLOURS.get(h.fill) or (_HEX.fullmatch(h.fill)[1].upper(), None)  # type: ignore[index]
            if h.fill not in COLOURS:
                font = "FFFFFF" if _dark(fill) else None
        for r in rows:
            for c in ([col] if only_cell else range(len(columns))):
                style = styles.setdefault((r, c), Style())
                style.fill, style.font = (fill, font) if fill else (style.fill, style.font)
                style.bold = style.bold or h.bold
        what = _describe(h, columns[col].header if col is not None else "", only_cell)
        said.append(f"{what}: {'rows ' + ', '.join(str(r + 1) for r in rows) if rows else 'no row matched'}"
                    + (f" ({untested} formula cells not tested)" if untested else ""))
    return styles, "; ".join(said)


def _matching(cells: list[list[Cell]], col: int | None, h: Highlight) -> tuple[list[int], int]:
    if col is None or (h.below is None and h.above is None and not h.equals):
        return list(range(len(cells))), 0  # nothing to test: every row (or the whole column)
    rows, untested = [], 0
    number = parse(h.equals).written if h.equals else None  # "$950" equals a cell written "$950.00"
    for r, row in enumerate(cells):
        x = row[col]
        if x.kind == "formula":
            untested += 1
            continue
        if h.equals:
            text = x.value.isoformat() if isinstance(x.value, date) else str(x.value if x.kind != "empty" else "")
            same = (number is not None and x.written is not None and abs(number - x.written) < 1e-9) or \
                text.strip().lower() == h.equals.strip().lower()
            if not same:
                continue
        if h.below is not None or h.above is not None:
            if x.written is None or (h.below is not None and not x.written < h.below) or \
                    (h.above is not None and not x.written > h.above):
                continue
        rows.append(r)
    return rows, untested


def _describe(h: Highlight, header: str, only_cell: bool) -> str:
    test = (f"row {h.row}" if h.row else " and ".join(filter(None, [
        f"{header} below {h.below:g}" if h.below is not None else "",
        f"{header} above {h.above:g}" if h.above is not None else "",
        f"{header} = {h.equals}" if h.equals else ""])) or "every row")
    how = " and ".join(filter(None, [h.fill, "bold" if h.bold else ""]))
    return f"{test} {how}" + (f" ({header} cell)" if only_cell else "")


def _dark(rgb: str) -> bool:
    r, g, b = (int(rgb[i:i + 2], 16) for i in (0, 2, 4))
    return 0.299 * r + 0.587 * g + 0.114 * b < 140


def _column_index(columns: list[Column], name: str) -> int:
    want = name.strip().lower()
    for c, col in enumerate(columns):
        if col.header.strip().lower() == want:
            return c
    raise ToolError(f"No column is called {name!r}; the headers are: {', '.join(c.header for c in columns)}.")


# Charts ----------------------------------------------------------------------------


@dataclass
class ChartPlan:
    label: int  # the column giving the categories
    series: list[int]
    categories: list[Any]
    values: list[list[float | None]]  # per series, per category
    rows: list[int]  # the data rows charted (from 0), when not aggregated
    how: str = ""  # "sum" or "mean" when rows shared a label
    left_out: list[str] = field(default_factory=list)
    time: bool = False

    def describe(self, columns: list[Column], line: bool) -> str:
        names = ", ".join(columns[c].header for c in self.series)
        text = f"{'line' if line else 'column'} chart of {names} by {columns[self.label].header}"
        if self.how:
            text += f" ({'summed' if self.how == 'sum' else 'averaged'} per {columns[self.label].header})"
        if self.left_out:
            text += f"; not charted (another unit): {', '.join(self.left_out)}"
        return text


def plan_chart(columns: list[Column], cells: list[list[Cell]], named: list[str]) -> ChartPlan | None:
    """What to chart, or None when the table has nothing chartable (fewer than 2 categories)."""
    label = _label_column(columns)
    rows = [r for r, row in enumerate(cells)
            if row[label].kind != "empty" and not _TOTAL.match(str(row[label].value))]
    chartable = [c for c, col in enumerate(columns)
                 if c != label and col.numeric and all(cells[r][c].kind != "formula" for r in rows)
                 and any(cells[r][c].kind != "empty" for r in rows)]
    if named:
        series = [_column_index(columns, n) for n in named]
        for c in series:
            if c not in chartable:
                why = "holds formulas" if columns[c].numeric else "is not numeric"
                raise ToolError(f"{columns[c].header} cannot be charted: it {why} (or it is the label column).")
        left_out: list[str] = []
    else:
        chartable = [c for c in chartable if not (columns[c].kind == "number" and _DIMENSION.search(columns[c].header))]
        if not chartable:
            return None
        unit = columns[chartable[0]].unit
        series = [c for c in chartable if _same_unit(columns[c].unit, unit)]
        left_out = [columns[c].header for c in chartable if c not in series]
    keys: dict[Any, list[int]] = {}
    for r in rows:
        value = cells[r][label].value
        keys.setdefault(value.isoformat() if isinstance(value, date) else value, []).append(r)
    if len(keys) < 2:
        return None
    how = "" if all(len(v) == 1 for v in keys.values()) else "sum"
    values = []
    for c in series:
        mean = columns[c].kind == "percent"
        per = []
        for group in keys.values():
            nums = [cells[r][c].value for r in group if cells[r][c].kind != "empty"]
            per.append(None if not nums else sum(nums) / len(nums) if mean else sum(nums))
        values.append(per)
    if how and any(columns[c].kind == "percent" for c in series):
        how = "mean" if all(columns[c].kind == "percent" for c in series) else "sum"
    time = columns[label].kind == "date" or bool(_TIME.search(columns[label].header))
    return ChartPlan(label, series, list(keys), values, rows, how, left_out, time)


def axis_format(col: Column, values: list[float]) -> str | None:
    """The value axis's number format: the series' currency or percent sign, whole numbers
    from 10 up (45,000 rather than 45,000.00)."""
    big = bool(values) and max(abs(v) for v in values) >= 10
    if col.kind == "percent":
        return col.excel_format()
    if col.kind == "money":
        return Column(col.header, "money", col.pre, col.post, 0 if big else col.decimals).excel_format()
    return "#,##0" if big else None


def _same_unit(a: str, b: str) -> bool:
    return a == b or (a.startswith("money") and b.startswith("money") and "money" in (a, b))


def _label_column(columns: list[Column]) -> int:
    """The model's first column when it reads as labels or time; else the first that does."""
    if columns[0].kind in ("text", "date") or _TIME.search(columns[0].header):
        return 0
    for c, col in enumerate(columns):
        if col.kind in ("text", "date"):
            return c
    for c, col in enumerate(columns):
        if _LABELISH.search(col.header):
            return c
    return 0


# Widths ----------------------------------------------------------------------------


def content_widths(columns: list[Column], shown: list[list[str]], cap: int = 40) -> list[int]:
    """Characters each column needs: its longest shown cell or header (bold headers count a
    little wider), capped so one long text wraps rather than squeezing the numbers."""
    widths = []
    for c, col in enumerate(columns):
        longest = max((len(row[c]) for row in shown), default=0)
        widths.append(max(3, min(cap, max(longest, round(len(col.header) * 1.1)))))
    return widths


def shares(widths: list[int], total: int) -> list[int]:
    """`total` (EMU, twips...) split in proportion to the widths, summing exactly to it."""
    whole = sum(widths)
    parts = [total * w // whole for w in widths]
    parts[-1] += total - sum(parts)
    return parts
