"""Document formats as Markdown: the walk over each library's document model. This
runs only inside the parse worker (tools.documents.worker), never in Dispatch's own
process: a hostile file can cost memory and time, and there they are capped.


Why these libraries and not one converter. markitdown (Microsoft's any-file-to-
Markdown tool) was measured against the format libraries it wraps, on this machine
(Python 3.11, 2 cores, fresh virtualenvs, the same test files):

                      markitdown[pdf,docx,xlsx,pptx]   pypdf + python-docx + openpyxl
                                                       + python-pptx (this module)
    installed         +322 MB (pandas 84, onnxruntime  +49 MB (lxml and Pillow, which
                      68, numpy 73, pdfminer, magika,  Dispatch has anyway, are most
                      mammoth, cryptography ...)       of it)
    import            0.62-1.0 s, all formats at once  0.24 s for all four; each only
                                                       when a file of its kind is read
    30-page PDF       64 ms, no page boundaries        19 ms, "## Page n of N"
    300-para .docx    288 ms                           47 ms
    .xlsx             0.125 for a 12.5 % cell, NaN     12.5%, =SUM(B2:B3), dates
                      for a never-calculated formula
    locked PDF        PDFPasswordIncorrect traceback   "password-protected" sentence

The four libraries are maintained, are the ones the produce tools need anyway (a
deck is written with python-pptx, so reading one with it costs nothing extra), and
also give chart data on slides. What is written here is only the walk over each
library's document model into Markdown; no file format is parsed by hand.

Before a library opens an Office file (a ZIP), `check_zip` reads its directory and
refuses a bomb: members that inflate beyond `MAX_MEMBER_BYTES`, or together beyond
`MAX_INFLATED_BYTES`, or a big member packed more than `MAX_RATIO` times (real Office
XML packs 5-20x; a 59 KB .docx that inflated to 174 MB in RAM packed ~1000x). The
sizes come from the ZIP directory, which Python's zipfile then enforces while reading
(it stops a member at its declared size), so a lying directory cannot get around it.
Spreadsheets are read at the size of their data, not of their declared dimension
(one cell at XFD1048576 declares 17 billion cells).
"""

from __future__ import annotations

import zipfile
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Callable

from tools.registry import ToolError

MAX_CONVERTED_CHARS = 5_000_000  # conversion stops here (a page is 19,000 characters)
DOCUMENT_TYPES = {
    ".pdf": "PDF",
    ".docx": "Word document", ".docm": "Word document",
    ".xlsx": "Excel workbook", ".xlsm": "Excel workbook",
    ".pptx": "PowerPoint deck", ".pptm": "PowerPoint deck",
}
MAX_MEMBER_BYTES = 200 * 1024 * 1024  # one inflated part of an Office file
MAX_INFLATED_BYTES = 400 * 1024 * 1024  # all of them together
MAX_RATIO = 100  # packing ratio allowed for a member above RATIO_FLOOR bytes
RATIO_FLOOR = 2 * 1024 * 1024
MAX_MEMBERS = 10_000


def convert_here(path: Path, max_chars: int) -> str:
    """The document's text as Markdown, parsed in this process (the worker's). ToolError
    in words for anything unreadable; other exceptions mean the file broke the parser."""
    ext = path.suffix.lower()
    if ext != ".pdf":
        check_zip(path)
    out = _Out(max_chars)
    try:
        CONVERTERS[ext](path, out)
    except _Full:
        out.parts.append(f"\n\n[Conversion stopped at {max_chars:,} characters; the rest of {path.name} was not read.]")
    except (ToolError, MemoryError, RecursionError):
        raise
    except Exception as exc:
        raise ToolError(
            f"{path.name} could not be read as a {DOCUMENT_TYPES[ext]}: it is damaged or not really "
            f"a {ext} file ({type(exc).__name__}: {str(exc)[:200]})."
        ) from None
    text = "".join(out.parts).strip()
    return text + "\n" if text else f"({path.name} contains no text.)\n"


