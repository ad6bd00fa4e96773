"""Deliverables a client could receive: the tables in every produced format read back with
openpyxl, python-pptx and python-docx - alignment of numbers and their headers, column
widths fitted to content, money and percent formats taken from the data, highlights
(fills, bold), and charts of comparable series over de-duplicated categories."""

from __future__ import annotations

from typing import Any

from tests.helpers import call, refused
from tools.registry import ToolContext

# Rows as a model copies them from a client's tracker: amounts as the source wrote them.
PACE = [
    ["Client", "Revenue", "Cost", "Margin", "Orders", "Pace"],
    ["Acme Corporation International", "$1,200.50", "1.234,50 €", "12.5%", 30000, 0.93],
    ["Globex", "$950", "950 €", "8%", 12, 1.1],
    ["Initech", "$2,000.25", "2.000 €", 0.12500000001, 7, 0.8],
]


def test_numbers_read_as_written() -> None:
    from tools.documents.numbers import parse

    seen = {text: (c.kind, c.value, c.pre + "|" + c.post) for text in (
        "$1,200.50", "€1.200", "1.234,50 €", "1 234,50 €", "CHF 950", "12 kr", "(300)", "-$50", "12.5%",
        "12,5 %", "1,200", "1'234.50", "007", "555-1234", "n/a", "2025-06-02x", "1234567890123456") if (c := parse(text))}
    assert seen == {
        "$1,200.50": ("money", 1200.5, "$|"), "€1.200": ("money", 1200, "€|"), "1.234,50 €": ("money", 1234.5, "| €"),
        "1 234,50 €": ("money", 1234.5, "| €"), "CHF 950": ("money", 950, "CHF |"), "12 kr": ("money", 12, "| kr"),
        "(300)": ("number", -300, "|"), "-$50": ("money", -50, "$|"), "12.5%": ("percent", 0.125, "|%"),
        "12,5 %": ("percent", 0.125, "| %"), "1,200": ("number", 1200, "|"), "1'234.50": ("number", 1234.5, "|"),
        "007": ("text", "007", "|"), "555-1234": ("text", "555-1234", "|"), "n/a": ("empty", "n/a", "|"),
        "2025-06-02x": ("text", "2025-06-02x", "|"), "1234567890123456": ("text", "1234567890123456", "|")}
    assert parse("1.234", comma=True).value == 1234 and parse("1.234").value == 1.234, "the column decides"


def _xlsx(ctx: ToolContext, name: str) -> Any:
    import openpyxl

    return openpyxl.load_workbook(ctx.settings.outbox / name)


# Spreadsheets -------------------------------------------------------------------


async def test_xlsx_money_and_percent_formats_come_from_the_data(ctx: ToolContext) -> None:
    await call(ctx, "make_spreadsheet", name="pace.xlsx", rows=PACE, chart="none")
    ws = _xlsx(ctx, "pace.xlsx").active
    assert (ws["B2"].value, ws["B2"].number_format) == (1200.5, '"$"#,##0.00')
    assert (ws["B3"].value, ws["B3"].number_format) == (950, '"$"#,##0.00'), "one column, one number of decimals"
    assert (ws["C2"].value, ws["C2"].number_format) == (1234.5, '#,##0.00" €"'), "a decimal comma, € after"
    assert ws["C4"].value == 2000, "an ambiguous 2.000 follows its column: a thousand"
    assert [ws[f"D{r}"].value for r in (2, 3)] == [0.125, 0.08] and ws["D2"].number_format == "0.0%"
    assert ws["D4"].number_format == "0.0%", "float noise gets the column's decimals, not 0.12500000001"
    assert ws["E2"].number_format == "#,##0" and ws["F2"].number_format == "#,##0.00"


async def test_xlsx_numeric_columns_and_their_headers_are_right_aligned_and_widths_fit(ctx: ToolContext) -> None:
    await call(ctx, "make_spreadsheet", name="pace.xlsx", rows=PACE, chart="none")
    ws = _xlsx(ctx, "pace.xlsx").active
    assert ws["A1"].alignment.horizontal == "left" and ws["A2"].alignment.horizontal is None
    for letter in "BCDEF":
        assert ws[f"{letter}1"].alignment.horizontal == "right", f"header {letter} sits over its numbers"
        assert {ws[f"{letter}{r}"].alignment.horizontal for r in (2, 3, 4)} == {"right"}
    width = {c: ws.column_dimensions[c].width for c in "ABCDEF"}
    assert width["A"] == len("Acme Corporation International") + 2, "the longest client name fits"
    assert width["B"] == len("$2,000.25") + 2, "numbers as shown"
    assert width["D"] == round(len("Margin") * 1.1) + 2 and width["F"] == 8, "the header counts; 8 at least"
    assert width["A"] > width["B"] > width["D"]


