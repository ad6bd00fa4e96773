"""The file index: names and contents of everything under the roots, in SQLite FTS5.

Where it lives. Its own SQLite file, `DISPATCH_HOME/index.db`, not the main store:
- FTS5 needs SQLite, and the main store may be PostgreSQL (`DATABASE_URL`).
- A first build writes 100,000 rows plus full-text postings. In the main SQLite
  file that would hold the one writer lock against the thread's own writes (each
  model step is persisted before the next); in a file of its own it contends with
  nothing but itself.
- It is a cache, derived from the disk: it needs no migrations (a schema change
  bumps `SCHEMA` and the file is rebuilt), no backup, and deleting it is harmless.

What is indexed. Every file under `DISPATCH_ROOTS` and Dispatch's workspace and
outbox, except what tools.filesystem.tree skips (hidden and noise folders, secrets,
symbolic links). Names go in a trigram table (substring search on the name and its
folders). Text goes in a word table for text files and documents, but not for
hidden files, binary files, or files above the size limits; at most
`MAX_INDEX_CHARS` of each. Each file's `content` says which: pending, done, none
(no text), large (over the size limit), failed (could not be read); a content
search reports the last two instead of passing over them in silence.

Keeping fresh. `FileIndexer` (tools.filesystem.indexer) follows file-system events
and applies them here (`apply`); files Dispatch writes itself are indexed at once
(`note_file`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Iterable

from tools.filesystem.tree import (  # noqa: F401  (re-exported: search and tests use them from here)
    MAX_INDEX_CHARS, MAX_INDEX_DOCUMENT_BYTES, MAX_TEXT_BYTES, Entry, entry_for, extract, inside,
    kind_of, root_of, skip_folder, walk,
)

log = logging.getLogger("dispatch.index")

SCHEMA = 4
BATCH = 500  # rows per write transaction, so a produce tool's write never waits long
SKIPPED = ("large", "failed")  # content states a content search reports as not searched
_NEXT_SEP = chr(ord(os.sep) + 1)  # paths under "a/b" sort between "a/b/" and "a/b0"

_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS files (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,      -- the real path, as tools show it
        root TEXT NOT NULL,
        name TEXT NOT NULL,             -- lower case
        dir TEXT NOT NULL,              -- folders below the root, lower case
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ino INTEGER NOT NULL DEFAULT 0, -- with size and mtime: recognises a moved file
        kind TEXT NOT NULL,             -- text | document | other (names only)
        content TEXT NOT NULL           -- pending | done | none | large | failed
    )""",
    "CREATE INDEX IF NOT EXISTS files_folder ON files (root, dir)",
    # Every folder that holds files: a name query matches folder words here (a few
    # thousand rows) instead of in every file's row (see tools.filesystem.search).
    "CREATE TABLE IF NOT EXISTS folders (root TEXT NOT NULL, dir TEXT NOT NULL, PRIMARY KEY (root, dir)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS files_pending ON files (content) WHERE content = 'pending'",
    "CREATE INDEX IF NOT EXISTS files_skipped ON files (content) WHERE content IN ('large', 'failed')",
    # detail=none: trigrams without positions, half the size; a match is a candidate
    # that tools.filesystem.search confirms with instr(), which it does for ranking anyway.
    "CREATE VIRTUAL TABLE IF NOT EXISTS names USING fts5(name, tokenize='trigram', detail=none)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS body USING fts5(text, tokenize='unicode61 remove_diacritics 2')",
]


def index_path(home: Path) -> Path:
    return home / "index.db"


