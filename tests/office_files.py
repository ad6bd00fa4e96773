"""Real documents for the file tests, made with the same libraries Dispatch reads them
with (pypdf, python-docx, openpyxl, python-pptx), so every test reads a genuine file."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any


def make_pdf(path: Path, pages: list[str], *, user_password: str | None = None) -> Path:
    """A PDF with a real text layer (Helvetica, one line per text line), optionally
    encrypted: user_password "" makes a PDF that opens without a password but is
    still encrypted (owner restrictions only), as many bank statements are."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    }))
    for text in pages:
        page = writer.add_blank_page(612, 792)
        if text:
            lines = [ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for ln in text.split("\n")]
            ops = "BT /F1 12 Tf 72 720 Td 16 TL " + " ".join(f"({ln}) Tj T*" for ln in lines) + " ET"
            stream = DecodedStreamObject()
            stream.set_data(ops.encode("latin-1"))
            page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def make_docx(path: Path, *, paragraphs: int = 0) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("Quarterly memo", level=1)
    d.add_paragraph("Revenue grew in every region.")
    d.add_heading("Risks", level=2)
    d.add_paragraph("Supplier delays", style="List Bullet")
    d.add_paragraph("Hiring freeze", style="List Bullet")
    table = d.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("Region", "Revenue"), ("North", "1,200"), ("South | East", "950")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    for i in range(paragraphs):
        d.add_paragraph(f"Paragraph {i:04d}: " + "lorem ipsum dolor sit amet " * 6)
    d.add_paragraph("The end.")
    d.save(str(path))
    return path


def make_xlsx(path: Path) -> Path:
    from datetime import date

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Tracker"
    ws.append(["Week", "Spend", "CTR", "Start"])
    ws.append([22, 1200.5, 0.125, date(2025, 5, 26)])
    ws.append([23, 1500, 0.031, date(2025, 6, 2)])
    ws.append(["Total", "=SUM(B2:B3)", None, None])
    for cell in ("C2", "C3"):
        ws[cell].number_format = "0.0%"
    notes = wb.create_sheet("Notes")
    notes.append(["Owner", "Sam"])
    wb.create_sheet("Empty")
    wb.save(path)
    return path


def make_pptx(path: Path) -> Path:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    s1 = deck.slides.add_slide(deck.slide_layouts[0])
    s1.shapes.title.text = "Kick-off"
    s1.placeholders[1].text = "Project Falcon"
    s2 = deck.slides.add_slide(deck.slide_layouts[1])
    s2.shapes.title.text = "Goals"
    body = s2.placeholders[1].text_frame
    body.text = "Ship the beta"
    sub = body.add_paragraph()
    sub.text, sub.level = "in June", 1
    s2.notes_slide.notes_text_frame.text = "Mention the budget."
    s3 = deck.slides.add_slide(deck.slide_layouts[5])
    s3.shapes.title.text = "Numbers"
    t = s3.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    t.cell(0, 0).text, t.cell(0, 1).text, t.cell(1, 0).text, t.cell(1, 1).text = "Metric", "Value", "Users", "4200"
    deck.save(str(path))
    return path


def make_template(path: Path, *, potx: bool = False) -> Path:
    """An owner's deck template: renamed layouts, a logo on the content layout, and an
    example slide that must not end up in decks built from it."""
    import pptx
    from pptx.util import Inches, Pt

    deck = pptx.Presentation()
    names = {0: "Acme Cover", 1: "Acme Content", 5: "Acme Title Only"}
    for i, name in names.items():
        deck.slide_layouts[i].name = name
    example = deck.slides.add_slide(deck.slide_layouts[1])
    example.shapes.title.text = "Example slide - delete me"
    # python-pptx cannot add shapes to a layout: make the logo on the slide, then move it.
    logo = example.shapes.add_textbox(Inches(8), Inches(0.1), Inches(1.8), Inches(0.5))
    logo.text_frame.text = "ACME"
    logo.text_frame.paragraphs[0].runs[0].font.size = Pt(20)
    deck.slide_layouts[1].shapes._spTree.append(logo._element)
    deck.save(str(path))
    if potx:
        as_template(path, "presentationml")
    return path


def as_template(path: Path, kind: str) -> None:
    """Turn a .pptx/.docx into its template form (.potx/.dotx) in place: only the
    main part's content type differs."""
    main = {"presentationml": "presentation", "wordprocessingml": "document"}[kind]
    data = {}
    with zipfile.ZipFile(path) as z:
        for item in z.infolist():
            data[item.filename] = z.read(item.filename)
    data["[Content_Types].xml"] = data["[Content_Types].xml"].replace(
        f"{kind}.{main}.main+xml".encode(), f"{kind}.template.main+xml".encode())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in data.items():
            z.writestr(name, blob)


def slide_texts(path: Path) -> list[dict[str, Any]]:
    """Each slide of a deck: its layout, title, other placeholder texts, shapes and notes."""
    import pptx

    out = []
    for slide in pptx.Presentation(str(path)).slides:
        title = slide.shapes.title
        out.append({
            "layout": slide.slide_layout.name,
            "title": title.text_frame.text if title is not None else "",
            "placeholders": {ph.placeholder_format.idx: ph.text_frame.text for ph in slide.placeholders
                             if ph.has_text_frame and (title is None or ph.shape_id != title.shape_id)},
            "tables": [[[c.text for c in r.cells] for r in s.table.rows] for s in slide.shapes if s.has_table],
            "charts": [s.chart for s in slide.shapes if s.has_chart],
            "notes": slide.notes_slide.notes_text_frame.text if slide.has_notes_slide else "",
        })
    return out
