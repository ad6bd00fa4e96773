"""Hostile documents: what a bomb costs Dispatch's own process, and what isolating every
parse in a worker process costs an honest one.
Run: `python -m bench.hostile_bench`. Prints figures and exits 0; a figure that misses
its target is marked MISS. Everything happens in a temporary directory.

Figures (memory = growth of this process's resident memory while the parse runs,
sampled every 5 ms: what the attack measured as "read_text grew by 174 MB"):
1. each bomb through `readers.convert` (what read_text and the indexer call): a ~85 KB
   .docx inflating to 15 MB of XML, a ~100 KB .pptx inflating to 20 MB, a 4.9 KB .xlsx
   with one cell at XFD1048576, a 4.9 MB honest-looking .docx of 15 MB XML under a
   140 MB worker cap. Targets: parent growth < 30 MB each; the xlsx < 1 s.
3. the same bombs parsed in this process, as before isolation (`formats.convert_here`,
   zip checks off for the first two), for comparison. (The far-corner sheet is fast
   here too: the clamp to the stored cells is in the format code; the old walk over
   the declared dimension was estimated at 1-2 hours.)
2. the price of isolation for an honest 300-paragraph .docx and a 1,000-row .xlsx:
   a cold worker (new process + imports), a warm worker (reused), in-process.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

MB = 1024 * 1024


def make_files(folder: Path) -> dict[str, Path]:
    import openpyxl

    from tests.office_files import make_docx
    from tests.security.hostile_files import docx_bomb, heavy_docx, pptx_bomb, xlsx_far_cell

    files = {
        "docx bomb": docx_bomb(folder / "bomb.docx", inflated_mb=15),
        "pptx bomb": pptx_bomb(folder / "bomb.pptx", inflated_mb=20),
        "xlsx far cell": xlsx_far_cell(folder / "far.xlsx"),
        "heavy docx": heavy_docx(folder / "heavy.docx", xml_mb=15),
        "honest docx": make_docx(folder / "honest.docx", paragraphs=300),
    }
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in range(1, 1001):
        ws.append([f"row {r}", r, r * 1.5, "text"])
    wb.save(folder / "honest.xlsx")
    files["honest xlsx"] = folder / "honest.xlsx"
    return files


def in_process(path: Path, unguarded: bool = False) -> str:
    from tests.security.hostile_files import RssWatch
    from tools.documents import formats

    ratio = formats.MAX_RATIO
    if unguarded:
        formats.MAX_RATIO = 10**9
    started = time.monotonic()
    try:
        with RssWatch() as rss:
            formats.convert_here(path, formats.MAX_CONVERTED_CHARS)
        what = "read"
    except Exception as exc:  # noqa: BLE001 - reported
        what = type(exc).__name__
    finally:
        formats.MAX_RATIO = ratio
    return f"+{rss.grew / MB:6.0f} MB, {time.monotonic() - started:6.2f} s, {what}"


def main() -> None:
    from tests.security.hostile_files import RssWatch
    from tools.documents import readers, worker

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = make_files(folder)
        print("1. through readers.convert (worker process): this process's memory growth and the time")
        for name in ("docx bomb", "pptx bomb", "xlsx far cell", "heavy docx"):
            path = files[name]
            worker.kill_all()
            if name == "heavy docx":
                worker.MEMORY_BYTES = 140 * MB
            started = time.monotonic()
            with RssWatch() as rss:
                try:
                    readers.convert(path, home=folder / "home")
                    what = "read"
                except Exception as exc:  # noqa: BLE001 - reported
                    what = str(exc)[:90]
            took, grew = time.monotonic() - started, rss.grew / MB
            worker.MEMORY_BYTES = 512 * MB
            target = grew < 30 and (name != "xlsx far cell" or took < 1.0)
            print(f"   {name:14} {path.stat().st_size / 1024:7.1f} KB  +{grew:5.1f} MB  {took:6.2f} s  "
                  f"{'ok' if target else 'MISS'}  {what}")
        print("2. the price of isolation for honest files (median of 5)")
        for name in ("honest docx", "honest xlsx"):
            path = files[name]
            cold, warm = [], []
            for _ in range(5):
                worker.kill_all()
                started = time.monotonic()
                readers.convert(path)
                cold.append(time.monotonic() - started)
                started = time.monotonic()
                readers.convert(path)
                warm.append(time.monotonic() - started)
            print(f"   {name:14} worker cold {statistics.median(cold):.3f} s, warm {statistics.median(warm):.3f} s, "
                  f"in-process {in_process(path)}")
        worker.kill_all()
        print("3. the same bombs parsed in this process, as before isolation (zip checks off for the bombs)")
        for name in ("docx bomb", "pptx bomb", "xlsx far cell", "heavy docx"):
            print(f"   {name:14} {in_process(files[name], unguarded=name.endswith('bomb'))}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