def connect(home: Path, *, create: bool = True) -> sqlite3.Connection | None:
    """A connection to the index (None if it does not exist and `create` is False)."""
    path = index_path(home)
    if not create and not path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    if create:
        version = _meta(conn, "schema")
        if version is not None and version != str(SCHEMA):
            for table in ("meta", "files", "folders", "names", "body"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        for ddl in _DDL:
            conn.execute(ddl)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
    return conn


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def ready_roots(conn: sqlite3.Connection) -> set[str]:
    """Roots whose names have been fully scanned at least once."""
    return set(json.loads(_meta(conn, "ready") or "[]"))


def under(path: str) -> tuple[str, str]:
    """The half-open range of paths below the folder `path`."""
    return path + os.sep, path + _NEXT_SEP


# The index ----------------------------------------------------------------------


class FileIndex:
    """One connection to the index; used by the indexer's thread or by one tool call."""

    def __init__(self, home: Path) -> None:
        conn = connect(home)
        assert conn is not None
        self.conn = conn
        self.home = str(home.resolve())  # never indexed: the database, caches, results
        # Rows of files gone in this batch of events, by (inode, size, mtime): a file
        # that reappears elsewhere (a renamed or moved folder) takes its row over,
        # text included, instead of being read again. See `apply` and `flush_moved`.
        self.moved: dict[tuple[int, int, int], int] = {}

    def close(self) -> None:
        self.conn.close()

    def scan(self, roots: list[Path], stop: threading.Event | None = None, *, read: bool = True,
             folders: list[str] | None = None, forget: bool = True) -> dict[str, int]:
        """Bring the index in line with the disk under `roots`. Returns counts of what
        changed. `read=False` leaves the text of new and changed files pending (for
        `read_pending`); each folder walked is added to `folders`; `forget` drops the
        roots not in `roots` (a root the owner removed)."""
        stats = {"files": 0, "added": 0, "changed": 0, "removed": 0, "read": 0}
        stop = stop or threading.Event()
        conn = self.conn
        keep = [str(r) for r in roots]
        if forget:
            for (r,) in conn.execute("SELECT DISTINCT root FROM files").fetchall():
                if r not in keep:
                    self._delete_ids([i for (i,) in conn.execute("SELECT id FROM files WHERE root = ?", (r,))])
        ready = ready_roots(self.conn) & set(keep) if forget else ready_roots(self.conn)
        for root in roots:
            nested = frozenset(k for k in keep if k != str(root)) | {self.home}
            if not self.sync(str(root), str(root), nested, stop, stats, folders):
                return stats
            ready.add(str(root))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('ready', ?)", (json.dumps(sorted(ready)),))
        if forget:  # folders left empty (a few thousand primary-key probes)
            conn.execute("DELETE FROM folders WHERE NOT EXISTS (SELECT 1 FROM files f "
                         "WHERE f.root = folders.root AND f.dir = folders.dir)")
        if read:
            stats["read"] = self.read_pending(stop)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('scanned_at', ?)", (str(time.time()),))
        return stats

    def sync(self, base: str, root: str, skip: frozenset[str], stop: threading.Event,
             stats: dict[str, int], folders: list[str] | None = None) -> bool:
        """Walk `base` (the root or a folder in it) and make its rows match what is
        there. False if stopped half-way (nothing is removed then)."""
        if base == root:
            rows = self.conn.execute("SELECT id, path, size, mtime_ns FROM files WHERE root = ?", (root,))
        else:
            rows = self.conn.execute("SELECT id, path, size, mtime_ns FROM files WHERE root = ? AND path >= ? "
                                     "AND path < ?", (root, *under(base)))
        known = {p: (i, s, m) for i, p, s, m in rows}
        batch: list[Entry] = []
        for entry in walk(base, root, stop, skip, folders):
            stats["files"] += 1
            old = known.pop(entry.path, None)
            if old is None:
                stats["added"] += 1
                batch.append(entry)
            elif (old[1], old[2]) != (entry.size, entry.mtime_ns):
                stats["changed"] += 1
                batch.append(entry)
            if len(batch) >= BATCH:
                self._upsert(batch)
                batch = []
        if stop.is_set():
            return False
        self._upsert(batch)
        stats["removed"] += len(known)
        self._delete_ids([i for i, _, _ in known.values()])
        return True

    def apply(self, changes: Iterable[tuple[int, str]], roots: list[Path],
              stats: dict[str, int]) -> tuple[list[str], list[str]]:
        """Make the index match the disk for each path a file-system event named (a
        change is (watchfiles.Change, path); each path is looked at again, so the kind
        of change matters only for folders). Returns the folders that appeared (for the
        caller to watch and then `sync`) and the paths that are gone."""
        kinds: dict[str, set[int]] = {}
        for change, path in changes:
            kinds.setdefault(path, set()).add(int(change))
        skip = frozenset({self.home})
        new_dirs: list[str] = []
        gone: list[str] = []
        entries: list[Entry] = []
        for path in sorted(kinds):
            root = root_of(Path(path), roots)
            if root is None or not inside(path, str(root), skip):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                gone.append(path)
                continue
            if stat.S_ISDIR(st.st_mode):
                # Made, moved in, or deleted and made again: its files are synced.
                # A folder's own "modified" (its times) changes no file in it.
                if kinds[path] - {2} and (path == str(root) or
                                          not skip_folder(os.path.basename(path), path, skip)):
                    new_dirs.append(path)
                continue
            entry = entry_for(path, str(root))
            if entry is None:  # a link or a special file where a file was
                gone.append(path)
                continue
            row = self.conn.execute("SELECT size, mtime_ns, root FROM files WHERE path = ?", (path,)).fetchone()
            if row is None or tuple(row) != (entry.size, entry.mtime_ns, entry.root):
                stats["changed" if row else "added"] += 1
                entries.append(entry)
        for path in gone:
            for fid, ino, size, mtime_ns in self.conn.execute(
                    "SELECT id, ino, size, mtime_ns FROM files WHERE path = ? OR (path >= ? AND path < ?)",
                    (path, *under(path))).fetchall():
                if ino and (ino, size, mtime_ns) not in self.moved:
                    self.moved[(ino, size, mtime_ns)] = fid
                else:
                    stats["removed"] += 1
                    self._delete_ids([fid])
        self._upsert(entries)
        return new_dirs, gone

    def flush_moved(self, stats: dict[str, int]) -> None:
        """Delete the rows of gone files that did not reappear (call after the
        batch's new folders were synced)."""
        stats["removed"] += len(self.moved)
        self._delete_ids(list(self.moved.values()))
        self.moved.clear()

    def read_pending(self, stop: threading.Event | None = None, only: str | None = None,
                     limit: int | None = None, settle: float = 0.0) -> int:
        """Index the text of new and changed files (or just the file `only`), newest
        first, in batches of 50; stops when asked, or after about `limit` files.
        With `settle`, files changed less than that many seconds ago wait (a log that
        is being appended to is read once it pauses, not at every write; until then
        a content search reads it directly)."""
        done = 0
        where, args = "content = 'pending'", []
        if only:
            where += " AND path = ?"
            args.append(only)
        if settle:
            now = time.time_ns()
            where += " AND (mtime_ns < ? OR mtime_ns > ?)"  # (a time in the future: no use waiting)
            args += [now - int(settle * 1e9), now + 10**9]
        while not (stop and stop.is_set()) and (limit is None or done < limit):
            rows = self.conn.execute(
                f"SELECT id, path, kind FROM files WHERE {where} ORDER BY mtime_ns DESC LIMIT 50", args).fetchall()
            if not rows:
                break
            results = []
            for fid, path, kind in rows:
                if stop and stop.is_set():
                    break
                status, text = extract(path, kind, Path(self.home))
                if stop and stop.is_set():
                    break  # a parse cut short by shutdown says nothing about the file
                results.append((fid, status, text))
                time.sleep(0)  # let the event loop's thread have the GIL between files
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                for fid, status, text in results:
                    self.conn.execute("DELETE FROM body WHERE rowid = ?", (fid,))
                    if text:
                        self.conn.execute("INSERT INTO body (rowid, text) VALUES (?, ?)", (fid, text))
                    self.conn.execute("UPDATE files SET content = ? WHERE id = ? AND content = 'pending'",
                                      (status, fid))
            done += len(results)
        return done

    def pending(self) -> int:
        return self.conn.execute("SELECT count(*) FROM files WHERE content = 'pending'").fetchone()[0]

    def _upsert(self, entries: list[Entry]) -> None:
        if not entries:
            return
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for e in entries:
                content = "pending" if e.kind != "other" else "none"
                row = self.conn.execute("SELECT id FROM files WHERE path = ?", (e.path,)).fetchone()
                was = self.moved.pop((e.ino, e.size, e.mtime_ns), None) if row is None and e.ino else None
                if was is not None:  # the same file, renamed or moved: its text stays
                    self.conn.execute("UPDATE files SET path=?, root=?, name=?, dir=?, kind=?, "
                                      "content = CASE WHEN kind = ? THEN content ELSE ? END WHERE id=?",
                                      (e.path, e.root, e.name, e.dir, e.kind, e.kind, content, was))
                    self.conn.execute("DELETE FROM names WHERE rowid = ?", (was,))
                    self.conn.execute("INSERT INTO names (rowid, name) VALUES (?, ?)", (was, e.name))
                    self.conn.execute("INSERT OR IGNORE INTO folders VALUES (?, ?)", (e.root, e.dir))
                    continue
                if row:
                    fid = row[0]
                    self.conn.execute(
                        "UPDATE files SET root=?, name=?, dir=?, size=?, mtime_ns=?, ino=?, kind=?, content=? "
                        "WHERE id=?", (e.root, e.name, e.dir, e.size, e.mtime_ns, e.ino, e.kind, content, fid))
                    self.conn.execute("DELETE FROM names WHERE rowid = ?", (fid,))
                    self.conn.execute("DELETE FROM body WHERE rowid = ?", (fid,))
                else:
                    fid = self.conn.execute(
                        "INSERT INTO files (path, root, name, dir, size, mtime_ns, ino, kind, content) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (e.path, e.root, e.name, e.dir, e.size, e.mtime_ns, e.ino, e.kind, content)).lastrowid
                self.conn.execute("INSERT INTO names (rowid, name) VALUES (?, ?)", (fid, e.name))
                self.conn.execute("INSERT OR IGNORE INTO folders VALUES (?, ?)", (e.root, e.dir))

    def _delete_ids(self, ids: list[int]) -> None:
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                for fid in chunk:
                    self.conn.execute("DELETE FROM files WHERE id = ?", (fid,))
                    self.conn.execute("DELETE FROM names WHERE rowid = ?", (fid,))
                    self.conn.execute("DELETE FROM body WHERE rowid = ?", (fid,))


def note_file(home: Path, roots: list[Path], path: Path) -> None:
    """Index one file now (one Dispatch just wrote), if an index exists. Never raises:
    a file that could not be indexed is still found through its event or a scan."""
    if not index_path(home).exists():
        return
    try:
        real = path.resolve()
        root = root_of(real, roots)
        if root is None:
            return
        index = FileIndex(home)
        try:
            if str(root) not in ready_roots(index.conn):
                return  # the first scan will find it
            entry = entry_for(str(real), str(root))
            if entry is not None:
                index._upsert([entry])
                index.read_pending(only=str(real))
        finally:
            index.close()
    except Exception:
        log.exception("could not index %s", path)
