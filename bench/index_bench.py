"""Live file index benchmark: the index following file-system events on a big tree.
Run: `python -m bench.index_bench [--files N] [--idle S]`. Prints figures and exits 0;
a figure that misses its target is marked MISS. Everything happens in a temporary
directory, which is deleted afterwards.

The tree is bench.files_bench's: 100,000 files in about 2,500 folders, 5,000 of them
text documents of 1-6 KB over a Zipf vocabulary, 95,000 small binary-named files.

Figures (all through the real FileIndexer, started as Core.start() starts it, with
its watcher live; queries through the find_files tool exactly as the runner calls it):
1. first build: start to the first scan finished (names, then the 5,000 texts), the
   folders watched, index.db size (after a WAL checkpoint), and the process RSS
   before the indexer started, after its build, and its peak.
2. freshness: 40 new files, each written into an existing folder (every fourth into a
   folder made just before it); the time from the write returning to find_files
   (name=) showing the file, polled every 5 ms. Then 20 files changed: time until
   find_files(text=) finds the new word. Then 20 deletions: time until the index has
   no row for the file (find_files re-checks what it shows, so it would hide a
   deleted file at once; the index row is what the event removes).
3. name query p50 / p99, hits (300 queries of one or two name words that occur) and
   misses (300 queries for words in no name: they used to walk the whole tree).
4. content query p50 / p99: 300 queries of one or two content words, common to rare.
   For 3 and 4 also the p99 of each query's process CPU time: on a shared machine
   the wall time includes waiting for a core; the CPU time is what a query costs.
5. idle CPU: process CPU time (all threads: the watcher's, the indexer's, the event
   loop's) over `--idle` seconds (30) with the indexer live and nothing happening,
   as a share of one core; and the process RSS at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bench.files_bench import CLIENTS, PROJECT_WORDS, build_tree, pct, vocabulary
from store.config import Settings
from store.db import Store
from tools.catalogue import default_registry
from tools.filesystem import index as idx
from tools.filesystem.indexer import FileIndexer
from tools.registry import ToolContext

ROWS: list[tuple[str, str, str, bool]] = []


def row(name: str, value: str, target: str, ok: bool) -> None:
    ROWS.append((name, value, target, ok))


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes on macOS, KiB on Linux


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


CPU_MS: list[float] = []  # process CPU time of each timed call (the machine's load aside)


async def timed(ctx: ToolContext, tool: object, args: dict[str, str]) -> tuple[float, str]:
    start, cpu = time.perf_counter(), time.process_time()
    out = await tool.call(ctx, args)  # type: ignore[attr-defined]
    CPU_MS.append((time.process_time() - cpu) * 1000)
    return (time.perf_counter() - start) * 1000, out


def cpu_p99(n: int) -> str:
    """CPU p99 of the last n timed calls: what a query costs, whatever else runs."""
    return f"CPU p99 {pct(CPU_MS[-n:], 99):.1f} ms"


async def wait_for(cond: object, timeout: float = 30.0) -> float:
    """Seconds until cond() is true (polled every 5 ms); inf if never."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if await cond():  # type: ignore[operator]
            return time.perf_counter() - start
        await asyncio.sleep(0.005)
    return float("inf")


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:.0f} ms, p99 {pct(values, 99) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


async def main(files: int, idle_s: float) -> None:
    rng = random.Random(42)
    vocab = vocabulary(rng)
    tmp = Path(tempfile.mkdtemp(prefix="dispatch-index-bench-"))
    indexer = None
    try:
        root = tmp / "Documents"
        root.mkdir()
        t0 = time.perf_counter()
        folders = build_tree(root, files, rng, vocab)
        print(f"Tree: {files:,} files in {len(folders):,} folders under {root}, written in "
              f"{time.perf_counter() - t0:.1f} s")
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; a shared machine makes p99s noisy\n")
        settings = Settings(_env_file=None, ANTHROPIC_API_KEY="bench",  # type: ignore[call-arg]
                            DISPATCH_HOME=str(tmp / "home"), DISPATCH_ROOTS=str(root))
        store = Store(settings.db_url)
        ctx = ToolContext(settings, store)
        find = default_registry().get("find_files")
        assert find is not None

        # 1. First build, with the watcher live.
        rss_before = rss_mb()
        t0 = time.perf_counter()
        indexer = FileIndexer(settings)
        indexer.start()
        while indexer.scans < 1:
            await asyncio.sleep(0.05)
        build = time.perf_counter() - t0
        db = idx.index_path(settings.home)
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows, texts = conn.execute("SELECT count(*), sum(content = 'done') FROM files").fetchone()
        conn.close()
        size = db.stat().st_size
        watched = len(indexer._watcher.paths) if indexer._watcher else 0
        rss_built = rss_mb()
        print(f"1. First build (events live: {indexer.events}, {watched:,} folders watched): {rows:,} files, "
              f"{texts:,} with text, in {build:.1f} s; index.db {size / 1e6:.1f} MB ({size / rows:.0f} B/file)")
        print(f"   RSS {rss_before:.0f} MB before the indexer, {rss_built:.0f} MB after its build "
              f"(+{rss_built - rss_before:.0f} MB), peak {peak_rss_mb():.0f} MB")
        row("1. first build", f"{build:.1f} s", "(report)", True)
        row("1. index.db", f"{size / 1e6:.1f} MB", "(report)", True)
        row("1. RSS after build (delta)", f"{rss_built:.0f} MB (+{rss_built - rss_before:.0f})", "(report)", True)

        # 2. Freshness.
        async def found_by_name(word: str, path: Path) -> bool:
            _, out = await timed(ctx, find, {"name": word})
            return str(path) in out

        new_ms: list[float] = []
        for i in range(40):
            folder = Path(rng.choice(folders))
            if i % 4 == 0:
                folder = folder / f"new folder {i}"
                folder.mkdir()
            word = f"fresh{i}x{rng.randint(1000, 9999)}"
            path = folder / f"{word} notes.txt"
            path.write_text(f"{word} body")
            new_ms.append(await wait_for(lambda w=word, p=path: found_by_name(w, p)))
        print(f"2. Freshness, new file -> found by name: {ms(new_ms)} (40 files, 10 in new folders)")
        row("2. fresh: new file by name p99", f"{pct(new_ms, 99) * 1000:.0f} ms", "< 1000 ms", pct(new_ms, 99) < 1)

        texts_list = [p for p in root.rglob("*.md")][:20]
        changed_ms: list[float] = []
        for i, path in enumerate(texts_list):
            word = f"changedword{i}q{rng.randint(1000, 9999)}"
            path.write_text(f"now it says {word}")

            async def has_text(w: str = word, p: Path = path) -> bool:
                _, out = await timed(ctx, find, {"text": w})
                return str(p) in out
            changed_ms.append(await wait_for(has_text))
        print(f"   changed file -> found by its new text: {ms(changed_ms)} (20 files)")
        row("2. fresh: changed text p99", f"{pct(changed_ms, 99) * 1000:.0f} ms", "< 1000 ms",
            pct(changed_ms, 99) < 1)

        conn = sqlite3.connect(db)
        gone_ms: list[float] = []
        for path in [p for p in root.rglob("*.csv")][:20]:
            path.unlink()

            async def no_row(p: Path = path) -> bool:
                return conn.execute("SELECT 1 FROM files WHERE path = ?", (str(p),)).fetchone() is None
            gone_ms.append(await wait_for(no_row))
        conn.close()
        print(f"   deleted file -> gone from the index: {ms(gone_ms)} (20 files)")
        print(f"   rescans during all this: {indexer._begun - 1} (changes came through events)")

        # 3. Name queries: hits and misses.
        hits_q, miss_q = [], []
        for _ in range(300):
            kind = rng.random()
            if kind < 0.4:
                hits_q.append(rng.choice(PROJECT_WORDS))
            elif kind < 0.6:
                hits_q.append(f"{rng.choice(PROJECT_WORDS)} {rng.choice(CLIENTS)}")
            else:
                hits_q.append(rng.choice(vocab))
            junk = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(rng.randint(4, 9)))
            miss_q.append(junk if rng.random() < 0.7 else f"{rng.choice(PROJECT_WORDS)} {junk}")
        for q in hits_q[:10]:
            await timed(ctx, find, {"name": q})  # warm the page cache
        hit_ms, miss_ms = [], []
        misses_that_hit = 0
        for q in hits_q:
            hit_ms.append((await timed(ctx, find, {"name": q}))[0])
        hit_cpu = cpu_p99(len(hits_q))
        for q in miss_q:
            t, out = await timed(ctx, find, {"name": q})
            miss_ms.append(t)
            misses_that_hit += not out.startswith("No file names match")
        miss_cpu = cpu_p99(len(miss_q))
        print(f"3. Name query, hits: p50 {pct(hit_ms, 50):.1f} ms, p99 {pct(hit_ms, 99):.1f} ms over {len(hit_ms)} "
              f"({hit_cpu}); misses: p50 {pct(miss_ms, 50):.1f} ms, p99 {pct(miss_ms, 99):.1f} ms over "
              f"{len(miss_ms)} ({miss_cpu}; {misses_that_hit} of them matched after all)")
        row("3. name query hits p99", f"{pct(hit_ms, 99):.1f} ms (p50 {pct(hit_ms, 50):.1f}, {hit_cpu})", "< 50 ms",
            pct(hit_ms, 99) < 50)
        row("3. name query misses p99", f"{pct(miss_ms, 99):.1f} ms (p50 {pct(miss_ms, 50):.1f}, {miss_cpu})", "< 50 ms",
            pct(miss_ms, 99) < 50)

        # 4. Content queries.
        cq = []
        for _ in range(300):
            a = vocab[min(len(vocab) - 1, int(rng.paretovariate(0.6)) - 1 + rng.randint(0, 200))]
            cq.append(a if rng.random() < 0.6 else f"{a} {vocab[rng.randint(0, 400)]}")
        for q in cq[:10]:
            await timed(ctx, find, {"text": q})
        content_ms = [(await timed(ctx, find, {"text": q}))[0] for q in cq]
        print(f"4. Content query (bm25 + snippets, 30 shown): p50 {pct(content_ms, 50):.1f} ms, "
              f"p99 {pct(content_ms, 99):.1f} ms over {len(cq)} ({cpu_p99(len(cq))})")
        row("4. content query p99", f"{pct(content_ms, 99):.1f} ms (p50 {pct(content_ms, 50):.1f}, "
            f"{cpu_p99(len(cq))})", "< 200 ms",
            pct(content_ms, 99) < 200)

        # 5. Idle.
        await asyncio.sleep(2)  # let the last events settle
        c0, w0 = cpu_s(), time.perf_counter()
        await asyncio.sleep(idle_s)
        share = (cpu_s() - c0) / (time.perf_counter() - w0) * 100
        rss_idle = rss_mb()
        print(f"5. Idle with the watcher live, over {idle_s:.0f} s: {share:.3f} % of one core "
              f"(the whole process); RSS {rss_idle:.0f} MB")
        row("5. idle CPU", f"{share:.3f} % of a core", "< 0.1 %", share < 0.1)
        row("5. RSS at idle", f"{rss_idle:.0f} MB", "(report)", True)
        await indexer.stop()
        indexer = None
        store.close()
    finally:
        if indexer is not None:
            await indexer.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    width = max(len(r[0]) for r in ROWS)
    for name, value, target, ok in ROWS:
        print(f"{name:<{width}}  {value:<44} target {target:<10} {'ok' if ok else 'MISS'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    args = parser.parse_args()
    asyncio.run(main(args.files, args.idle))
