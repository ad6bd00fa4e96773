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
outbox, except: hidden and noise folders (`.git`, `node_modules`, ...), secret
places and files (tools.filesystem.paths), and symbolic links (a link out of a root must not
be followed; a link within one is a duplicate). Names go in a trigram table
(substring search on the name and its folders). Text goes in a word table for text
files and documents, but not for hidden files, binary files (a NUL in the first 4
KB), or files above the size limits; at most `MAX_INDEX_CHARS` of each.

Keeping fresh. `FileIndexer` rescans every `interval` seconds (60), or 100 times
as long as the last scan took if that is longer, in a worker thread (os.scandir +
stat: 0.8 s for 100,000 files, so a rescan every ~80 s and under 1 % of a core;
only new or changed files are read again), and files Dispatch writes itself are
indexed at once (`note_file`).
File-system events (inotify/FSEvents through watchdog) were not used: they need a
watch per folder, drop events under load, and do not see network drives, so a
periodic scan would be needed as a backstop anyway. Searches re-check the files
they show, and fall back to a live walk for what the index has not seen yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tools.documents import readers as documents
from tools.filesystem.paths import allowed_roots, secret_file_name, secret_in, secret_reason

log = logging.getLogger("dispatch.index")

SCHEMA = 1
MAX_INDEX_CHARS = 1_000_000  # text indexed per file
MAX_TEXT_BYTES = 50 * 1024 * 1024  # text files above this: names only
MAX_INDEX_DOCUMENT_BYTES = 25 * 1024 * 1024  # documents above this: names only
DUTY = 100  # wait at least this many times as long as the last scan took
BATCH = 500  # rows per write transaction, so a produce tool's write never waits long

