"""Producing deliverables through the tools, exactly as the runner calls them, then
opening what was written with the same libraries and checking it cell by cell and
slide by slide: XLSX formatting, formulas and charts, CSV and Markdown, Word memos,
PowerPoint decks from the owner's template; where files may go; no silent overwrite."""

from __future__ import annotations

import csv
import os
from datetime import date
from pathlib import Path

from store.db import Store
from tests.helpers import call, files_settings, refused
from tests.office_files import as_template, make_template, slide_texts
from tools.registry import ToolContext

TRACKER = [
    ["Week", "Spend", "Clicks", "CTR", "Start", "Campaign ID"],
    [22, 1200.5, 30000, "2.5%", "2025-05-26", "007"],
    [23, 1500, 42000, 0.031, "2025-06-02", "008"],
    [24, "950.25", 20500, 0.02, "2025-06-09", "009"],
    ["Total", "=SUM(B2:B4)", "=SUM(C2:C4)", None, None, None],
]


# `root` and `ctx` (a tool context over that one folder) are in conftest.py.


# Spreadsheets -------------------------------------------------------------------


async def test_xlsx_values_formulas_formats_layout_and_chart(ctx: ToolContext) -> None:
    import openpyxl

    out = await call(ctx, "make_spreadsheet", name="Weekly recap", rows=TRACKER,
                     formats={"Spend": "#,##0.00 €", "ctr": "0.0%"})
    path = ctx.settings.outbox / "Weekly recap.xlsx"
    assert out.startswith(f"Saved {path}") and "send_file" in out
    assert "line chart of Spend by Week; not charted (another unit): Clicks, CTR" in out, "money alone on its axis"
    ws = openpyxl.load_workbook(path).active
    assert ws.title == "Weekly recap"
    assert [c.value for c in ws[1]] == TRACKER[0]
    assert all(c.font.b and c.fill.fgColor.rgb.endswith("1F4E78") for c in ws[1]), "styled header"
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:F5"
    assert (ws["A2"].value, ws["B2"].value, ws["C2"].value) == (22, 1200.5, 30000)
    assert ws["B4"].value == 950.25, "a number sent as text is a number"
    assert ws["D2"].value == 0.025 and ws["D2"].number_format == "0.0%"
    assert ws["E2"].value.date() == date(2025, 5, 26) and ws["E2"].number_format == "yyyy-mm-dd"
    assert ws["F2"].value == "007", "leading zeros stay: an ID, not a number"
    assert ws["B5"].value == "=SUM(B2:B4)" and ws["C5"].value == "=SUM(C2:C4)"
    assert ws["B2"].number_format == "#,##0.00 €" and ws["B5"].number_format == "#,##0.00 €"
    assert ws["C2"].number_format == "#,##0", "large whole numbers get separators"
    assert ws["A2"].number_format == "General", "week numbers do not"
    assert 8 <= ws.column_dimensions["A"].width <= 60 and ws.column_dimensions["F"].width >= len("Campaign ID")
    charts = ws._charts
    assert len(charts) == 1 and charts[0].tagname == "lineChart"
    refs = [s.val.numRef.f for s in charts[0].series]
    assert refs == ["'Weekly recap'!$B$2:$B$4"], "the Total row is not charted"


async def test_bar_chart_for_categories_and_none_on_request(ctx: ToolContext) -> None:
    import openpyxl

    rows = [["Region", "Revenue"], ["North", 10], ["South", 12], ["East", 7]]
    await call(ctx, "make_spreadsheet", name="regions.xlsx", rows=rows)
    chart = openpyxl.load_workbook(ctx.settings.outbox / "regions.xlsx").active._charts[0]
    assert chart.tagname == "barChart" and chart.type == "col"
    await call(ctx, "make_spreadsheet", name="plain.xlsx", rows=rows, chart="none")
    assert openpyxl.load_workbook(ctx.settings.outbox / "plain.xlsx").active._charts == []


