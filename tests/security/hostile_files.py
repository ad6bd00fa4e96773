"""Hostile documents, made by the tests: zip bombs, a spreadsheet with one cell at the
far corner, and a heavy but honest document that passes the zip checks (for the
memory and time caps)."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import docx
import openpyxl
import pptx


def _rewrite(src: Path, dst: Path, member: str, body: bytes, level: int = 9) -> Path:
    """`src` with `member`'s content between its body tags replaced by `body`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == member:
                data = body
            zout.writestr(item.filename, data)
    return dst


def docx_bomb(path: Path, inflated_mb: int = 60) -> Path:
    """A small .docx whose document.xml inflates to `inflated_mb` MB of paragraphs."""
    base = path.with_suffix(".base.docx")
    docx.Document().save(str(base))
    with zipfile.ZipFile(base) as z:
        xml = z.read("word/document.xml")
    head = xml.split(b"<w:body>")[0]
    para = b"<w:p><w:r><w:t>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA</w:t></w:r></w:p>"
    body = head + b"<w:body>" + para * (inflated_mb * 1024 * 1024 // len(para)) + b"</w:body></w:document>"
    _rewrite(base, path, "word/document.xml", body)
    base.unlink()
    return path


def pptx_bomb(path: Path, inflated_mb: int = 60) -> Path:
    """A small .pptx whose first slide inflates to `inflated_mb` MB of text boxes."""
    base = path.with_suffix(".base.pptx")
    deck = pptx.Presentation()
    deck.slides.add_slide(deck.slide_layouts[5]).shapes.title.text = "Quarterly"
    deck.save(str(base))
    with zipfile.ZipFile(base) as z:
        xml = z.read("ppt/slides/slide1.xml")
    head, tail = xml.split(b"</p:spTree>")
    shape = (b'<p:sp><p:nvSpPr><p:cNvPr id="9" name="t"/><p:cNvSpPr txBox="1"/><p:nvPr/></p:nvSpPr>'
             b'<p:spPr/><p:txBody><a:bodyPr/><a:p><a:r><a:t>BBBBBBBBBBBBBBBB</a:t></a:r></a:p></p:txBody></p:sp>')
    body = head + shape * (inflated_mb * 1024 * 1024 // len(shape)) + b"</p:spTree>" + tail
    _rewrite(base, path, "ppt/slides/slide1.xml", body)
    base.unlink()
    return path


def xlsx_far_cell(path: Path) -> Path:
    """A ~5 KB workbook with a header and one cell at XFD1048576 (its dimension says
    A1:XFD1048576: 17 billion cells)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"], ws["B1"] = "Name", "Amount"
    ws["A2"], ws["B2"] = "Rent", 1200
    ws["XFD1048576"] = "the far corner"
    wb.save(path)
    return path


def heavy_docx(path: Path, xml_mb: int, seed: int = 1) -> Path:
    """An honest-looking .docx (packs ~4x, passes the zip checks) with `xml_mb` MB of
    varied paragraphs: parsing it needs memory and time in proportion."""
    base = path.with_suffix(".base.docx")
    docx.Document().save(str(base))
    with zipfile.ZipFile(base) as z:
        head = z.read("word/document.xml").split(b"<w:body>")[0]
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghij") for _ in range(5)) for _ in range(2000)]
    parts, size = [], 0
    while size < xml_mb * 1024 * 1024:
        para = b"<w:p><w:r><w:t>" + b" ".join(rnd.choices(words, k=8)) + b"</w:t></w:r></w:p>"
        parts.append(para)
        size += len(para)
    _rewrite(base, path, "word/document.xml", head + b"<w:body>" + b"".join(parts) + b"</w:body></w:document>",
             level=1)
    base.unlink()
    return path


class RssWatch:
    """The growth of this process's resident memory while the block runs, sampled every
    5 ms from /proc/self/statm (the peak RSS counter would hide growth below an earlier
    peak, such as the one from making the fixtures)."""

    def __init__(self) -> None:
        import os
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.base = self.high = 0

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.high = max(self.high, self._rss())

    @property
    def grew(self) -> int:
        return max(0, self.high - self.base)

    def __enter__(self) -> "RssWatch":
        import gc

        gc.collect()
        self.base = self.high = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.high = max(self.high, self._rss())
        self._stop.set()
        self._thread.join()
