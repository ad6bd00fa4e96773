"""Reading documents in place through `read_text`, exactly as the runner calls it:
PDF (by page), Word, Excel (sheets as tables), PowerPoint (slides and notes), pages
with offsets, and every kind of bad input answered in words."""

from __future__ import annotations

import os
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.office_files import make_docx, make_pdf, make_pptx, make_xlsx
from tools.documents import readers as documents
from tools.documents import worker
from tools.registry import ToolContext

NOTE = re.compile(r"\n\n\[\.\.\. more follows\. Read the next page with offset=(\d+)\.\]$")


# `root` and `ctx` (a tool context over that one folder) are in conftest.py.


async def read(ctx: ToolContext, path: str | Path, **args: Any) -> str:
    return await helpers.call(ctx, "read_text", path=str(path), **args)


async def refused(ctx: ToolContext, path: str | Path, **args: Any) -> str:
    return await helpers.refused(ctx, "read_text", path=str(path), **args)


# Formats -------------------------------------------------------------------------


async def test_pdf_text_by_page(ctx: ToolContext, root: Path) -> None:
    make_pdf(root / "report.pdf", ["Revenue report\nTotal: 4,200 EUR", "Appendix (details)"])
    text = await read(ctx, root / "report.pdf")
    assert text.startswith("## Page 1 of 2\n\nRevenue report\nTotal: 4,200 EUR")
    assert "## Page 2 of 2\n\nAppendix (details)" in text


async def test_pdf_without_text_says_it_is_scanned(ctx: ToolContext, root: Path) -> None:
    make_pdf(root / "scan.pdf", ["", ""])
    text = await read(ctx, root / "scan.pdf")
    assert "(no text on this page)" in text and "no text layer" in text and "OCR" in text


async def test_word_headings_lists_and_tables(ctx: ToolContext, root: Path) -> None:
    make_docx(root / "memo.docx")
    text = await read(ctx, "memo.docx")
    assert text.startswith("# Quarterly memo\n\nRevenue grew in every region.\n\n## Risks\n\n")
    assert "- Supplier delays\n- Hiring freeze\n" in text
    assert "| Region | Revenue |\n|---|---|\n| North | 1,200 |\n| South \\| East | 950 |" in text
    assert text.rstrip().endswith("The end.")


async def test_excel_sheets_as_tables(ctx: ToolContext, root: Path) -> None:
    make_xlsx(root / "tracker.xlsx")
    text = await read(ctx, "tracker.xlsx")
    assert "## Sheet: Tracker\n\n| Week | Spend | CTR | Start |\n|---|---|---|---|\n" in text
    assert "| 22 | 1200.5 | 12.5% | 2025-05-26 |" in text, "percent format and dates as people see them"
    assert "| Total | =SUM(B2:B3) |" in text, "never calculated: the formula is shown"
    assert "## Sheet: Notes\n\n| Owner | Sam |" in text
    assert "## Sheet: Empty\n\n(empty sheet)" in text


async def test_powerpoint_slides_and_notes(ctx: ToolContext, root: Path) -> None:
    make_pptx(root / "kickoff.pptx")
    text = await read(ctx, "kickoff.pptx")
    assert text.startswith("## Slide 1 of 3: Kick-off\n\nProject Falcon\n")
    assert "## Slide 2 of 3: Goals\n\n- Ship the beta\n  - in June\n\nNotes: Mention the budget." in text
    assert "## Slide 3 of 3: Numbers\n\n| Metric | Value |\n|---|---|\n| Users | 4200 |" in text


async def test_csv_and_markdown_are_read_as_they_are(ctx: ToolContext, root: Path) -> None:
    (root / "t.csv").write_text("week,signups\n45,120\n", encoding="utf-8")
    (root / "n.md").write_text("# Notes\n\n- a\n", encoding="utf-8")
    assert await read(ctx, "t.csv") == "week,signups\n45,120\n"
    assert await read(ctx, "n.md") == "# Notes\n\n- a\n"


# Pages -------------------------------------------------------------------------


