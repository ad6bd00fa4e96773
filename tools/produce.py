"""Producing deliverables: spreadsheets, memos and decks, written into the outbox.

Three tools, each choosing the format by the file name's extension, so the model
has few tools to choose between:
- `make_spreadsheet`: .xlsx (formatted, with a chart: tools.documents.sheets), .csv, or .md
  (a Markdown table);
- `make_document`: .docx (a Word memo from Markdown, optionally in the owner's
  template: tools.documents.memo), or .md / .txt as written;
- `make_deck`: .pptx, optionally from the owner's template (tools.documents.deck).

Tables look the same in every format: money, percentages and numbers are read as
written and shown with their currency and sensible decimals, numeric columns right-
aligned with their headers, widths fitted to the content (tools.documents.numbers);
highlights (`highlight`: rows picked by a test on a column, or by number) and charts
of one unit's series with de-duplicated categories are planned once
(tools.documents.tables). A highlight needs colours, so .csv refuses it and .md
takes bold only.

Where files go (tools.filesystem.paths.resolve_for_write): a bare name lands in the outbox;
the workspace and the folders in DISPATCH_WRITABLE_ROOTS are allowed too; nothing
else. Existing files are never overwritten: "recap.xlsx" taken means "recap
(2).xlsx", and the result says so (an `overwrite` flag was left out on purpose: it
costs prompt tokens on three tools, and a new name is never a loss).
Every file is written to a temporary name beside the target and then linked into
place (a hard link fails if the name was taken meanwhile, so even two tools racing
never clobber each other), then indexed at once so find_files sees it.

Templates (.pptx/.potx, .docx/.dotx) are read from any allowed folder; the
template forms (.potx/.dotx) are opened by rewriting one content type in a
temporary copy, which is what "New from template" does in Office.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Literal

from tools.filesystem import index
from tools.documents.deck import Slide
from tools.documents.tables import Highlight
from tools.documents.readers import MAX_DOCUMENT_BYTES, OLE_MAGIC, human_size
from tools.filesystem.paths import allowed_roots, resolve, resolve_for_write
from tools.registry import Effect, ToolContext, ToolError, tool

TEMPLATE_TYPES = {
    ".potx": ("application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
              "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml"),
    ".dotx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
              "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"),
}


@tool(connector="files", effect=Effect.WRITE)
def make_spreadsheet(
    ctx: ToolContext,
    name: str,
    rows: list[list[Any]],
    formats: dict[str, str] = {},  # noqa: B006 - pydantic copies defaults
    chart: Literal["auto", "bar", "line", "none"] = "auto",
    series: list[str] = [],  # noqa: B006
    highlight: list[Highlight] = [],  # noqa: B006
) -> str:
    """Save a table to the outbox as .xlsx (styled, charted), .csv or .md. Keep money and % as written ("1.234,50 €", "12.5%").

    Args:
        name: File name, e.g. recap.xlsx.
        rows: Header row, then data rows. "=SUM(B2:B9)" is a formula; ISO dates become dates.
        formats: Number format by column header, e.g. {"CTR": "0.0%"}.
        chart: auto (line over time, else bars), bar, line or none.
        series: Columns to chart (default: one unit's).
        highlight: Rows or cells to fill or bold.
    """
    from tools.documents import sheets

    target = _target(ctx, name, ".xlsx", {".xlsx", ".csv", ".md"})
    table = sheets.check_rows(rows)
    highlight = [Highlight.model_validate(h) if isinstance(h, dict) else h for h in highlight]
    ext = target.suffix.lower()
    if ext == ".csv":
        if highlight:
            raise ToolError("CSV holds no colours or bold: make an .xlsx to highlight.")
        return _save(ctx, target, lambda p: sheets.write_csv(p, table))
    if ext == ".md":
        text = sheets.markdown_table(table, highlight)
        return _save(ctx, target, lambda p: _write_text(p, text, f"{len(table) - 1} rows"))
    return _save(ctx, target, lambda p: sheets.write_xlsx(p, table, target.stem, formats, chart, series, highlight))


@tool(connector="files", effect=Effect.WRITE)
def make_document(ctx: ToolContext, name: str, markdown: str, template: str = "") -> str:
    """Save Markdown to the outbox as a Word memo (.docx: headings, lists, tables), .md or .txt.

    Args:
        name: File name, e.g. memo.docx.
        markdown: The content.
        template: A .docx/.dotx to take styles from.
    """
    target = _target(ctx, name, ".docx", {".docx", ".md", ".txt"})
    if not markdown.strip():
        raise ToolError("markdown is empty: there is nothing to write.")
    if target.suffix.lower() != ".docx":
        if template:
            raise ToolError("A template applies to .docx only.")
        return _save(ctx, target, lambda p: _write_text(p, markdown, ""))
    from tools.documents import memo

    with _template(ctx, template, {".docx", ".dotx"}) as tpl:
        return _save(ctx, target, lambda p: memo.write_docx(p, markdown, tpl))


@tool(connector="files", effect=Effect.WRITE)
def make_deck(ctx: ToolContext, name: str, slides: list[Slide], template: str = "") -> str:
    """Save a PowerPoint deck (.pptx) to the outbox, filling the layouts of a template if given.

    Args:
        name: File name, e.g. recap.pptx.
        slides: The slides in order.
        template: The owner's .pptx/.potx template.
    """
    from tools.documents import deck

    target = _target(ctx, name, ".pptx", {".pptx"})
    slides = [Slide.model_validate(s) if isinstance(s, dict) else s for s in slides]
    with _template(ctx, template, {".pptx", ".potx"}) as tpl:
        return _save(ctx, target, lambda p: deck.write_pptx(p, slides, tpl))


# Saving -------------------------------------------------------------------------


def _write_text(path: Path, text: str, what: str) -> str:
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return what


def _target(ctx: ToolContext, name: str, default_ext: str, allowed: set[str]) -> Path:
    name = name.strip()
    if name and not Path(name).suffix:
        name += default_ext
    target = resolve_for_write(ctx.settings, name)
    if target.suffix.lower() not in allowed:
        raise ToolError(f"{target.name}: this tool writes {', '.join(sorted(allowed))} files.")
    return target


def _save(ctx: ToolContext, target: Path, write: Callable[[Path], object], overwrite: bool = False) -> str:
    """Write through a temporary file; never replace an existing file unless asked
    (no tool asks today: the model gets a new name and says so, which is safe)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{uuid.uuid4().hex[:12]}.part{target.suffix}")
    try:
        try:
            what = write(tmp)
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(f"Could not write {target.name}: {type(exc).__name__}: {str(exc)[:200]}") from None
        existed = target.exists()
        final = target if overwrite else _claim(tmp, target)
        if overwrite:
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    index.note_file(ctx.settings.home, allowed_roots(ctx.settings), final)
    size = human_size(final.stat().st_size)
    detail = f" ({what})" if isinstance(what, str) and what else ""
    if final != target:
        note = f" {target.name} already existed and was left as it was; this is a new file."
    elif existed:
        note = " It replaced the earlier file of that name."
    else:
        note = ""
    return f"Saved {final}, {size}{detail}.{note} Send it with send_file when it is ready."


def _claim(tmp: Path, target: Path) -> Path:
    for n in range(1, 1000):
        candidate = target if n == 1 else target.with_name(f"{target.stem} ({n}){target.suffix}")
        try:
            os.link(tmp, candidate)  # atomic: fails if the name exists
            return candidate
        except FileExistsError:
            continue
        except OSError:  # no hard links here (FAT, some network drives)
            if candidate.exists():
                continue
            shutil.copyfile(tmp, candidate)
            return candidate
    raise ToolError(f"Too many files called {target.stem} (n){target.suffix}; choose another name.")


class _template:
    """The template as a path python-pptx/python-docx can open (None when not given)."""

    def __init__(self, ctx: ToolContext, raw: str, allowed: set[str]) -> None:
        self.ctx, self.raw, self.allowed = ctx, raw.strip(), allowed
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path | None:
        if not self.raw:
            return None
        path = resolve(self.ctx.settings, self.raw)
        ext = path.suffix.lower()
        if path.is_dir() or ext not in self.allowed:
            raise ToolError(f"{self.raw} is not a template this tool can use ({', '.join(sorted(self.allowed))}).")
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise ToolError(f"The template {path.name} is {human_size(size)}; the limit is {human_size(MAX_DOCUMENT_BYTES)}.")
        with open(path, "rb") as fh:
            if fh.read(8) == OLE_MAGIC:
                raise ToolError(f"The template {path.name} is password-protected; send an unprotected copy.")
        if not zipfile.is_zipfile(path):
            raise ToolError(f"The template {path.name} is damaged or not really a {ext} file.")
        if ext not in TEMPLATE_TYPES:
            return path
        self.tmp = tempfile.TemporaryDirectory(prefix="dispatch-template-")
        copy = Path(self.tmp.name) / (path.stem + {".potx": ".pptx", ".dotx": ".docx"}[ext])
        old, new = TEMPLATE_TYPES[ext]
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename == "[Content_Types].xml":
                    data = data.replace(old.encode(), new.encode())
                dst.writestr(item, data)
        return copy

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