async def test_xlsx_chart_takes_one_unit_and_names_what_it_left_out(ctx: ToolContext) -> None:
    out = await call(ctx, "make_spreadsheet", name="pace.xlsx", rows=PACE)
    assert "column chart of Revenue by Client; not charted (another unit): Cost, Margin, Orders, Pace" in out
    ws = _xlsx(ctx, "pace.xlsx").active
    chart = ws._charts[0]
    assert [s.val.numRef.f for s in chart.series] == ["'pace'!$B$2:$B$4"]
    assert chart.series[0].cat.numRef is None and chart.series[0].cat.strRef.f == "'pace'!$A$2:$A$4"
    assert chart.y_axis.number_format.formatCode == '"$"#,##0', "the currency on the axis"


async def test_xlsx_repeated_labels_are_summed_on_a_chart_data_sheet(ctx: ToolContext) -> None:
    rows = [["Client", "Month", "Revenue", "Budget", "Share"],
            ["Acme", "Jan", "$100", "$90", "40%"], ["Acme", "Feb", "$120", "$100", "50%"],
            ["Globex", "Jan", "$90", "$95", "30%"], ["Total", "", "=SUM(C2:C4)", "=SUM(D2:D4)", None]]
    out = await call(ctx, "make_spreadsheet", name="clients.xlsx", rows=rows)
    assert "column chart of Revenue, Budget by Client (summed per Client)" in out
    assert "not charted (another unit): Share" in out and "figures on the sheet 'Chart data'" in out
    wb = _xlsx(ctx, "clients.xlsx")
    data = wb["Chart data"]
    assert [[c.value for c in r] for r in data.iter_rows()] == [
        ["Client", "Revenue", "Budget"], ["Acme", 220, 190], ["Globex", 90, 95]], "no Acme, Acme; no Total"
    assert data["B2"].number_format == '"$"#,##0'
    chart = wb["clients"]._charts[0]
    assert [s.val.numRef.f for s in chart.series] == ["'Chart data'!$B$2:$B$3", "'Chart data'!$C$2:$C$3"]
    assert chart.series[0].cat.strRef.f == "'Chart data'!$A$2:$A$3"
    # Percentages are averaged, not summed.
    out = await call(ctx, "make_spreadsheet", name="share.xlsx", rows=rows, series=["Share"])
    assert "column chart of Share by Client (averaged per Client)" in out
    share = _xlsx(ctx, "share.xlsx")["Chart data"]
    assert [[c.value for c in r] for r in share.iter_rows(min_row=2)] == [["Acme", 0.45], ["Globex", 0.3]]
    assert share["B2"].number_format == "0%"


async def test_xlsx_chart_leaves_out_numbers_that_name_rows(ctx: ToolContext) -> None:
    rows = [["Client", "Week", "Year", "Order ID", "Orders", "Visits"],
            ["Acme", 22, 2025, 1001, 3, 40], ["Globex", 23, 2025, 1002, 5, 70]]
    out = await call(ctx, "make_spreadsheet", name="dims.xlsx", rows=rows)
    assert "column chart of Orders, Visits by Client" in out and "not charted" not in out
    out = await call(ctx, "make_spreadsheet", name="weeks.xlsx", rows=rows, series=["Week"])
    assert "column chart of Week by Client" in out, "still chartable when named"


async def test_xlsx_series_named_by_the_model(ctx: ToolContext) -> None:
    out = await call(ctx, "make_spreadsheet", name="pick.xlsx", rows=PACE, series=["orders", "Pace"], chart="bar")
    assert "column chart of Orders, Pace by Client" in out and "not charted" not in out
    chart = _xlsx(ctx, "pick.xlsx").active._charts[0]
    assert [s.val.numRef.f for s in chart.series] == ["'pick'!$E$2:$E$4", "'pick'!$F$2:$F$4"]
    message = await refused(ctx, "make_spreadsheet", name="x.xlsx", rows=PACE, series=["Profit"])
    assert "No column is called 'Profit'" in message and "Client, Revenue, Cost" in message
    message = await refused(ctx, "make_spreadsheet", name="x.xlsx", rows=PACE, series=["Client"])
    assert "Client cannot be charted" in message


