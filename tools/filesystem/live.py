"""Searching the folders themselves, where the index cannot answer yet (its first scan
of a root is not done, or a folder it does not cover): a walk within `LIVE_BUDGET_S`
seconds and `MAX_WALK` files that says when it stopped early. Also the re-check of
what a search shows (`fresh`) and the direct read of one file's text (`content_hit`),
which the index's answers use too (tools.filesystem.search).
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from pathlib import Path

from tools.filesystem import index as idx, tree
from tools.filesystem.ranking import (
    Found, Hit, is_glob, name_score, name_words, note_skipped, recency, skip_reason, text_query,
)

MAX_WALK = 200_000  # files looked at by one live search
LIVE_BUDGET_S = 8.0
LIVE_MAX_BYTES = 10 * 1024 * 1024  # live content search skips larger files


def walk_search(bases: list[Path], roots: list[Path], name: str, text: str, limit: int, home: str) -> Found:
    tree.parses_home.set(Path(home))  # (in this search's own context) broken-file marks apply to live reads too
    now = time.time()
    glob = is_glob(name)
    pattern = re.compile(fnmatch.translate(name.lower())) if glob else None
    words = [] if glob else name_words(name)
    terms = text_query(text)[1] if text else []
    hits: list[Hit] = []
    found = Found([], 0, live=True)
    seen, stopped = 0, ""
    deadline = time.monotonic() + LIVE_BUDGET_S
    for base in bases:
        root = idx.root_of(base, roots) or base
        # Other bases are walked on their own; Dispatch's data folder not at all.
        nested = frozenset(str(b) for b in bases if b != base) | {home}
        for e in idx.walk(base, root, skip=nested):
            seen += 1
            if seen > MAX_WALK:
                stopped = f"after looking at {MAX_WALK:,} files"
                break
            if seen % 256 == 0 and time.monotonic() > deadline:
                stopped = f"after {LIVE_BUDGET_S:.0f} seconds"
                break
            if pattern is not None:
                if not pattern.fullmatch(e.name):
                    continue
                ns = 0.0
            else:
                ns = name_score(e.name, e.dir, words) if words else 0.0
                if ns is None:
                    continue
            if terms:
                if e.kind == "other":
                    continue
                if e.size > LIVE_MAX_BYTES:
                    note_skipped(found, e.path, skip_reason(e.kind, "large", LIVE_MAX_BYTES))
                    continue
                hit = content_hit(e.path, e.kind, terms, ns, now, found)
                if hit is not None:
                    hits.append(hit)
            else:
                hits.append(Hit(e.path, e.size, e.mtime_ns / 1e9, ns + recency(e.mtime_ns / 1e9, now)))
        if stopped:
            break
    hits.sort(key=lambda h: (-h.score, -h.mtime))
    if stopped:
        found.notes.append(f"(Searched the folders directly and stopped {stopped}; narrow with folder= or more words.)")
    found.hits, found.total = hits[:limit], len(hits)
    return fresh(found)


def content_hit(path: str, kind: str, terms: list[str], name_part: float, now: float,
                  found: Found | None = None) -> Hit | None:
    """A hit if the file's text has every term; files it cannot read go in `found.skipped`."""
    status, text = idx.extract(path, kind)
    if status in idx.SKIPPED and found is not None:
        note_skipped(found, path, skip_reason(kind, status))
    if not text:
        return None
    low = text.lower()
    at = [low.find(t) for t in terms]
    if min(at) < 0:
        return None
    first = min(at)
    start = max(0, first - 60)
    snippet = " ".join(text[start:first + 100].split())
    try:
        st = os.stat(path)
    except OSError:
        return None
    hits = sum(low.count(t) for t in terms)
    content = min(2.0, 0.5 + 0.25 * hits)
    return Hit(path, st.st_size, st.st_mtime, name_part + content + recency(st.st_mtime, now),
               ("…" if start else "") + snippet + "…")


def fresh(found: Found, terms: list[str] | None = None) -> Found:
    """Re-check what is shown: a file deleted since the last scan is dropped, one
    changed shows its current size and time, and a content hit on a file changed
    since its text was indexed is searched again (it may no longer match)."""
    kept = []
    now = time.time()
    for h in found.hits:
        try:
            st = os.stat(h.path)
        except OSError:
            found.total -= 1
            continue
        if terms and h.stamp is not None and h.stamp != (st.st_size, st.st_mtime_ns):
            again = content_hit(h.path, idx.kind_of(os.path.basename(h.path), st.st_size), terms, 0.0, now, found)
            if again is None:
                found.total -= 1
                continue
            h.snippet = again.snippet
        h.size, h.mtime = st.st_size, st.st_mtime
        kept.append(h)
    found.hits = kept
    return found