async def test_a_long_document_is_read_in_pages_and_converted_once(
    ctx: ToolContext, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_docx(root / "long.docx", paragraphs=600)
    calls = []
    real = worker.run_async  # each conversion is one parse in the worker process

    async def counted(p: Path, *args: Any) -> str:
        calls.append(p)
        return await real(p, *args)

    monkeypatch.setattr(worker, "run_async", counted)
    whole, offset, pages = "", 0, 0
    while True:
        page = await read(ctx, "long.docx", offset=offset)
        pages += 1
        m = NOTE.search(page)
        if not m:
            whole += page
            break
        assert len(page) < 20_000, "a page and its note fit the runner's result limit"
        whole += page[: m.start()]
        offset = int(m.group(1))
    assert pages >= 4 and "Paragraph 0000" in whole and "Paragraph 0599" in whole
    assert whole.rstrip().endswith("The end.")
    assert len(calls) == 1, "later pages come from the cache"
    assert "nothing after offset" in await read(ctx, "long.docx", offset=len(whole) + 5)


# Bad input ----------------------------------------------------------------------


async def test_password_protected_documents(ctx: ToolContext, root: Path) -> None:
    make_pdf(root / "locked.pdf", ["secret numbers"], user_password="hunter2")
    message = await refused(ctx, "locked.pdf")
    assert "password-protected" in message and "secret numbers" not in message
    # Encrypted only against printing or copying: opens without a password, so it is read.
    make_pdf(root / "statement.pdf", ["Balance 100"], user_password="")
    assert "Balance 100" in await read(ctx, "statement.pdf")
    # An encrypted Word/Excel/PowerPoint file is an OLE container, not a ZIP.
    for name in ("locked.docx", "locked.xlsx", "locked.pptx"):
        (root / name).write_bytes(documents.OLE_MAGIC + os.urandom(2000))
        assert "password-protected" in await refused(ctx, name), name


async def test_damaged_empty_and_old_format_documents(ctx: ToolContext, root: Path) -> None:
    (root / "broken.docx").write_bytes(b"PK\x03\x04 this is not really a zip")
    message = await refused(ctx, "broken.docx")
    assert "could not be read as a Word document" in message and "damaged" in message
    good = make_xlsx(root / "good.xlsx").read_bytes()
    (root / "cut.xlsx").write_bytes(good[: len(good) // 2])
    assert "damaged" in await refused(ctx, "cut.xlsx")
    (root / "fake.pdf").write_text("hello, not a PDF")
    assert "could not be read as a PDF" in await refused(ctx, "fake.pdf")
    (root / "zero.pptx").write_bytes(b"")
    assert "is empty (0 bytes)" in await refused(ctx, "zero.pptx")
    (root / "old.doc").write_bytes(documents.OLE_MAGIC + b"\x00" * 100)
    message = await refused(ctx, "old.doc")
    assert "old Office format" in message and ".docx" in message


async def test_a_2_gb_file_is_refused_without_reading_it(ctx: ToolContext, root: Path) -> None:
    for name in ("huge.pdf", "huge.txt", "huge.xlsx"):
        with open(root / name, "wb") as fh:  # sparse: takes no disk space
            fh.truncate(2 * 1024**3)
    tracemalloc.start()
    started = time.monotonic()
    try:
        pdf = await refused(ctx, "huge.pdf")
        xlsx = await refused(ctx, "huge.xlsx")
        txt = await refused(ctx, "huge.txt")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "huge.pdf is 2.0 GB" in pdf and "up to 100.0 MB" in pdf
    assert "2.0 GB" in xlsx
    assert "binary" in txt and "2.0 GB" in txt, "NULs all through: not text"
    assert time.monotonic() - started < 5 and peak < 50 * 1024**2, "never read into memory"


async def test_a_document_that_changes_while_read(
    ctx: ToolContext, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_docx(root / "live.docx")
    real = worker.run_async

    async def saved_meanwhile(p: Path, *args: Any) -> str:
        text = await real(p, *args)
        with open(p, "ab") as fh:  # another program saves the file mid-read
            fh.write(b"\0")
        return text

    monkeypatch.setattr(worker, "run_async", saved_meanwhile)
    message = await refused(ctx, path)
    assert "changed while it was being read" in message and "Try again" in message


async def test_a_text_file_that_grows_while_read_is_read_with_a_warning(
    ctx: ToolContext, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = root / "app.log"
    log.write_text("started\n")
    real = documents._read_chars

    def appended_meanwhile(p: Path, offset: int, limit: int) -> tuple[str, bool]:
        result = real(p, offset, limit)
        with open(p, "a") as fh:
            fh.write("another line\n")
        return result

    monkeypatch.setattr(documents, "_read_chars", appended_meanwhile)
    page = await read(ctx, log)
    assert page.startswith("started\n") and "changed while it was being read" in page


async def test_documents_outside_the_roots_or_secret_are_refused(ctx: ToolContext, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    make_docx(outside / "salaries.docx")
    (root / "shortcut.docx").symlink_to(outside / "salaries.docx")
    message = await refused(ctx, "shortcut.docx")
    assert "outside the folders" in message and "symbolic link" in message
    assert "outside the folders" in await refused(ctx, outside / "salaries.docx")
    (root / ".ssh").mkdir()
    make_pdf(root / ".ssh" / "keys.pdf", ["k"])
    assert (await refused(ctx, ".ssh/keys.pdf")).startswith("Refused")