async def test_xlsx_highlights_fill_and_bold_rows_and_cells(ctx: ToolContext) -> None:
    from openpyxl.styles import PatternFill

    out = await call(ctx, "make_spreadsheet", name="flags.xlsx", rows=PACE, chart="none", highlight=[
        {"column": "Pace", "below": 1, "fill": "red"},
        {"column": "Client", "equals": "globex", "bold": True},
        {"row": 2, "column": "Margin", "cell": True, "fill": "#1F4E78"},
        {"column": "Margin", "above": 10, "cell": True, "bold": True},  # "12.5%" is 12.5 as written
    ])
    assert "Pace below 1 red: rows 1, 3" in out and "Client = globex bold: rows 2" in out
    assert "row 2 #1f4e78 (Margin cell): rows 2" in out and "Margin above 10 bold (Margin cell): rows 1" in out
    ws = _xlsx(ctx, "flags.xlsx").active
    for r in (2, 4):  # the off-pace rows, every cell of the table's width
        assert {ws.cell(r, c).fill.fgColor.rgb for c in range(1, 7)} == {"00FFC7CE"}
        assert {ws.cell(r, c).font.color.rgb for c in range(1, 7)} == {"009C0006"}
    assert ws.cell(2, 7).fill == PatternFill(), "nothing outside the table"
    assert ws["A3"].fill.fill_type is None and all(ws.cell(3, c).font.b for c in range(1, 7))
    assert ws["D3"].fill.fgColor.rgb == "001F4E78" and ws["D3"].font.color.rgb == "00FFFFFF", "white on dark"
    assert ws["C3"].fill.fill_type is None
    assert ws["D2"].font.b and not ws["C2"].font.b and not ws["D4"].font.b
    assert not any(ws.cell(2, c).font.b for c in (1, 2, 3, 5, 6)) and not ws["A4"].font.b
    assert ws["A1"].fill.fgColor.rgb.endswith("1F4E78"), "the header keeps its style"


async def test_highlight_by_value_as_written_and_a_whole_column(ctx: ToolContext) -> None:
    out = await call(ctx, "make_spreadsheet", name="more.xlsx", rows=PACE, chart="none", highlight=[
        {"column": "Revenue", "equals": "$950.00", "fill": "yellow"},  # the cell says "$950"
        {"column": "Orders", "bold": True}])
    assert "Revenue = $950.00 yellow: rows 2" in out and "every row bold (Orders cell): rows 1, 2, 3" in out
    ws = _xlsx(ctx, "more.xlsx").active
    assert {ws.cell(3, c).fill.fgColor.rgb for c in range(1, 7)} == {"00FFEB9C"}
    assert ws["A2"].fill.fill_type is None and ws["A4"].fill.fill_type is None
    assert [bool(ws.cell(r, c).font.b) for r in (2, 3, 4) for c in (4, 5)] == [False, True] * 3, "Orders only"


async def test_highlight_mistakes_are_refused_with_what_to_do(ctx: ToolContext) -> None:
    assert "Client holds no numbers" in await refused(
        ctx, "make_spreadsheet", name="x.xlsx", rows=PACE, highlight=[{"column": "Client", "above": 1, "bold": True}])
    message = await refused(ctx, "make_spreadsheet", name="x.xlsx", rows=PACE,
                            highlight=[{"column": "Pace", "below": 1, "fill": "mauve"}])
    assert "unknown colour 'mauve'" in message and "red, yellow, green" in message
    assert "No column is called 'Speed'" in await refused(
        ctx, "make_spreadsheet", name="x.xlsx", rows=PACE, highlight=[{"column": "Speed", "below": 1, "fill": "red"}])
    assert "needs a fill colour or bold" in await refused(
        ctx, "make_spreadsheet", name="x.xlsx", rows=PACE, highlight=[{"column": "Pace", "below": 1}])
    assert "data rows 1 to 3" in await refused(
        ctx, "make_spreadsheet", name="x.xlsx", rows=PACE, highlight=[{"row": 4, "bold": True}])
    assert "CSV holds no colours" in await refused(
        ctx, "make_spreadsheet", name="x.csv", rows=PACE, highlight=[{"row": 1, "bold": True}])
    assert "Markdown has no colours" in await refused(
        ctx, "make_spreadsheet", name="x.md", rows=PACE, highlight=[{"row": 1, "fill": "red"}])
    assert not any(ctx.settings.outbox.glob("x.*")), "nothing half-made is left"