async def test_csv_and_markdown_tables(ctx: ToolContext) -> None:
    await call(ctx, "make_spreadsheet", name="export.csv", rows=[["Name", "City"], ["Jürgen", "Köln"], ["A, B", None]])
    raw = (ctx.settings.outbox / "export.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "a BOM, so Excel shows the umlauts"
    with open(ctx.settings.outbox / "export.csv", encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh)) == [["Name", "City"], ["Jürgen", "Köln"], ["A, B", ""]]
    await call(ctx, "make_spreadsheet", name="table.md", rows=[["Item", "Cost"], ["Pipe | fitting", 1234.5]])
    assert (ctx.settings.outbox / "table.md").read_text() == (
        "| Item | Cost |\n|---|---:|\n| Pipe \\| fitting | 1,234.50 |\n")


async def test_bad_tables_and_formats(ctx: ToolContext) -> None:
    assert "rows is empty" in await refused(ctx, "make_spreadsheet", name="x.xlsx", rows=[])
    message = await refused(ctx, "make_spreadsheet", name="x.xlsx", rows=[["A"], [1]], formats={"Nope": "0"})
    assert "'Nope'" in message and "column header" in message
    assert "writes .csv, .md, .xlsx" in await refused(ctx, "make_spreadsheet", name="x.pdf", rows=[["A"]])


# Never overwrite, and only where allowed ----------------------------------------


async def test_existing_files_are_never_overwritten(ctx: ToolContext) -> None:
    first = await call(ctx, "make_spreadsheet", name="recap.csv", rows=[["v"], [1]])
    assert "already existed" not in first
    second = await call(ctx, "make_spreadsheet", name="recap.csv", rows=[["v"], [2]])
    third = await call(ctx, "make_spreadsheet", name="recap.csv", rows=[["v"], [3]])
    outbox = ctx.settings.outbox
    assert f"Saved {outbox / 'recap (2).csv'}" in second and "recap.csv already existed" in second
    assert f"Saved {outbox / 'recap (3).csv'}" in third
    assert (outbox / "recap.csv").read_bytes() == b"\xef\xbb\xbfv\r\n1\r\n", "the first file is untouched"
    assert sorted(p.name for p in outbox.iterdir()) == ["recap (2).csv", "recap (3).csv", "recap.csv"], "no temp files"


async def test_writes_go_only_to_the_outbox_workspace_or_writable_roots(tmp_path: Path, root: Path) -> None:
    shared = root / "Shared"
    shared.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    settings = files_settings(tmp_path, root, DISPATCH_WRITABLE_ROOTS=str(shared))
    store = Store(settings.db_url)
    try:
        ctx = ToolContext(settings, store)
        rows = [["a"], [1]]
        for bad in (str(root / "x.csv"), str(elsewhere / "x.csv"), "../../x.csv", str(settings.home / "x.csv")):
            message = await refused(ctx, "make_spreadsheet", name=bad, rows=rows)
            assert "may write only to its outbox" in message and str(shared) in message, bad
        assert "Refused" in await refused(ctx, "make_document", name=str(shared / ".env"), markdown="X=1")
        assert "Saved" in await call(ctx, "make_spreadsheet", name=str(shared / "team.csv"), rows=rows)
        assert "Saved" in await call(ctx, "make_spreadsheet", name=str(settings.workspace / "t.csv"), rows=rows)
        assert "Saved" in await call(ctx, "make_spreadsheet", name="sub/dir/t.csv", rows=rows)
        assert (settings.outbox / "sub" / "dir" / "t.csv").exists()
        # A link in the outbox cannot carry a write out of it.
        (settings.outbox / "escape").symlink_to(elsewhere, target_is_directory=True)
        assert "may write only" in await refused(ctx, "make_spreadsheet", name="escape/x.csv", rows=rows)
        assert not (elsewhere / "x.csv").exists() and not (root / "x.csv").exists()
    finally:
        store.close()
    # Without the setting, the owner's folders are read-only, and the message says how to change that.
    settings = files_settings(tmp_path, root)
    store = Store(settings.db_url)
    try:
        message = await refused(ToolContext(settings, store), "make_spreadsheet", name=str(shared / "t.csv"), rows=[["a"]])
        assert "DISPATCH_WRITABLE_ROOTS" in message
    finally:
        store.close()
    bad = files_settings(tmp_path, root, DISPATCH_WRITABLE_ROOTS=str(elsewhere))
    assert any("DISPATCH_WRITABLE_ROOTS" in p and "not inside DISPATCH_ROOTS" in p for p in bad.problems())