NOISE_DIRS = {"node_modules", "__pycache__", "site-packages", "$recycle.bin", "system volume information"}
TEXT_EXT = {
    ".txt", ".md", ".markdown", ".csv", ".tsv", ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg",
    ".conf", ".log", ".html", ".htm", ".xml", ".rst", ".tex", ".org", ".rtf", ".srt", ".vtt",
    ".py", ".js", ".ts", ".tsx", ".jsx", ".java", ".c", ".h", ".cpp", ".go", ".rs", ".rb", ".php",
    ".sh", ".sql", ".css", ".scss", ".swift", ".kt", ".r", ".m", ".ics", ".vcf", ".eml",
}
BINARY_EXT = {
    ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".ico", ".svgz",
    ".mp3", ".wav", ".flac", ".aac", ".m4a", ".ogg", ".mp4", ".mov", ".avi", ".mkv", ".webm",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar", ".dmg", ".iso", ".exe", ".dll",
    ".so", ".dylib", ".bin", ".dat", ".db", ".sqlite", ".sqlite3", ".pyc", ".class", ".jar", ".o",
    ".psd", ".ai", ".sketch", ".fig", ".ttf", ".otf", ".woff", ".woff2", ".key", ".numbers", ".pages",
}

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
        kind TEXT NOT NULL,             -- text | document | other (names only)
        content TEXT NOT NULL           -- pending | done | none | failed
    )""",
    "CREATE INDEX IF NOT EXISTS files_root ON files (root)",
    "CREATE INDEX IF NOT EXISTS files_pending ON files (content) WHERE content = 'pending'",
    # detail=none: trigrams without positions, half the size; a match is a candidate
    # that tools.filesystem.search confirms with instr(), which it does for ranking anyway.
    "CREATE VIRTUAL TABLE IF NOT EXISTS names USING fts5(name, dir, tokenize='trigram', detail=none)",
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
            for table in ("meta", "files", "names", "body"):
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


# Walking ------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    path: str
    root: str
    name: str  # lower case
    dir: str  # lower case, relative to the root
    size: int
    mtime_ns: int
    kind: str


def kind_of(name: str, size: int) -> str:
    """What the content pass does with a file: text, document, or other (names only)."""
    if name.startswith("."):
        return "other"  # hidden files are never content-searched
    ext = os.path.splitext(name)[1].lower()
    if ext in documents.DOCUMENT_TYPES:
        return "document" if size <= MAX_INDEX_DOCUMENT_BYTES else "other"
    if ext in BINARY_EXT or ext in documents.LEGACY_OFFICE:
        return "other"
    return "text" if size <= MAX_TEXT_BYTES else "other"  # unknown extensions are sniffed


def walk(base: Path, root: Path, stop: threading.Event | None = None,
         skip: frozenset[str] = frozenset()) -> Iterator[Entry]:
    """Every indexable file under `base` (which lies in `root`), without following
    links, and not under the folders in `skip` (other roots nested in this one: each
    file belongs to the innermost root, so nested roots are not walked twice)."""
    stack = [str(base)]
    root_s = str(root)
    while stack:
        if stop is not None and stop.is_set():
            return
        folder = stack.pop()
        rel = os.path.relpath(folder, root_s)
        rel = "" if rel == "." else rel.lower()
        try:
            it = os.scandir(folder)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    if e.is_symlink():
                        continue
                    if e.is_dir():
                        low = e.name.lower()
                        if (e.name.startswith(".") or low in NOISE_DIRS or e.path in skip
                                or secret_reason(Path(e.path))):
                            continue
                        stack.append(e.path)
                    elif e.is_file():
                        if secret_file_name(e.name):
                            continue
                        st = e.stat()
                        yield Entry(e.path, root_s, e.name.lower(), rel, st.st_size, st.st_mtime_ns,
                                    kind_of(e.name, st.st_size))
                except OSError:
                    continue


def root_of(path: Path, roots: list[Path]) -> Path | None:
    best = None
    for r in roots:
        if path == r or path.is_relative_to(r):
            if best is None or len(str(r)) > len(str(best)):
                best = r
    return best


# Reading text for the index ------------------------------------------------------


def extract(path: str, kind: str, home: Path | None = None) -> str | None:
    """The text to index, or None when the file has none (binary, unreadable, broke the
    document reader — marked under `home` then, so it is not parsed again until it
    changes — or holds a private key)."""
    p = Path(path)
    if kind == "document":
        try:
            text = documents.convert(p, max_chars=MAX_INDEX_CHARS, home=home)
        except Exception:
            return None
    else:
        try:
            with open(p, "rb") as fh:
                head = fh.read(4096)
                if b"\x00" in head:
                    return None
            with open(p, encoding="utf-8", errors="replace") as fh:
                text = fh.read(MAX_INDEX_CHARS)
        except OSError:
            return None
    return None if secret_in(text) else text


# The index ----------------------------------------------------------------------


class FileIndex:
    """One connection to the index; used by the indexer's thread or by one tool call."""

    def __init__(self, home: Path) -> None:
        conn = connect(home)
        assert conn is not None
        self.conn = conn
        self.home = str(home.resolve())  # never indexed: the database, caches, results

    def close(self) -> None:
        self.conn.close()

    def scan(self, roots: list[Path], stop: threading.Event | None = None) -> dict[str, int]:
        """Bring the index in line with the disk. Returns counts of what changed."""
        stats = {"files": 0, "added": 0, "changed": 0, "removed": 0, "read": 0}
        stop = stop or threading.Event()
        conn = self.conn
        keep = [str(r) for r in roots]
        gone_roots = [r for (r,) in conn.execute("SELECT DISTINCT root FROM files") if r not in keep]
        for r in gone_roots:  # a root the owner removed: forget it
            self._delete_ids([i for (i,) in conn.execute("SELECT id FROM files WHERE root = ?", (r,))])
        ready = ready_roots(self.conn) & set(keep)
        for root in roots:
            known = {p: (i, s, m) for i, p, s, m in conn.execute(
                "SELECT id, path, size, mtime_ns FROM files WHERE root = ?", (str(root),))}
            batch: list[Entry] = []
            nested = frozenset(k for k in keep if k != str(root)) | {self.home}
            for entry in walk(root, root, stop, nested):
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
                return stats
            self._upsert(batch)
            stats["removed"] += len(known)
            self._delete_ids([i for i, _, _ in known.values()])
            ready.add(str(root))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('ready', ?)", (json.dumps(sorted(ready)),))
        stats["read"] = self.read_pending(stop)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('scanned_at', ?)", (str(time.time()),))
        return stats

    def read_pending(self, stop: threading.Event | None = None, only: str | None = None) -> int:
        """Index the text of new and changed files (or just the file `only`), newest
        first; stops when asked."""
        done = 0
        while not (stop and stop.is_set()):
            rows = self.conn.execute(
                "SELECT id, path, kind, size, mtime_ns FROM files WHERE content = 'pending' "
                + ("AND path = ? " if only else "") + "ORDER BY mtime_ns DESC LIMIT 50",
                (only,) if only else ()).fetchall()
            if not rows:
                break
            results = []
            for fid, path, kind, size, mtime_ns in rows:
                if stop and stop.is_set():
                    break
                text = extract(path, kind, Path(self.home))
                if stop and stop.is_set():
                    break  # a parse cut short by shutdown says nothing about the file
                results.append((fid, text))
                time.sleep(0)  # let the event loop's thread have the GIL between files
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                for fid, text in results:
                    self.conn.execute("DELETE FROM body WHERE rowid = ?", (fid,))
                    if text:
                        self.conn.execute("INSERT INTO body (rowid, text) VALUES (?, ?)", (fid, text))
                    self.conn.execute("UPDATE files SET content = ? WHERE id = ?",
                                      ("done" if text else "none", fid))
            done += len(results)
        return done

    def _upsert(self, entries: list[Entry]) -> None:
        if not entries:
            return
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for e in entries:
                content = "pending" if e.kind != "other" else "none"
                row = self.conn.execute("SELECT id FROM files WHERE path = ?", (e.path,)).fetchone()
                if row:
                    fid = row[0]
                    self.conn.execute(
                        "UPDATE files SET root=?, name=?, dir=?, size=?, mtime_ns=?, kind=?, content=? WHERE id=?",
                        (e.root, e.name, e.dir, e.size, e.mtime_ns, e.kind, content, fid))
                    self.conn.execute("DELETE FROM names WHERE rowid = ?", (fid,))
                    self.conn.execute("DELETE FROM body WHERE rowid = ?", (fid,))
                else:
                    fid = self.conn.execute(
                        "INSERT INTO files (path, root, name, dir, size, mtime_ns, kind, content) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (e.path, e.root, e.name, e.dir, e.size, e.mtime_ns, e.kind, content)).lastrowid
                self.conn.execute("INSERT INTO names (rowid, name, dir) VALUES (?, ?, ?)", (fid, e.name, e.dir))

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
    a file that could not be indexed is still found by the next scan."""
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
            st = real.stat()
            rel = os.path.relpath(real.parent, root)
            index._upsert([Entry(str(real), str(root), real.name.lower(), "" if rel == "." else rel.lower(),
                                 st.st_size, st.st_mtime_ns, kind_of(real.name, st.st_size))])
            index.read_pending(only=str(real))
        finally:
            index.close()
    except Exception:
        log.exception("could not index %s", path)


# The background indexer ----------------------------------------------------------


class FileIndexer:
    """Keeps the index fresh while Dispatch runs: `start()` at start-up, `stop()` at
    shutdown. Scans run in a worker thread (file walking and document parsing never
    block the event loop); `stop()` is prompt because the walk checks a flag."""

    def __init__(self, settings: object, *, interval: float = 60.0) -> None:
        self.settings = settings
        self.interval = interval
        self.last: dict[str, int] = {}
        self.scans = 0
        self._begun = self._finished = 0  # scans started / the last one finished
        self._stop = threading.Event()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stop.clear()
            self._task = asyncio.create_task(self.run(), name="dispatch-indexer")

    async def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        documents.kill_parses()  # a document parse in progress would hold the stop up to its time cap
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def poke(self) -> None:
        """Scan now instead of at the next interval."""
        self._poke.set()

    async def refresh(self) -> None:
        """Scan now, and return once a scan that began after this call has finished."""
        want = self._begun + 1
        self.poke()
        while self._finished < want and self._task is not None and not self._task.done():
            await asyncio.sleep(0.02)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            self._poke.clear()  # a poke during the scan below asks for another one
            started = loop.time()
            self._begun += 1
            try:
                self.last = await asyncio.to_thread(self.scan_once)
                self.scans += 1
            except Exception:
                log.exception("indexing failed; trying again later")
            self._finished = self._begun
            # A big tree is rescanned less often, so that scanning never takes more
            # than about 1 % of a core (100,000 files: ~0.8 s, so every ~80 s).
            wait = max(self.interval, DUTY * (loop.time() - started))
            try:
                await asyncio.wait_for(self._poke.wait(), wait)
            except asyncio.TimeoutError:
                pass

    def scan_once(self) -> dict[str, int]:
        settings = self.settings
        index = FileIndex(settings.home)  # type: ignore[attr-defined]
        try:
            started = time.monotonic()
            stats = index.scan(allowed_roots(settings), self._stop)  # type: ignore[arg-type]
            if stats["added"] or stats["changed"] or stats["removed"]:
                log.info("index: %s in %.1f s", stats, time.monotonic() - started)
            return stats
        finally:
            index.close()
