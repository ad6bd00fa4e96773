"""Numbers as people write them in tables, and how a produced table shows them.

The model gives cells as JSON numbers or as text the way the source had them:
"$1,200.50", "€1.200", "1.234,50 €", "CHF 950", "12.5%", "(300)". Every produced
format (xlsx, pptx, docx, md) reads them here, so a column looks the same everywhere:

- a cell is parsed into what a spreadsheet holds (a number; a percentage as the
  fraction Excel stores, 0.125 for "12.5%"; a date; text; a formula) and the number
  as written (12.5 for "12.5%"), which is what a highlight rule compares;
- a column gets one kind - money (with the currency and its place as written),
  percent, number, date or text - and one number of decimals: money 0 or 2,
  percentages 0-2 (enough for the data, never 0.12500000001), other decimals 1-2;
- the decimal mark is decided per column: "1.234,50" and "12,5%" are decimal commas,
  "1,234.50" a decimal point; an ambiguous "1.234" follows the column's other
  cells (or a currency written after the number, as in "1.234 €");
- a header can say what bare numbers are: "Revenue ($)" is dollars, "Spend" or "Cost"
  is money, "CTR" / "Growth %" hold percentages (fractions, or points when over 1);
- text with a leading zero ("007", postcodes) or more than 15 digits (order and card
  numbers; Excel keeps 15) stays text.

Excel number formats always use "," for thousands and "." for decimals; Excel shows
them in the reader's own convention. Rendered text (deck, memo, Markdown) keeps the
data's convention: "1.234,50 €" stays that way.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

_CODES = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "CNY": "¥"}
_OTHER_CODES = "CHF|CAD|AUD|NZD|SEK|NOK|DKK|PLN|CZK|HUF|BRL|MXN|ZAR|SGD|HKD|KRW|TRY|ILS"
_CURRENCY = rf"US\$|A\$|C\$|NZ\$|HK\$|S\$|R\$|\$|€|£|¥|₹|₩|₽|₺|₪|₫|฿|zł|Kč|kr|Fr\.|{'|'.join(_CODES)}|{_OTHER_CODES}"
_CELL = re.compile(
    rf"(?P<sign>[-−+])?\s*(?P<pre>(?:{_CURRENCY})\s?)?(?P<sign2>[-−])?\s*"
    rf"(?P<num>\d[\d.,'\u00a0\u202f ]*?)(?P<post>\s?(?:{_CURRENCY}|%))?")
_HEADER_CURRENCY = re.compile(rf"(?:^|[\s(\[])({_CURRENCY})(?:$|[\s)\]])")
_MONEY_WORDS = re.compile(r"spend|cost|revenue|sales|price|budget|profit|income|amount|fee|salary|payment|"
                          r"invoice|turnover|umsatz|kosten|betrag|preis|\bpaid\b|\bdue\b|balance|expense", re.I)
_PERCENT_HEADER = re.compile(r"%|percent|\bpct\b|\bctr\b|\bcvr\b|"
                             r"\b(conversion|churn|bounce|open|click|growth|win|retention)\s+rate\b", re.I)
_NO_SEPARATOR = re.compile(r"year|week|\bid\b|^no\b|number|code|zip|postcode|phone", re.I)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?")
_PLACEHOLDER = {"", "-", "–", "—", "n/a", "na", "n.a.", "tbd"}  # an empty cell, however written
NUMERIC = ("number", "money", "percent")
MAX_NUMBER_TEXT = 40


@dataclass
class Cell:
    value: Any  # as a spreadsheet holds it
    kind: str = "text"  # text | empty | formula | date | number | money | percent
    written: float | None = None  # the number as written: 12.5 for "12.5%"
    pre: str = ""  # currency as written before / after the number
    post: str = ""
    decimals: int = 0  # written after the decimal mark
    grouped: bool = False  # written with thousands separators
    comma: bool | None = None  # True: proves a decimal comma; False: a decimal point; None: no evidence
    implied: str | None = None  # a format the cell itself implies (dates)


def parse(raw: Any, comma: bool = False) -> Cell:
    """One cell; `comma` settles an ambiguous "1.234" / "1,234" (decimal comma or not)."""
    if raw is None:
        return Cell(None, "empty")
    if isinstance(raw, bool):
        return Cell(raw)
    if isinstance(raw, (int, float)):
        return Cell(raw, "number", written=raw, decimals=_decimals_of(raw))
    if isinstance(raw, (date, datetime)):
        return Cell(raw, "date")
    text = str(raw).strip()
    if len(text) > MAX_NUMBER_TEXT:  # no number is written that long; the patterns below need not see it
        return Cell(raw, "formula" if text.startswith("=") else "text")
    if text.lower() in _PLACEHOLDER:
        return Cell(raw, "empty")
    if text.startswith("="):
        return Cell(text, "formula")
    for pattern, make, fmt in ((_ISO_DATE, date.fromisoformat, "yyyy-mm-dd"),
                               (_ISO_DATETIME, datetime.fromisoformat, "yyyy-mm-dd hh:mm")):
        if pattern.fullmatch(text):
            try:
                return Cell(make(text), "date", implied=fmt)
            except ValueError:
                return Cell(raw)
    negative = text.startswith("(") and text.endswith(")")
    m = _CELL.fullmatch(text[1:-1].strip() if negative else text)
    if not m or (m["pre"] and m["post"]) or (m["sign"] and m["sign2"]):
        return Cell(raw)
    number = _number(m["num"].strip(), comma, money=bool(m["pre"] or (m["post"] or "").strip() not in ("", "%")))
    if number is None:
        return Cell(raw)
    value, decimals, grouped, evidence = number
    if negative or (m["sign"] or m["sign2"]) in ("-", "−"):
        value = -value
    post = m["post"] or ""
    if post.strip() == "%":
        return Cell(value / 100, "percent", written=value, post=post, decimals=decimals, grouped=grouped,
                    comma=evidence)
    if m["pre"] or post:
        return Cell(value, "money", written=value, pre=m["pre"] or "", post=post, decimals=decimals,
                    grouped=grouped, comma=evidence)
    return Cell(value, "number", written=value, decimals=decimals, grouped=grouped, comma=evidence)


def _number(num: str, comma: bool, money: bool) -> tuple[int | float, int, bool, bool | None] | None:
    """Digits with separators as a number: (value, decimals written, grouped, decimal-comma evidence).
    An ambiguous "1.234" follows `comma`; with a currency it is a thousand ("€1.200"), as money
    has 0 or 2 decimals."""
    s = re.sub(r"[\u00a0\u202f ']", " ", num)
    grouped = False
    if " " in s:  # "1 234,50", "1'234.50": spaces or apostrophes group thousands
        m = re.fullmatch(r"(\d{1,3}(?: \d{3})+)([.,]\d+)?", s)
        if not m:
            return None
        s, grouped = m[1].replace(" ", "") + (m[2] or ""), True
    dots, commas = s.count("."), s.count(",")
    if dots and commas:  # "1.234,50" or "1,234.50": the last one is the decimal mark
        mark = "," if s.rfind(",") > s.rfind(".") else "."
        evidence: bool | None = mark == ","
    elif dots + commas == 0:
        mark, evidence = "", None
    elif dots > 1 or commas > 1:  # "1.234.567": only grouping
        mark, evidence = "", dots > 1
    else:
        sep = "," if commas else "."
        head, tail = s.split(sep)
        if len(tail) == 3 and 1 <= len(head) <= 3 and head[0] != "0":  # "1.234": the column decides
            mark, evidence = (sep if (sep == ",") == comma and not money else ""), None
        else:
            mark, evidence = sep, sep == ","
    return _digits(s, mark, grouped, evidence)


def _digits(s: str, mark: str, grouped: bool, evidence: bool | None) -> tuple[int | float, int, bool, bool | None] | None:
    thousands = {"": ",.", ",": ".", ".": ","}[mark]
    head, _, tail = s.partition(mark) if mark else (s, "", "")
    if mark and not tail.isdigit():
        return None
    groups = re.split(f"[{re.escape(thousands)}]", head)
    if len(groups) > 1:
        if not (1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])):
            return None
        grouped = True
    digits = "".join(groups)
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0") or len(digits) > 15:
        return None  # "007", postcodes, card and order numbers beyond Excel's 15 digits: text
    if not tail:
        return int(digits), 0, grouped, evidence
    return float(f"{digits}.{tail}"), len(tail), grouped, evidence


def _decimals_of(x: int | float) -> int:
    """Decimals a JSON number really has: 12.500000001 (float noise) has 1; 1/3 has "many" (9)."""
    if isinstance(x, int) or float(x).is_integer():
        return 0
    for d in (1, 2, 3):
        if abs(x - round(x, d)) < 1e-6 * max(1.0, abs(x)):
            return d
    return 9


@dataclass
class Column:
    header: str
    kind: str = "text"  # text | date | number | money | percent
    pre: str = ""  # the currency as written, before or after the number ("$", " €", "CHF ")
    post: str = ""
    decimals: int = 0
    grouped: bool = False
    comma: bool = False  # the data writes decimal commas
    points: bool = False  # a percent column whose numbers are points (12.5 means 12.5%)

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC

    @property
    def right(self) -> bool:
        return self.kind in NUMERIC or self.kind == "date"

    @property
    def unit(self) -> str:
        """What the column measures, for deciding which columns share a chart's axis."""
        if self.kind == "money":
            return f"money {(self.pre + self.post).strip()}".strip()
        return "percent points" if self.points else self.kind

    def excel_format(self, cell: Cell | None = None) -> str | None:
        pre, post = (cell.pre, cell.post) if cell is not None and cell.kind == "money" else (self.pre, self.post)
        dec = "." + "0" * self.decimals if self.decimals else ""
        if self.kind == "money":
            return _quoted(pre) + "#,##0" + dec + _quoted(post)
        if self.kind == "percent":
            return "0" + dec + ('"%"' if self.points else "%")
        if self.kind == "number" and (self.grouped or self.decimals):
            return ("#,##0" if self.grouped else "0") + dec
        return None

    def show(self, cell: Cell) -> str:
        """The cell as text in a deck, memo or Markdown table."""
        if cell.kind == "empty":
            return "" if cell.value is None else str(cell.value).strip()
        if not self.numeric or cell.kind not in NUMERIC or not isinstance(cell.value, (int, float)):
            return str(cell.value)
        if self.kind == "percent":
            return self._digits(cell.value if self.points else cell.value * 100, False) + "%"
        text = self._digits(abs(cell.value), self.kind == "money" or self.grouped)
        if self.kind == "money":
            pre, post = (cell.pre, cell.post) if cell.kind == "money" else (self.pre, self.post)
            return ("-" if cell.value < 0 else "") + pre + text + post
        return ("-" if cell.value < 0 else "") + text

    def _digits(self, value: float, grouped: bool) -> str:
        text = f"{value:{',' if grouped else ''}.{self.decimals}f}"
        if text.startswith("-") and float(text) == 0:
            text = text[1:]
        return text.translate(str.maketrans(",.", ".,")) if self.comma else text