# Word ---------------------------------------------------------------------------

MEMO = """# Weekly memo

Spend was **up 12%** this week, see [the tracker](https://example.com/t).

## Highlights

- Search outperformed
  - mostly brand terms
- Social was flat
1. Renew the contract
2. Hire a designer

| Channel | Spend |
|---|---:|
| Search | 1,200 |
| Social | 300 |

> Numbers are preliminary.
"""


async def test_docx_memo_structure(ctx: ToolContext) -> None:
    import docx

    out = await call(ctx, "make_document", name="memo", markdown=MEMO)
    assert "2 headings" in out and "5 list items" in out and "1 tables" in out
    d = docx.Document(str(ctx.settings.outbox / "memo.docx"))
    paras = [(p.style.name, p.text) for p in d.paragraphs]
    assert paras[0] == ("Heading 1", "Weekly memo")
    assert ("Heading 2", "Highlights") in paras
    assert ("List Bullet", "Search outperformed") in paras and ("List Bullet 2", "mostly brand terms") in paras
    assert ("List Number", "Renew the contract") in paras
    assert ("Quote", "Numbers are preliminary.") in paras
    body = next(p for p in d.paragraphs if p.text.startswith("Spend was"))
    assert body.text == "Spend was up 12% this week, see the tracker (https://example.com/t)."
    assert [r.text for r in body.runs if r.bold] == ["up 12%"]
    table = d.tables[0]
    assert [[c.text for c in r.cells] for r in table.rows] == [["Channel", "Spend"], ["Search", "1,200"], ["Social", "300"]]
    assert all(r.bold for r in table.rows[0].cells[0].paragraphs[0].runs)


async def test_docx_from_the_owners_template(ctx: ToolContext, root: Path) -> None:
    import docx
    from docx.shared import Pt

    tpl = docx.Document()
    tpl.sections[0].header.paragraphs[0].text = "ACME Corp - Internal"
    tpl.styles["Heading 1"].font.size = Pt(30)
    tpl.add_paragraph("Template body text that must go")
    tpl.save(str(root / "memo-template.docx"))
    await call(ctx, "make_document", name="from-template.docx", markdown="# Title\n\nBody.",
               template=str(root / "memo-template.docx"))
    d = docx.Document(str(ctx.settings.outbox / "from-template.docx"))
    assert d.sections[0].header.paragraphs[0].text == "ACME Corp - Internal"
    assert [p.text for p in d.paragraphs] == ["Title", "Body."]
    assert d.paragraphs[0].style.font.size == Pt(30), "the template's styles"
    # The template form (.dotx) works too.
    (root / "memo-template.dotx").write_bytes((root / "memo-template.docx").read_bytes())
    as_template(root / "memo-template.dotx", "wordprocessingml")
    assert "Saved" in await call(ctx, "make_document", name="t2.docx", markdown="Hi", template="memo-template.dotx")
    assert "empty" in await refused(ctx, "make_document", name="x.docx", markdown="  ")


async def test_markdown_and_text_documents(ctx: ToolContext) -> None:
    await call(ctx, "make_document", name="notes.md", markdown="# Notes\n- a")
    assert (ctx.settings.outbox / "notes.md").read_text() == "# Notes\n- a\n"
    assert "template applies to .docx only" in await refused(
        ctx, "make_document", name="n.txt", markdown="x", template="t.docx")


# PowerPoint ---------------------------------------------------------------------

SLIDES = [
    {"title": "Weekly recap", "subtitle": "Week 24, 2025"},
    {"title": "Highlights", "bullets": ["Spend up 12%", "  mostly search", "CTR steady"], "notes": "Lead with spend."},
    {"title": "Spend by week", "table": [["Week", "Spend"], ["W22", 1200.5], ["W23", 1500], ["Total", 2700.5]]},
    {"title": "Trend", "table": [["Week", "Spend", "Clicks"], ["W22", 1200, 300], ["W23", 1500, 420]], "chart": True},
]