async def test_markdown_table_aligns_shows_money_and_bolds(ctx: ToolContext) -> None:
    await call(ctx, "make_spreadsheet", name="pace.md", rows=PACE[:3], highlight=[{"row": 2, "bold": True}])
    assert (ctx.settings.outbox / "pace.md").read_text() == (
        "| Client | Revenue | Cost | Margin | Orders | Pace |\n"
        "|---|---:|---:|---:|---:|---:|\n"
        "| Acme Corporation International | $1,200.50 | 1.234,50 € | 12.5% | 30,000 | 0.93 |\n"
        "| **Globex** | **$950.00** | **950,00 €** | **8.0%** | **12** | **1.10** |\n")


# PowerPoint ---------------------------------------------------------------------


async def _deck(ctx: ToolContext, slides: list[dict[str, Any]], name: str = "deck.pptx") -> tuple[str, Any]:
    import pptx

    out = await call(ctx, "make_deck", name=name, slides=slides)
    return out, pptx.Presentation(str(ctx.settings.outbox / name))


def _shape(slide: Any, kind: str) -> Any:
    return next(sh for sh in slide.shapes if getattr(sh, f"has_{kind}"))


async def test_deck_table_alignment_widths_formats_and_highlights(ctx: ToolContext) -> None:
    from pptx.enum.text import PP_ALIGN

    out, deck = await _deck(ctx, [{"title": "Pace", "table": PACE, "highlight": [
        {"column": "Pace", "below": 1, "fill": "red"}, {"column": "Client", "equals": "Globex", "bold": True}]}])
    assert "slide 1: highlighted Pace below 1 red: rows 1, 3; Client = Globex bold: rows 2" in out
    frame = _shape(deck.slides[0], "table")
    table = frame.table
    texts = [[table.cell(r, c).text for c in range(6)] for r in range(4)]
    assert texts[1] == ["Acme Corporation International", "$1,200.50", "1.234,50 €", "12.5%", "30,000", "0.93"]
    assert texts[2][1:4] == ["$950.00", "950,00 €", "8.0%"] and texts[3][3] == "12.5%"
    for r in range(4):
        aligns = [table.cell(r, c).text_frame.paragraphs[0].alignment for c in range(6)]
        assert aligns == [PP_ALIGN.LEFT] + [PP_ALIGN.RIGHT] * 5, f"row {r}: the header sits over its numbers"
    widths = [col.width for col in table.columns]
    assert sum(widths) == frame.width, "the table fills its area"
    assert widths[0] > 2 * widths[1] and widths[1] > widths[5], "widths follow the content, not equal"
    assert len(set(widths)) > 2
    for r in (1, 3):
        cells = [table.cell(r, c) for c in range(6)]
        assert {str(c.fill.fore_color.rgb) for c in cells} == {"FFC7CE"}
        assert {str(c.text_frame.paragraphs[0].runs[0].font.color.rgb) for c in cells} == {"9C0006"}
    assert table.cell(2, 0).fill.type is None
    assert all(table.cell(2, c).text_frame.paragraphs[0].runs[0].font.bold for c in range(6))
    assert not table.cell(1, 0).text_frame.paragraphs[0].runs[0].font.bold


