"""File-finding benchmark: the index against `find -iname` and `grep -rl` on one tree.
Run: `python -m bench.files_bench [--files N]`. Prints figures and exits 0; a figure that
misses its target is marked MISS. Everything happens in a temporary directory.

The tree: 100,000 files in about 2,500 folders nested up to four deep, names made of
project words, dates, numbers and separators (`Q3 budget_2024-07 (final).xlsx`,
`IMG_20240712_0042.jpg`). 5,000 of them are text documents (.txt, .md, .csv) of
1-6 KB drawn from a Zipf-distributed vocabulary of 3,000 words; the other 95,000 are
small binary-named files (photos, archives, media) holding 64 bytes each.

Figures:
1. index build: `FileIndex.scan` of the tree from nothing (names, then the text of the
   5,000 documents), its time, and the index file's size; then a rescan with
   nothing changed (the cost of keeping it fresh every interval).
2. name query p50 / p99 (target p50 < 50 ms): 300 queries of one or two name words
   through the `find_files` tool exactly as the runner calls it (Tool.call: argument
   validation, the ranked index query, re-checking each shown file, formatting).
3. content query p50 / p99 (target p50 < 200 ms): 300 queries of one or two content
   words (from the common to the rare) through `find_files(text=...)`, snippets
   included.
4. side by side, same tree and run: `find ROOT -iname '*word*'` and `grep -rli word
   ROOT` for 15 of the same words each (they have no ranking and no snippets), and
   find_files with no index yet (the live fallback) for 5 name words.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from store.config import Settings
from store.db import Store
from tools.filesystem import index as idx
from tools.registry import ToolContext
from tools.catalogue import default_registry

ROWS: list[tuple[str, str, str, bool]] = []
TEXT_DOCS = 5_000
PROJECT_WORDS = ("budget report invoice campaign tracker memo deck client review roadmap plan minutes "
                 "contract proposal forecast payroll summary agenda notes draft final signed scan "
                 "receipt statement offer brief launch retro hiring onboarding").split()
CLIENTS = "acme globex initech umbrella hooli stark wayne wonka tyrell cyberdyne soylent vandelay".split()
MEDIA_EXT = [".jpg", ".png", ".heic", ".mp4", ".mov", ".zip", ".mp3", ".psd", ".bin", ".gz"]
DOC_EXT = [".txt", ".md", ".csv"]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def row(name: str, value: str, target: str, ok: bool) -> None:
    ROWS.append((name, value, target, ok))


def vocabulary(rng: random.Random, n: int = 3000) -> list[str]:
    syllables = "ka lo mi ne ru sa ti vo xe za bri cho dra fen gul hap jor kev lum nax pid quo rex sul tam".split()
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def build_tree(root: Path, files: int, rng: random.Random, vocab: list[str]) -> list[str]:
    """Write the tree; returns the folders made."""
    folders = [root]
    tops = ["Clients", "Projects", "Finance", "Marketing", "Photos", "Archive", "HR", "Personal"]
    while len(folders) < max(50, files // 40):
        parent = rng.choice(folders)
        if len(parent.relative_to(root).parts) >= 4:
            continue
        if parent == root:
            name = rng.choice(tops) + (f" {rng.randint(1, 9)}" if rng.random() < 0.5 else "")
        else:
            name = rng.choice([rng.choice(CLIENTS).title(), str(rng.randint(2018, 2025)),
                               f"Q{rng.randint(1, 4)}", rng.choice(PROJECT_WORDS).title(), rng.choice(vocab)])
        folder = parent / name
        if folder not in folders:
            folder.mkdir(parents=True, exist_ok=True)
            folders.append(folder)
    weights = [1 / (i + 1) for i in range(len(vocab))]  # Zipf: a few common words, many rare
    blob = os.urandom(64)
    for i in range(files):
        folder = rng.choice(folders)
        if i < TEXT_DOCS:
            stem = f"{rng.choice(PROJECT_WORDS)} {rng.choice(vocab)} {rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}"
            ext = rng.choice(DOC_EXT)
            words = rng.choices(vocab, weights, k=rng.randint(150, 900))
            body = "\n".join(" ".join(words[j:j + 12]) for j in range(0, len(words), 12))
            (folder / f"{stem} {i}{ext}").write_text(body, encoding="utf-8")
            continue
        style = rng.random()
        if style < 0.4:
            name = f"IMG_{rng.randint(2018, 2025)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}_{i:05d}"
        elif style < 0.7:
            name = f"{rng.choice(PROJECT_WORDS)}_{rng.choice(CLIENTS)}_{i}"
        else:
            name = f"{rng.choice(vocab)}-{rng.choice(PROJECT_WORDS)} ({rng.randint(1, 9)}) {i}"
        (folder / (name + rng.choice(MEDIA_EXT))).write_bytes(blob)
    return [str(f) for f in folders]


async def timed_tool(ctx: ToolContext, tool: object, args: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = await tool.call(ctx, args)  # type: ignore[attr-defined]
    return (time.perf_counter() - start) * 1000, out


def shell_ms(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return (time.perf_counter() - start) * 1000


async def main(files: int) -> None:
    rng = random.Random(42)
    vocab = vocabulary(rng)
    tmp = Path(tempfile.mkdtemp(prefix="dispatch-files-bench-"))
    try:
        root = tmp / "Documents"
        root.mkdir()
        t0 = time.perf_counter()
        build_tree(root, files, rng, vocab)
        made = time.perf_counter() - t0
        print(f"Tree: {files:,} files ({TEXT_DOCS:,} text documents) under {root}, written in {made:.1f} s")
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
        settings = Settings(_env_file=None, ANTHROPIC_API_KEY="bench",  # type: ignore[call-arg]
                            DISPATCH_HOME=str(tmp / "home"), DISPATCH_ROOTS=str(root))
        store = Store(settings.db_url)
        ctx = ToolContext(settings, store)
        find = default_registry().get("find_files")
        assert find is not None

        # 4b. The live fallback, before any index exists.
        live = [(await timed_tool(ctx, find, {"name": w}))[0] for w in rng.sample(PROJECT_WORDS, 5)]
        print(f"Live fallback (no index yet), find_files(name=...): median {statistics.median(live):.0f} ms over 5")

        # 1. Build.
        from tools.filesystem.paths import allowed_roots

        index = idx.FileIndex(settings.home)
        t0 = time.perf_counter()
        stats = index.scan(allowed_roots(settings))
        build = time.perf_counter() - t0
        index.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = idx.index_path(settings.home).stat().st_size
        content_rows = index.conn.execute("SELECT count(*) FROM files WHERE content = 'done'").fetchone()[0]
        t0 = time.perf_counter()
        again = index.scan(allowed_roots(settings))
        rescan = time.perf_counter() - t0
        index.close()
        print(f"1. Index build: {stats['files']:,} files, {content_rows:,} with text, in {build:.1f} s "
              f"({stats['files'] / build:,.0f} files/s); index.db {size / 1e6:.1f} MB "
              f"({size / stats['files']:.0f} B/file)")
        print(f"   Rescan, nothing changed: {rescan:.2f} s ({again['changed']} changed, {again['added']} added)")
        row("1. index build", f"{build:.1f} s, {size / 1e6:.1f} MB", "(report)", True)
        row("1. rescan unchanged", f"{rescan:.2f} s", "(report)", True)

        # 2. Name queries.
        queries = []
        for _ in range(300):
            kind = rng.random()
            if kind < 0.4:
                queries.append(rng.choice(PROJECT_WORDS))
            elif kind < 0.6:
                queries.append(f"{rng.choice(PROJECT_WORDS)} {rng.choice(CLIENTS)}")
            elif kind < 0.8:
                queries.append(rng.choice(vocab))
            else:
                queries.append(f"{rng.choice(PROJECT_WORDS)} {rng.choice(vocab)}")
        for q in queries[:10]:
            await timed_tool(ctx, find, {"name": q})  # warm the page cache
        name_ms = [(await timed_tool(ctx, find, {"name": q}))[0] for q in queries]
        p50, p99 = pct(name_ms, 50), pct(name_ms, 99)
        print(f"2. Name query (find_files name=, ranked, 30 shown): p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(queries)}")
        row("2. name query p50", f"{p50:.1f} ms (p99 {p99:.1f})", "< 50 ms", p50 < 50)

        # 3. Content queries, from common words to rare ones.
        cq = []
        for _ in range(300):
            a = vocab[min(len(vocab) - 1, int(rng.paretovariate(0.6)) - 1 + rng.randint(0, 200))]
            cq.append(a if rng.random() < 0.6 else f"{a} {vocab[rng.randint(0, 400)]}")
        for q in cq[:10]:
            await timed_tool(ctx, find, {"text": q})
        content_ms = []
        for q in cq:
            ms, _ = await timed_tool(ctx, find, {"text": q})
            content_ms.append(ms)
        p50, p99 = pct(content_ms, 50), pct(content_ms, 99)
        print(f"3. Content query (find_files text=, bm25 + snippets, 30 shown): p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"over {len(cq)}")
        row("3. content query p50", f"{p50:.1f} ms (p99 {p99:.1f})", "< 200 ms", p50 < 200)

        # 4. Side by side.
        sample_names = rng.sample(queries, 15)
        sample_words = rng.sample(cq, 15)
        fnd = [shell_ms(["find", str(root), "-iname", f"*{q.split()[0]}*"]) for q in sample_names]
        grp = [shell_ms(["grep", "-rli", q.split()[0], str(root)]) for q in sample_words]
        ours_n = [(await timed_tool(ctx, find, {"name": q.split()[0]}))[0] for q in sample_names]
        ours_c = [(await timed_tool(ctx, find, {"text": q.split()[0]}))[0] for q in sample_words]
        print(f"4. Same words, same run: find -iname p50 {pct(fnd, 50):.0f} ms (p99 {pct(fnd, 99):.0f}) vs "
              f"find_files name= p50 {pct(ours_n, 50):.1f} ms; grep -rli p50 {pct(grp, 50):.0f} ms "
              f"(p99 {pct(grp, 99):.0f}) vs find_files text= p50 {pct(ours_c, 50):.1f} ms")
        print(f"   Live fallback with no index: median {statistics.median(live):.0f} ms (name only)")
        row("4. find -iname p50", f"{pct(fnd, 50):.0f} ms", "(compare)", True)
        row("4. grep -rli p50", f"{pct(grp, 50):.0f} ms", "(compare)", True)
        row("4. live fallback (no index)", f"{statistics.median(live):.0f} ms", "(compare)", True)
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    width = max(len(r[0]) for r in ROWS)
    for name, value, target, ok in ROWS:
        print(f"{name:<{width}}  {value:<28} target {target:<10} {'ok' if ok else 'MISS'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().files))
