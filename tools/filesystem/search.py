"""Finding files: ranked search over the index, with a live walk where it has gaps.

Ranking, the same for indexed and live results (higher first):
- name: every word of `name` must be in the file's name or its folders below the
  root. Each word in the name itself scores 2, in a folder 0.5; a name that is
  exactly the words ("Campaign Tracker.xlsx" for "campaign tracker") scores 3 more,
  one that starts with the first word 1 more;
- content: up to 2, from FTS5's bm25 relative to the best hit;
- recency: up to 1, `1 / (1 + age / 30 days)`, so last week's file beats last
  year's copy with the same name.
Files with every word in their name come first, then those with some word only in
a folder's name (that way a common word costs its name matches, not every file
under a folder that has the word; see `_names`).

A glob (`*.csv`) matches the name only and lists newest first. When the index can
answer (it exists and its first scan of every folder searched has finished), it
alone answers, hits or misses: the indexer follows file-system events, so a file
saved a second ago is in it, and a miss costs a query, not a walk. Files it has
noted as new or changed but not read yet are searched directly. Until the first
scan is done, or for folders it does not cover, the folders are walked live
(tools.filesystem.live), and the answer says if that stopped early. The scores and
the result types are tools.filesystem.ranking's, shared by both.

A content search says which files it could not look into (over the size limit,
unreadable) rather than answering "no file contains" over them (`skipped_note`).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from pathlib import Path

from tools.filesystem import index as idx
from tools.filesystem.live import LIVE_BUDGET_S, content_hit, fresh, walk_search
from tools.filesystem.paths import allowed_roots
from tools.filesystem.ranking import (
    MONTH_S, Found, Hit, is_glob, name_score, name_words, recency, skip_reason, text_query,
)

CONTENT_CANDIDATES = 100
_NEXT_SEP = chr(ord(os.sep) + 1)  # paths under "a/b" sort between "a/b/" and "a/b0"


# Entry point --------------------------------------------------------------------


def search(settings: object, bases: list[Path], name: str, text: str, limit: int) -> Found:
    roots = allowed_roots(settings)  # type: ignore[arg-type]
    conn = _reader(settings.home)  # type: ignore[attr-defined]
    if conn is not None:
        try:
            ready = idx.ready_roots(conn)
            covering = [idx.root_of(b, roots) for b in bases]
            if all(r is not None and str(r) in ready for r in covering):
                return _from_index(conn, bases, roots, name, text, limit)
        except sqlite3.Error:  # a damaged or locked index: the live walk still answers
            getattr(_readers, "conns", {}).pop(str(idx.index_path(settings.home)), None)  # type: ignore[attr-defined]
            conn.close()
    return walk_search(bases, roots, name, text, limit, str(settings.home.resolve()))  # type: ignore[attr-defined]


_readers = threading.local()


def _reader(home: Path) -> sqlite3.Connection | None:
    """A read connection to the index, kept per thread: its page cache stays warm
    between queries (a new connection starts cold and costs a name query about a
    third more). A new one when the file was deleted or rebuilt meanwhile."""
    path = idx.index_path(home)
    try:
        ino = path.stat().st_ino
    except OSError:
        return None
    held = getattr(_readers, "conns", None)
    if held is None:
        held = _readers.conns = {}
    conn, was = held.get(str(path), (None, None))
    if conn is None or was != ino:
        if conn is not None:
            conn.close()
        conn = idx.connect(home, create=False)
        if conn is None:
            return None
        held[str(path)] = (conn, ino)
    return conn


def _base_filter(bases: list[Path], roots: list[Path]) -> tuple[str, list[str]]:
    if {str(b) for b in bases} >= {str(r) for r in roots}:
        return "", []
    parts, args = [], []
    for b in bases:
        parts.append("(f.path >= ? AND f.path < ?)")
        args += [str(b) + os.sep, str(b) + _NEXT_SEP]
    return " AND (" + " OR ".join(parts) + ")", args


def _from_index(conn: sqlite3.Connection, bases: list[Path], roots: list[Path], name: str, text: str,
                limit: int) -> Found:
    now = time.time()
    where_base, base_args = _base_filter(bases, roots)
    pattern = name.lower().replace("[!", "[^") if name and is_glob(name) else ""
    if pattern and not text:
        rows = conn.execute(
            f"SELECT f.path, f.size, f.mtime_ns, count(*) OVER () FROM files f WHERE f.name GLOB ? {where_base} "
            "ORDER BY f.mtime_ns DESC LIMIT ?", [pattern, *base_args, limit]).fetchall()
        hits = [Hit(p, s, m / 1e9, recency(m / 1e9, now)) for p, s, m, _ in rows]
        return fresh(Found(hits, rows[0][3] if rows else 0))
    words = [] if pattern else name_words(name)
    if not text:
        return fresh(_names(conn, words, where_base, base_args, limit, now))
    match, terms = text_query(text)
    if not match:
        return Found([], 0, ["(no words to look for in the text)"])
    # A glob narrows a content search to the names it matches.
    glob_sql, glob_args = (" AND f.name GLOB ?", [pattern]) if pattern else ("", [])
    name_sql, name_args = glob_sql, list(glob_args)
    for w in words:
        name_sql += " AND (instr(f.name, ?) > 0 OR instr(f.dir, ?) > 0)"
        name_args += [w, w]
    sql = (f"SELECT f.path, f.name, f.dir, f.size, f.mtime_ns, bm25(body), f.id FROM body "
           f"JOIN files f ON f.id = body.rowid WHERE body MATCH ? {name_sql} {where_base}")
    args = [match, *name_args, *base_args]
    rows = conn.execute(sql + " ORDER BY bm25(body) LIMIT ?", [*args, CONTENT_CANDIDATES]).fetchall()
    total = len(rows)
    if total == CONTENT_CANDIDATES:
        total = conn.execute(f"SELECT count(*) FROM ({sql})", args).fetchone()[0]
    best = min((r[5] for r in rows), default=-1.0) or -1.0
    hits, ids = [], {}
    for path, fname, folder, size, mtime_ns, rank, fid in rows:
        score = 2.0 * (rank / best if best else 0) + (name_score(fname, folder, words) or 0.0)
        hits.append(Hit(path, size, mtime_ns / 1e9, score + recency(mtime_ns / 1e9, now), "", (size, mtime_ns)))
        ids[path] = fid
    found = Found(hits, total)
    _skipped(conn, found, name_sql, name_args, where_base, base_args)
    _pending(conn, found, words, terms, glob_sql + where_base, [*glob_args, *base_args], now)
    found.hits.sort(key=lambda h: (-h.score, -h.mtime))
    found.hits = found.hits[:limit]
    # Snippets only for the hits shown (each re-reads its text: 100 cost 0.1 s); "+rowid"
    # keeps FTS5 on the MATCH plan instead of running the query once per id.
    shown = [ids[h.path] for h in found.hits if h.path in ids]
    snips = dict(conn.execute(f"SELECT rowid, snippet(body, 0, '[', ']', '…', 10) FROM body WHERE body MATCH ? "
                              f"AND +rowid IN ({','.join('?' * len(shown))})", [match, *shown]).fetchall())
    for h in found.hits:
        h.snippet = " ".join(snips.get(ids.get(h.path), h.snippet).split())
    return fresh(found, terms)


def _names(conn: sqlite3.Connection, words: list[str], where_base: str, base_args: list[str], limit: int,
           now: float) -> Found:
    """Files with every word in their name first, then files with some word only in
    a folder's name, each ranked by name_score() and recency() (the same order as
    the score alone, but the first group, found through the names' trigrams, is
    small: "client" is in 3,000 file names of the benchmark's tree but in the folders
    of 20,000 more, which are then only counted, from the folders table)."""
    long = [w for w in words if len(w) >= 3]  # trigrams need three characters
    in_name = " AND ".join("instr(f.name, ?) > 0" for _ in words)
    if long:
        # Each trigram as a term of its own (the table keeps no positions, so no
        # phrases); instr() then confirms the word is really there.
        grams = dict.fromkeys(w[i:i + 3] for w in long for i in range(len(w) - 2))
        named = f"names JOIN files f ON f.id = names.rowid WHERE names MATCH ? AND {in_name}"
        named_args: list[object] = [" AND ".join('"' + g.replace('"', '""') + '"' for g in grams), *words]
    else:
        named, named_args = f"files f WHERE {in_name}", [*words]
    in_folder = " OR ".join("instr(d.dir, ?) > 0" for _ in words)
    each = " AND ".join("(instr(f.name, ?) > 0 OR instr(f.dir, ?) > 0)" for _ in words)
    foldered = (f"folders d CROSS JOIN files f ON f.root = d.root AND f.dir = d.dir WHERE ({in_folder}) AND {each} "
                f"AND NOT ({in_name})")
    foldered_args: list[object] = [*words, *[x for w in words for x in (w, w)], *words]
    # The rank of name_score() and recency(), in SQL so only the top rows leave SQLite.
    terms, sargs = [], []
    for w in words:
        terms.append("(CASE WHEN instr(f.name, ?) > 0 THEN 2.0 ELSE 0.5 END)")
        sargs.append(w)
    glob = "?".join(_glob_escape(w) for w in words)
    terms.append("(CASE WHEN f.name GLOB ? OR f.name GLOB ? THEN 3.0 "
                 "WHEN substr(f.name, 1, ?) = ? THEN 1.0 ELSE 0.0 END)")
    sargs += [glob, glob + ".*", len(words[0]), words[0]]
    terms.append(f"1.0 / (1.0 + max(0.0, {now!r} - f.mtime_ns / 1e9) / {MONTH_S}.0)")
    score = " + ".join(terms)
    rows: list[tuple[str, int, int, float]] = []
    total = 0
    single = len(words) == 1 and not where_base  # the folder index alone counts group 2
    both = None  # files of group 1 that are also under a matching folder
    for group, (source, args) in enumerate(((named, named_args), (foldered, foldered_args))):
        want = limit - len(rows)
        if want > 0:
            got = conn.execute(
                f"SELECT f.path, f.size, f.mtime_ns, {score} AS score FROM {source} {where_base} "
                "ORDER BY score DESC, f.mtime_ns DESC LIMIT ?", [*sargs, *args, *base_args, want]).fetchall()
            rows += got
            if len(got) < want:
                total += len(got)
                continue
        if group == 0 and single:
            count, both = conn.execute(f"SELECT count(*), coalesce(sum(instr(f.dir, ?) > 0), 0) FROM {named}",
                                       [*words, *named_args]).fetchone()
            total += count
        elif group == 1 and single:
            # Files under a matching folder (the folder index alone: no file row is
            # read) less those among them already counted by name.
            under_folder = conn.execute(
                "SELECT count(*) FROM folders d CROSS JOIN files f ON f.root = d.root AND f.dir = d.dir "
                "WHERE instr(d.dir, ?) > 0", words).fetchone()[0]
            if both is None:
                both = conn.execute(f"SELECT count(*) FROM {named} AND instr(f.dir, ?) > 0",
                                    [*named_args, *words]).fetchone()[0]
            total += under_folder - both
        else:
            total += conn.execute(f"SELECT count(*) FROM {source} {where_base}", [*args, *base_args]).fetchone()[0]
    return Found([Hit(p, s, m / 1e9, sc) for p, s, m, sc in rows], total)


def _skipped(conn: sqlite3.Connection, found: Found, name_sql: str, name_args: list[str], where_base: str,
             base_args: list[str]) -> None:
    """Note the files a content search could not look into (see tools.filesystem.tree)."""
    rows = conn.execute(
        f"SELECT f.path, f.kind, f.content, count(*) OVER () FROM files f WHERE f.content IN ('large', 'failed') "
        f"{name_sql} {where_base} ORDER BY f.mtime_ns DESC LIMIT 5", [*name_args, *base_args]).fetchall()
    for path, kind, content, total in rows:
        found.skipped.append((path, skip_reason(kind, content)))
        found.skipped_total = total


def _glob_escape(word: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", word)  # a literal * ? [ in a GLOB pattern


def _pending(conn: sqlite3.Connection, found: Found, words: list[str], terms: list[str], where_base: str,
             base_args: list[str], now: float) -> None:
    """Search directly the files the index knows are new or changed but has not read."""
    rows = conn.execute(
        f"SELECT f.path, f.name, f.dir, f.kind FROM files f WHERE f.content = 'pending' {where_base} LIMIT 500",
        base_args).fetchall()
    if not rows:
        return
    deadline = time.monotonic() + LIVE_BUDGET_S / 2
    looked = 0
    for path, fname, folder, kind in rows:
        if time.monotonic() > deadline:
            break
        looked += 1
        ns = name_score(fname, folder, words) if words else 0.0
        if ns is None:
            continue
        hit = content_hit(path, kind, terms, ns, now, found)
        if hit is not None:
            found.hits = [h for h in found.hits if h.path != path] + [hit]
            found.total += 1
    if looked < len(rows):
        found.notes.append(f"({len(rows) - looked} recently changed files are still being indexed and were not searched.)")