def check_zip(path: Path) -> None:
    """Refuse a ZIP bomb before any library inflates it (see the module docstring)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a readable ZIP: the library says "damaged" in its own words
    kind = DOCUMENT_TYPES.get(path.suffix.lower(), "document")
    why = ""
    total = sum(m.file_size for m in members)
    if len(members) > MAX_MEMBERS:
        why = f"it holds {len(members):,} parts"
    elif total > MAX_INFLATED_BYTES:
        why = f"it would inflate to {total / 1024**2:,.0f} MB"
    for m in members:
        if why:
            break
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size > MAX_MEMBER_BYTES:
            why = f"its part {m.filename} would inflate to {m.file_size / 1024**2:,.0f} MB"
        elif m.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
            why = (f"its part {m.filename} is packed {ratio:,.0f} times ({m.compress_size:,} bytes that "
                   f"inflate to {m.file_size / 1024**2:,.0f} MB), which real {kind}s never are")
    if why:
        raise ToolError(f"{path.name} was not opened: {why}. It looks like a decompression bomb, made to "
                        "exhaust memory; if it is genuine, open it on the desktop.")


class _Full(Exception):
    pass


class _Out:
    """Collects Markdown and stops the converter once it has enough."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > self.limit:
            raise _Full


def _cell(value: Any) -> str:
    """A table cell as Markdown: one line, pipes escaped."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.10g}"
    elif isinstance(value, datetime):
        text = value.isoformat(sep=" ", timespec="minutes") if value.time() != time() else value.date().isoformat()
    elif isinstance(value, (date, time)):
        text = value.isoformat()
    else:
        text = str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n\n"


# PDF ----------------------------------------------------------------------------


def _pdf(path: Path, out: _Out) -> None:
    import pypdf
    from pypdf.errors import DependencyError

    reader = pypdf.PdfReader(path, strict=False)
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # many PDFs only restrict printing/copying
        except DependencyError:
            opened = 0
        if not opened:
            raise ToolError(
                f"{path.name} is password-protected, so it cannot be read. Send a copy without "
                "the password, or open it on the desktop."
            )
    pages = len(reader.pages)
    empty = 0
    for number, page in enumerate(reader.pages, 1):
        text = (page.extract_text() or "").strip()
        if not text:
            empty += 1
        out.add(f"## Page {number} of {pages}\n\n{text or '(no text on this page)'}\n\n")
    if pages and empty == pages:
        out.add(f"[{path.name} has no text layer: it is probably scanned images, and Dispatch has no OCR.]\n")


# Word ---------------------------------------------------------------------------


def _docx(path: Path, out: _Out) -> None:
    import docx
    from docx.table import Table

    document = docx.Document(str(path))
    # Style names by id, looked up once (Paragraph.style searches the styles part each time).
    styles = {st.style_id: st.name or "" for st in document.styles}
    listing = False  # list items are single lines; anything after them starts a new block
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            out.add(("\n" if listing else "") + _table([[_cell(c.text) for c in row.cells] for row in block.rows]))
            listing = False
            continue
        text = block.text.strip()
        if not text:
            continue
        ppr = block._p.pPr
        style_id = ppr.pStyle.val if ppr is not None and ppr.pStyle is not None else None
        low = (styles.get(style_id) or "").lower()
        is_item = "list" in low or ppr is not None and ppr.numPr is not None
        if listing and not is_item:
            out.add("\n")
        listing = is_item
        if low == "title":
            out.add(f"# {text}\n\n")
        elif low.startswith("heading") and low[7:].strip().isdigit():
            out.add(f"{'#' * min(int(low[7:]), 6)} {text}\n\n")
        elif is_item:
            marker = "1." if "number" in low else "-"
            indent = "  " * (int(low[-1]) - 1) if low[-1:].isdigit() else ""
            out.add(f"{indent}{marker} {text}\n")
        else:
            out.add(f"{text}\n\n")


# Excel --------------------------------------------------------------------------


def _xlsx(path: Path, out: _Out) -> None:
    import openpyxl

    values = openpyxl.load_workbook(path, read_only=True, data_only=True)
    formulas = openpyxl.load_workbook(path, read_only=True, data_only=False)
    try:
        for sheet in values.worksheets:
            rows: list[tuple[int, dict[int, str]]] = []
            size = 0
            for (number, vcells), (_, fcells) in zip(_stored_rows(sheet), _stored_rows(formulas[sheet.title])):
                cells = {col: text for col in vcells.keys() | fcells.keys()
                         if (text := _xlsx_cell(vcells.get(col), fcells.get(col)))}
                if cells:
                    rows.append((number, cells))
                    size += sum(len(c) for c in cells.values())
                    if size > out.limit:
                        break
            out.add(f"## Sheet: {sheet.title}\n\n")
            out.add(_sheet_table(rows) if rows else "(empty sheet)\n\n")
    finally:
        values.close()
        formulas.close()


def _stored_rows(sheet: Any) -> Any:
    """(row number, {column: cell}) for the rows and cells the file actually stores.
    openpyxl's iter_rows pads every row to the declared dimension (<dimension
    ref="A1:XFD1048576"/> is whatever the file says: 17 billion cells for one far
    cell) and yields each missing row; its sheet parser (openpyxl 3.1) yields only
    what is there, so the walk is the size of the data."""
    from openpyxl.cell.read_only import ReadOnlyCell
    from openpyxl.worksheet._reader import WorkSheetParser

    wb = sheet.parent
    with sheet._get_source() as src:
        parser = WorkSheetParser(src, sheet._shared_strings, data_only=wb.data_only, epoch=wb.epoch,
                                 date_formats=wb._date_formats, timedelta_formats=wb._timedelta_formats)
        for number, cells in parser.parse():
            yield number, {c["column"]: ReadOnlyCell(sheet, **c) for c in cells}


def _sheet_table(rows: list[tuple[int, dict[int, str]]]) -> str:
    """The rows as a table, from column A to the last column with data. A sparse sheet
    (data far apart, e.g. one cell at XFD1048576) shows only the rows and columns that
    hold data, labelled with their Excel names: the table is the size of the data."""
    used = sorted({col for _, cells in rows for col in cells})
    gaps = rows[-1][0] - rows[0][0] + 1 - len(rows)
    if used[-1] <= 2 * len(used) + 20 and gaps <= 2 * len(rows) + 20:
        return _table([[cells.get(col, "") for col in range(1, used[-1] + 1)] for _, cells in rows])
    from openpyxl.utils import get_column_letter

    head = ["row", *(get_column_letter(col) for col in used)]
    body = [[str(n), *(cells.get(col, "") for col in used)] for n, cells in rows]
    return ("(Only the rows and columns that hold data are shown, with their Excel row numbers and "
            "column letters.)\n\n" + _table([head, *body]))


def _xlsx_cell(vcell: Any, fcell: Any) -> str:
    value = getattr(vcell, "value", None)
    if value is None:
        formula = getattr(fcell, "value", None)
        # A workbook written by a program and never opened in Excel has no cached
        # results: the formula itself is the best we can show.
        return _cell(formula) if isinstance(formula, str) and formula.startswith("=") else ""
    fmt = getattr(vcell, "number_format", "") or ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "%" in fmt:
        return f"{value * 100:.10g}%"
    return _cell(value)


# PowerPoint ---------------------------------------------------------------------


def _pptx(path: Path, out: _Out) -> None:
    import pptx

    deck = pptx.Presentation(str(path))
    total = len(deck.slides)
    for number, slide in enumerate(deck.slides, 1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else ""
        out.add(f"## Slide {number} of {total}" + (f": {title}" if title else "") + "\n\n")
        for shape in slide.shapes:
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            _shape(shape, out)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            text = notes.text.strip() if notes is not None else ""
            if text:
                out.add(f"Notes: {text}\n\n")


def _shape(shape: Any, out: _Out) -> None:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        for inner in shape.shapes:
            _shape(inner, out)
        return
    if getattr(shape, "has_table", False) and shape.has_table:
        out.add(_table([[_cell(c.text) for c in row.cells] for row in shape.table.rows]))
        return
    if getattr(shape, "has_chart", False) and shape.has_chart:
        chart = shape.chart
        name = chart.chart_title.text_frame.text if chart.has_title else ""
        out.add(f"Chart{': ' + name if name else ''}\n")
        categories = [_cell(c) for c in chart.plots[0].categories] if len(chart.plots) else []
        if categories:
            out.add(f"- categories: {', '.join(categories)}\n")
        for series in chart.series:
            out.add(f"- {series.name}: {', '.join(_cell(v) for v in series.values)}\n")
        out.add("\n")
        return
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        paras = [(p.level, " ".join(p.text.split())) for p in shape.text_frame.paragraphs]
        paras = [(level, text) for level, text in paras if text]
        if len(paras) == 1 and paras[0][0] == 0:  # a subtitle or a caption, not a list
            out.add(paras[0][1] + "\n\n")
            return
        lines = ["  " * level + f"- {text}" for level, text in paras]
        if lines:
            out.add("\n".join(lines) + "\n\n")


CONVERTERS: dict[str, Callable[[Path, _Out], None]] = {
    ".pdf": _pdf,
    ".docx": _docx, ".docm": _docx,
    ".xlsx": _xlsx, ".xlsm": _xlsx,
    ".pptx": _pptx, ".pptm": _pptx,
}