def _quoted(symbol: str) -> str:
    return f'"{symbol}"' if symbol else ""


def analyse(rows: list[list[Any]]) -> tuple[list[Column], list[list[Cell]]]:
    """Each column's kind and format, and every data cell parsed (the header row is not)."""
    header = ["" if h is None else str(h) for h in rows[0]]
    cells = [[parse(v) for v in row] for row in rows[1:]]
    columns = []
    for c, head in enumerate(header):
        votes = Counter(x.comma for row in cells if (x := row[c]).comma is not None)
        after = any(x.kind == "money" and x.post.startswith(" ") for row in cells if (x := row[c]))
        comma = votes[True] > votes[False] if votes else after
        if comma:  # read again: an ambiguous "1.234" is a thousand here
            for r, row in enumerate(rows[1:]):
                cells[r][c] = parse(row[c], comma)
        columns.append(_column(head, [row[c] for row in cells], comma))
    return columns, cells


def _column(header: str, cells: list[Cell], comma: bool) -> Column:
    kinds = {x.kind for x in cells} - {"empty", "formula"}
    col = Column(header, comma=comma)
    if kinds == {"date"}:
        col.kind = "date"
    if not kinds or not kinds <= set(NUMERIC):
        return col
    numbers = [x for x in cells if x.kind in NUMERIC]
    bare = [x.value for x in numbers if x.kind == "number"]
    said = _HEADER_CURRENCY.search(header)
    if "money" in kinds:
        col.kind = "money"
        written = Counter((x.pre, x.post) for x in numbers if x.kind == "money")
        col.pre, col.post = written.most_common(1)[0][0]  # the usual one; a cell may differ
    elif "percent" in kinds:
        col.kind = "percent"
        for x in numbers:  # a bare 3.1 beside "2.5%" means 3.1 %
            if x.kind == "number" and abs(x.value) > 1:
                x.value, x.kind, x.decimals = x.value / 100, "percent", _decimals_of(x.value)
    elif _PERCENT_HEADER.search(header) and all(abs(v) <= 1 for v in bare):
        col.kind = "percent"  # fractions, as Excel stores them
    elif "%" in header:
        col.kind, col.points = "percent", True  # "Growth %": 12.5 means 12.5 %
    elif said:
        symbol = _CODES.get(said[1], said[1])
        col.kind = "money"
        if not symbol[0].isalpha():
            col.pre = symbol
        elif symbol.isupper():
            col.pre = symbol + " "
        else:
            col.post = " " + symbol  # kr, zł, Kč go after
    else:
        col.kind = "money" if _MONEY_WORDS.search(header) else "number"
    if col.kind == "money":
        col.decimals = 2 if any(x.decimals for x in numbers) else 0
        col.grouped = True
        return col
    if col.kind == "percent":
        shown = [x.decimals if x.kind == "percent" else _decimals_of(x.value if col.points else x.value * 100)
                 for x in numbers]
        col.decimals = min(max(shown), 2) if max(shown) <= 3 else 1  # float noise: one decimal reads best
        return col
    most = max(x.decimals for x in numbers)
    col.decimals = min(most, 2)
    big = any(abs(x.value) >= 10_000 for x in numbers)
    col.grouped = not _NO_SEPARATOR.search(header) and (big or bool(col.decimals) or any(x.grouped for x in numbers))
    return col
