"""Reading documents in place: PDF, Word, Excel and PowerPoint as Markdown text.

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

Limits, so that a bad file is a sentence and not a crash:
- Documents above `MAX_DOCUMENT_BYTES` are refused with their size (a 2 GB file is
  never opened, let alone read into memory).
- Encrypted Office files (an OLE container where a ZIP is expected) and PDFs with a
  user password are refused as password-protected; damaged files as damaged.
- The file is looked at (size, modification time) before and after converting; if
  either changed, it was being written, and we say so instead of returning a mix.
- Converted text is cached under DISPATCH_HOME/cache/documents, keyed by path, size
  and modification time, so reading page 2 does not parse the file again.
"""

from __future__ import annotations

import hashlib
import os
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Callable

from tools.registry import ToolError

MAX_DOCUMENT_BYTES = 100 * 1024 * 1024  # documents above this are refused, with their size
MAX_CONVERTED_CHARS = 5_000_000  # conversion stops here (a page is 19,000 characters)
CACHE_FILES = 200  # converted documents kept on disk

DOCUMENT_TYPES = {
    ".pdf": "PDF",
    ".docx": "Word document", ".docm": "Word document",
    ".xlsx": "Excel workbook", ".xlsm": "Excel workbook",
    ".pptx": "PowerPoint deck", ".pptm": "PowerPoint deck",
}
LEGACY_OFFICE = {".doc": ".docx", ".xls": ".xlsx", ".ppt": ".pptx"}
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Compound File: old Office, or encrypted new Office


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def is_document(path: Path) -> bool:
    return path.suffix.lower() in DOCUMENT_TYPES or path.suffix.lower() in LEGACY_OFFICE


def looks_binary(path: Path) -> bool:
    """True when the first 4 KB hold a NUL byte: not something to read as text."""
    with open(path, "rb") as fh:
        return b"\x00" in fh.read(4096)


# Conversion --------------------------------------------------------------------


def check_readable(path: Path) -> os.stat_result:
    """Refuse what must not be parsed (too big, legacy, encrypted); returns its stat."""
    st = path.stat()
    ext = path.suffix.lower()
    if ext in LEGACY_OFFICE:
        raise ToolError(
            f"{path.name} is in the old Office format ({ext}), which Dispatch cannot read. "
            f"Save it as {LEGACY_OFFICE[ext]} on the desktop and ask again."
        )
    kind = DOCUMENT_TYPES.get(ext, "document")
    if st.st_size > MAX_DOCUMENT_BYTES:
        raise ToolError(
            f"{path.name} is {human_size(st.st_size)}; Dispatch reads documents up to "
            f"{human_size(MAX_DOCUMENT_BYTES)}. Open it on the desktop, or export the part you need."
        )
    if st.st_size == 0:
        raise ToolError(f"{path.name} is empty (0 bytes), so it is not a readable {kind}.")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if ext != ".pdf" and head == OLE_MAGIC:
        raise ToolError(
            f"{path.name} is password-protected (encrypted), so it cannot be read. Remove the "
            "password on the desktop (File > Info > Protect) or send an unprotected copy."
        )
    return st


def convert(path: Path, *, max_chars: int = MAX_CONVERTED_CHARS) -> str:
    """The document's text as Markdown. ToolError (in words) for anything unreadable."""
    before = check_readable(path)
    ext = path.suffix.lower()
    converter = CONVERTERS[ext]
    out = _Out(max_chars)
    try:
        converter(path, out)
    except _Full:
        out.parts.append(f"\n\n[Conversion stopped at {max_chars:,} characters; the rest of {path.name} was not read.]")
    except ToolError:
        raise
    except Exception as exc:
        _changed(path, before)  # a file being written looks damaged: say what really happened
        raise ToolError(
            f"{path.name} could not be read as a {DOCUMENT_TYPES[ext]}: it is damaged or not really "
            f"a {ext} file ({type(exc).__name__}: {str(exc)[:200]})."
        ) from None
    _changed(path, before)
    text = "".join(out.parts).strip()
    return text + "\n" if text else f"({path.name} contains no text.)\n"


def _changed(path: Path, before: os.stat_result) -> None:
    try:
        after = path.stat()
    except OSError:
        raise ToolError(f"{path.name} was moved or deleted while it was being read.") from None
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise ToolError(
            f"{path.name} changed while it was being read (it is still being written or synced). "
            "Try again in a moment."
        )


def document_text(cache_dir: Path, path: Path) -> str:
    """`convert`, cached on disk by (path, size, modification time)."""
    st = path.stat()
    key = hashlib.sha1(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    cached = cache_dir / f"{key}.md"
    if cached.exists():
        os.utime(cached)  # most recently used
        return cached.read_text(encoding="utf-8")
    text = convert(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, cached)
    _prune(cache_dir)
    return text


def _prune(cache_dir: Path) -> None:
    entries = sorted(cache_dir.glob("*.md"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[CACHE_FILES:]:
        old.unlink(missing_ok=True)


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
            rows: list[list[str]] = []
            for vrow, frow in zip(sheet.iter_rows(), formulas[sheet.title].iter_rows()):
                cells = [_xlsx_cell(v, f) for v, f in zip(vrow, frow)]
                while cells and not cells[-1]:
                    cells.pop()
                if cells:
                    rows.append(cells)
                if len(rows) % 200 == 0 and sum(len(c) for r in rows for c in r) > out.limit:
                    break
            out.add(f"## Sheet: {sheet.title}\n\n")
            out.add(_table(rows) if rows else "(empty sheet)\n\n")
    finally:
        values.close()
        formulas.close()


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


# Paging -------------------------------------------------------------------------


def more_note(next_offset: int) -> str:
    return f"\n\n[... more follows. Read the next page with offset={next_offset}.]"


def page_of(text: str, offset: int, limit: int, name: str) -> str:
    """One page of converted text, with the note that says how to read on."""
    if offset and offset >= len(text):
        return f"{name}: nothing after offset {offset}; the whole file has been read."
    page = text[offset: offset + limit]
    if offset + limit < len(text):
        page += more_note(offset + len(page))
    return page


def read_text_page(path: Path, offset: int, limit: int) -> str:
    """A page of a text file by character offset, without loading the whole file.

    Text files are not size-limited: a 2 GB log is read a page at a time, and a
    file that grows while read gets a warning with its page rather than an error
    (logs are always being written)."""
    before = path.stat()
    text, more = _read_chars(path, offset, limit)
    if offset and not text:
        return f"{path.name}: nothing after offset {offset}; the whole file has been read."
    if more:
        text += more_note(offset + len(text))
    try:
        after = path.stat()
    except OSError:
        after = None
    if after is None or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        text += f"\n\n[Note: {path.name} changed while it was being read; this page may be out of date.]"
    return text


def _read_chars(path: Path, offset: int, limit: int) -> tuple[str, bool]:
    """`limit` characters from character `offset`, and whether more follow."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        skip = offset
        while skip:  # character offsets, so multi-byte text pages cleanly
            got = len(fh.read(min(skip, 1 << 20)))
            if not got:
                break
            skip -= got
        return fh.read(limit), fh.read(1) != ""


def cache_dir_for(home: Path) -> Path:
    return home / "cache" / "documents"
