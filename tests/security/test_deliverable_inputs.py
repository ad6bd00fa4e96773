"""Hostile table content given to the produce tools: cells crafted to make the number
patterns backtrack, and highlight colours that try to carry markup into the file."""

from __future__ import annotations

import time

from tests.helpers import call, refused
from tools.documents.numbers import MAX_NUMBER_TEXT, parse
from tools.registry import ToolContext

# The first took the number pattern quadratic time (35 s at 100 kB, 3 s at 30 kB) before
# cells longer than any written number were kept away from it. All fit in an Excel cell.
CRAFTED = [
    "-" + " " * 15_000 + "$" + " " * 15_000 + "1x",
    "1 " * 15_000 + "x",
    "$" + "1," * 15_000 + "x",
    "1.2" * 10_000,
    "- $ " * 8_000 + "1",
]


def test_crafted_cells_are_text_and_parse_at_once() -> None:
    started = time.perf_counter()
    cells = [parse(text) for text in CRAFTED]
    elapsed = time.perf_counter() - started
    assert [c.kind for c in cells] == ["text"] * len(CRAFTED)
    assert elapsed < 1.0, f"{elapsed:.1f} s for {len(CRAFTED)} cells: the patterns backtrack again"
    longest = "-CHF 123 456 789 012 345,67"  # 15 digits, as many as Excel keeps
    assert len(longest) <= MAX_NUMBER_TEXT and parse(longest).value == -123456789012345.67


async def test_a_table_of_crafted_cells_is_written_as_text(ctx: ToolContext) -> None:
    import openpyxl

    rows = [["Label", "Value"]] + [[f"r{i}", text] for i, text in enumerate(CRAFTED)]
    started = time.perf_counter()
    await call(ctx, "make_spreadsheet", name="crafted.xlsx", rows=rows)
    assert time.perf_counter() - started < 5.0
    ws = openpyxl.load_workbook(ctx.settings.outbox / "crafted.xlsx").active
    assert [ws.cell(r, 2).value for r in range(2, len(CRAFTED) + 2)] == CRAFTED, "kept as written"


async def test_a_cell_longer_than_excel_holds_is_refused_not_cut(ctx: ToolContext) -> None:
    rows = [["Label", "Text"], ["a", "x" * 32_767], ["b", "y" * 32_768]]
    message = await refused(ctx, "make_spreadsheet", name="long.xlsx", rows=rows)
    assert "Cell B3 has 32,768 characters" in message and "save as .csv" in message
    assert not any(ctx.settings.outbox.glob("long*"))
    await call(ctx, "make_spreadsheet", name="long.csv", rows=rows)
    assert (ctx.settings.outbox / "long.csv").read_text(encoding="utf-8-sig").count("y") == 32_768


async def test_highlight_colours_are_names_or_hex_only(ctx: ToolContext) -> None:
    rows = [["Client", "Pace"], ["Acme", 0.9]]
    for colour in ('FF0000"/><x:evil/>', "red; bold", "url(javascript:1)", "FFC7CE00", "#FFF"):
        for tool, extra in (("make_spreadsheet", {"rows": rows, "highlight": [{"row": 1, "fill": colour}]}),
                            ("make_deck", {"slides": [{"title": "t", "table": rows,
                                                       "highlight": [{"row": 1, "fill": colour}]}]})):
            message = await refused(ctx, tool, name="evil", **extra)
            assert "unknown colour" in message, (tool, colour)
    assert not any(ctx.settings.outbox.glob("evil*")), "nothing written"