async def test_deck_from_the_owners_template_fills_its_layouts(ctx: ToolContext, root: Path) -> None:
    import pptx

    template = make_template(root / "Acme template.pptx")
    out = await call(ctx, "make_deck", name="recap", slides=SLIDES, template="Acme template.pptx")
    assert "4 slides" in out and "from the template Acme template.pptx" in out
    path = ctx.settings.outbox / "recap.pptx"
    slides = slide_texts(path)
    assert [s["layout"] for s in slides] == ["Acme Cover", "Acme Content", "Acme Title Only", "Acme Title Only"]
    assert [s["title"] for s in slides] == ["Weekly recap", "Highlights", "Spend by week", "Trend"]
    assert slides[0]["placeholders"] == {1: "Week 24, 2025"}
    assert slides[1]["placeholders"] == {1: "Spend up 12%\nmostly search\nCTR steady"}
    body = next(ph for ph in pptx.Presentation(str(path)).slides[1].placeholders if ph.placeholder_format.idx == 1)
    assert [p.level for p in body.text_frame.paragraphs] == [0, 1, 0]
    assert slides[1]["notes"] == "Lead with spend."
    assert slides[2]["tables"] == [[["Week", "Spend"], ["W22", "1,200.50"], ["W23", "1,500.00"], ["Total", "2,700.50"]]]
    chart = slides[3]["charts"][0]
    assert [s.name for s in chart.series] == ["Spend"] and list(chart.series[0].values) == [1200, 1500]
    assert list(chart.plots[0].categories) == ["W22", "W23"]
    deck = pptx.Presentation(str(path))
    assert all("Example slide" not in s["title"] for s in slides), "the template's own slides are gone"
    assert len(deck.slides) == 4
    assert any(sh.has_text_frame and sh.text_frame.text == "ACME" for sh in deck.slides[1].slide_layout.shapes)
    for slide in deck.slides:  # no "Click to add text" left anywhere
        assert all(ph.text_frame.text.strip() for ph in slide.placeholders if ph.has_text_frame)
    assert deck.slide_width == pptx.Presentation(str(template)).slide_width


async def test_deck_layout_by_name_potx_and_errors(ctx: ToolContext, root: Path) -> None:
    make_template(root / "brand.potx", potx=True)
    await call(ctx, "make_deck", name="d.pptx", template="brand.potx",
               slides=[{"title": "Agenda", "bullets": ["a"], "layout": "acme content"},
                       {"title": "Thanks", "layout": "title only"}])  # a part of the name is enough
    assert [s["layout"] for s in slide_texts(ctx.settings.outbox / "d.pptx")] == ["Acme Content", "Acme Title Only"]
    message = await refused(ctx, "make_deck", name="e.pptx", template="brand.potx",
                            slides=[{"title": "X", "layout": "Big Picture"}])
    assert "no layout called 'Big Picture'" in message and "'Acme Cover'" in message
    message = await refused(ctx, "make_deck", name="e.pptx", template="brand.potx",
                            slides=[{"title": "X", "bullets": ["a"], "layout": "Acme Title Only"}])
    assert "has no place for points" in message
    assert "slides is empty" in await refused(ctx, "make_deck", name="e.pptx", slides=[])
    (root / "bad.pptx").write_bytes(b"not a zip at all")
    assert "damaged" in await refused(ctx, "make_deck", name="e.pptx", slides=SLIDES, template="bad.pptx")
    assert "not a template" in await refused(ctx, "make_deck", name="e.pptx", slides=SLIDES, template="brand.potx/..")
    assert not (ctx.settings.outbox / "e.pptx").exists()


async def test_deck_without_a_template_is_16_9_and_clean(ctx: ToolContext) -> None:
    import pptx
    from pptx.util import Emu

    await call(ctx, "make_deck", name="plain.pptx", slides=SLIDES)
    deck = pptx.Presentation(str(ctx.settings.outbox / "plain.pptx"))
    assert (deck.slide_width, deck.slide_height) == (Emu(12192000), Emu(6858000))
    titles = [s.shapes.title for s in deck.slides]
    assert [t.text_frame.text for t in titles] == [s["title"] for s in SLIDES]
    assert all(t.left + t.width <= deck.slide_width for t in titles), "layouts stretched to the new width"
    assert titles[1].width > Emu(9144000 * 0.8), "and they use it"
    assert os.path.getsize(ctx.settings.outbox / "plain.pptx") > 20_000