async def test_deck_chart_dedupes_categories_and_keeps_one_unit(ctx: ToolContext) -> None:
    rows = [["Client", "Revenue", "Budget", "Orders"],
            ["Acme", "$100", "$90", 3], ["Globex", "$90", "$95", 2], ["Acme", "$120", "$100", 4]]
    out, deck = await _deck(ctx, [{"title": "By client", "table": rows, "chart": True}])
    assert "column chart of Revenue, Budget by Client (summed per Client); not charted (another unit): Orders" in out
    chart = _shape(deck.slides[0], "chart").chart
    assert list(chart.plots[0].categories) == ["Acme", "Globex"], "each client once"
    assert [(s.name, list(s.values)) for s in chart.series] == [("Revenue", [220, 90]), ("Budget", [190, 95])]
    assert chart.value_axis.tick_labels.number_format == '"$"#,##0'
    assert not chart.value_axis.tick_labels.number_format_is_linked
    # Named by the model: exactly those.
    out, deck = await _deck(ctx, [{"title": "Orders", "table": rows, "chart": ["Orders"]}], "orders.pptx")
    chart = _shape(deck.slides[0], "chart").chart
    assert [(s.name, list(s.values)) for s in chart.series] == [("Orders", [7, 2])]
    assert "Budget cannot be charted" not in out
    message = await refused(ctx, "make_deck", name="e.pptx", slides=[{"title": "x", "table": rows, "chart": ["Nope"]}])
    assert "No column is called 'Nope'" in message


async def test_deck_chart_over_time_sums_the_other_labels_and_notes_stray_highlights(ctx: ToolContext) -> None:
    rows = [["Week", "Client", "Spend"], [22, "Acme", 100.5], [22, "Globex", 50], [23, "Acme", 80], [23, "Globex", 70]]
    out, deck = await _deck(ctx, [{"title": "Spend", "table": rows, "chart": True, "highlight": [{"row": 1, "bold": True}]},
                                  {"title": "Notes", "bullets": ["a"], "highlight": [{"row": 1, "bold": True}]}])
    assert "slide 1: line chart of Spend by Week (summed per Week); highlights apply to tables, not charts" in out
    assert "slide 2: highlights apply to a table; this slide has none" in out
    chart = _shape(deck.slides[0], "chart").chart
    assert list(chart.plots[0].categories) == ["22", "23"] and list(chart.series[0].values) == [150.5, 150]


async def test_deck_percentages_read_as_percentages(ctx: ToolContext) -> None:
    rows = [["Week", "CTR", "Growth %"], ["W22", 0.031, 12.5], ["W23", 0.12500000001, 3.33333333]]
    out, deck = await _deck(ctx, [{"title": "Rates", "table": rows}, {"title": "Trend", "table": rows,
                                                                      "chart": True}])
    table = _shape(deck.slides[0], "table").table
    assert [[table.cell(r, c).text for c in range(3)] for r in (1, 2)] == [["W22", "3.1%", "12.5%"],
                                                                          ["W23", "12.5%", "3.3%"]]
    chart = _shape(deck.slides[1], "chart").chart
    assert [s.name for s in chart.series] == ["CTR"] and "not charted (another unit): Growth %" in out
    assert chart.value_axis.tick_labels.number_format == "0.0%"


# Word ---------------------------------------------------------------------------

MEMO_TABLE = """# Pace

| Client | Revenue | Margin | Note |
|---|---|:---:|---|
| Acme Corporation International | $1,200.5 | 12.500000001% | on track |
| Globex | **$950** | 8% | behind |
"""


async def test_docx_table_alignment_formats_and_widths(ctx: ToolContext) -> None:
    import docx
    from docx.enum.text import WD_ALIGN_PARAGRAPH as ALIGN

    await call(ctx, "make_document", name="pace.docx", markdown=MEMO_TABLE)
    d = docx.Document(str(ctx.settings.outbox / "pace.docx"))
    table = d.tables[0]
    assert [[c.text for c in r.cells] for r in table.rows] == [
        ["Client", "Revenue", "Margin", "Note"],
        ["Acme Corporation International", "$1,200.50", "12.5%", "on track"],
        ["Globex", "$950.00", "8.0%", "behind"]], "money and % shown alike, a **bold** amount too"
    for row in table.rows:
        assert [c.paragraphs[0].alignment for c in row.cells] == [ALIGN.LEFT, ALIGN.RIGHT, ALIGN.CENTER, ALIGN.LEFT]
    assert table.rows[2].cells[1].paragraphs[0].runs[0].bold, "the model's bold survives"
    section = d.sections[-1]
    widths = [col.width for col in table.columns]
    assert sum(widths) == section.page_width - section.left_margin - section.right_margin
    assert widths[0] > widths[3] > widths[2] and widths[1] > widths[2]
    assert [c.width for c in table.columns[0].cells] == [widths[0]] * 3, "Word reads the cells' widths"
    assert not table.autofit
