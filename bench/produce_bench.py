"""Deliverables benchmark: what reading numbers as written, fitting widths, highlights and
chart planning cost on a large table. Run: `python -m bench.produce_bench [--rows N]`.
Prints figures and exits 0 (no targets yet: the figures are there to compare runs). Files
go to a temporary directory.

The table: N rows (default 20,000) x 6 columns as a model copies them from a tracker -
a client label (50 clients, so labels repeat and the chart sums them), a week number,
an amount written "$12,345.67", an order count, a percentage written "4.2%", an ISO date.

Figures:
1. cell reading: `numbers.analyse` on the table, cells per second.
2. xlsx: `sheets.write_xlsx` (reading the cells, formats, alignment, widths, a highlight
   rule, the chart and its "Chart data" sheet) against openpyxl writing the same
   already-parsed values with no formatting at all, in the same run.
3. pptx: a 20-slide deck of 12-row tables with highlights and charts of the same columns.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from tools.documents import deck, numbers, sheets
from tools.documents.deck import Slide
from tools.documents.tables import Highlight


def table(n: int) -> list[list[object]]:
    rng = random.Random(7)
    rows: list[list[object]] = [["Client", "Week", "Revenue", "Orders", "CTR", "Start"]]
    for i in range(n):
        rows.append([f"Client {i % 50:02d}", 20 + i % 10, f"${rng.randint(100, 99_999):,}.{rng.randint(10, 99)}",
                     rng.randint(1, 500), f"{rng.random() * 10:.1f}%", f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}"])
    return rows


def timed(fn: object, *args: object) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args)  # type: ignore[operator]
    return time.perf_counter() - started, result


def bare_xlsx(path: Path, header: list[object], values: list[list[object]]) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for row in values:
        ws.append(row)
    wb.save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    n = parser.parse_args().rows
    rows = table(n)
    print(f"Table: {n:,} rows x 6 columns ({n * 6:,} cells)")
    with tempfile.TemporaryDirectory(prefix="dispatch-produce-bench-") as tmp:
        out = Path(tmp)
        seconds, (_, cells) = timed(numbers.analyse, rows)  # type: ignore[misc]
        print(f"1. numbers.analyse: {seconds:.2f} s, {n * 6 / seconds:,.0f} cells/s")
        values = [[c.value for c in row] for row in cells]

        flag = [Highlight(column="CTR", below=1, fill="red"), Highlight(column="Client", equals="Client 07", bold=True)]
        bare, _ = timed(bare_xlsx, out / "bare.xlsx", rows[0], values)
        ours, said = timed(sheets.write_xlsx, out / "ours.xlsx", rows, "ours", {}, "auto", [], flag)
        print(f"2. write_xlsx {ours:.2f} s ({(out / 'ours.xlsx').stat().st_size / 1e6:.1f} MB) vs bare openpyxl "
              f"{bare:.2f} s: {ours / bare:.2f}x")
        print(f"   {str(said)[:150]}")

        slides = [Slide(title=f"Slide {i}", table=rows[:1] + rows[1 + 12 * i:13 + 12 * i], chart=i % 2 == 1,
                        highlight=[Highlight(column="CTR", below=2, fill="yellow")]) for i in range(20)]
        seconds, _ = timed(deck.write_pptx, out / "deck.pptx", slides, None)
        print(f"3. write_pptx, 20 slides (10 tables, 10 charts): {seconds:.2f} s")


if __name__ == "__main__":
    main()
