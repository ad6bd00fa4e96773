"""The background indexer: keeps the file index (tools.filesystem.index) in line with
the disk while Dispatch runs. `Core.start()` calls `FileIndexer(settings).start()`,
`Core.stop()` awaits `indexer.stop()`.

All the work happens in one worker thread (`dispatch-index`), so walking, SQLite and
document parsing never block the event loop:
1. Watch first (tools.filesystem.watch), then scan, so that nothing changed during
   the scan is missed. The scan (names first; about a second for an unchanged
   100,000-file tree) marks each root ready: from then on find_files answers from the
   index alone and never walks the folders.
2. Apply each batch of file-system events: new, changed, renamed, moved and deleted
   files and folders. A folder that appears is watched first and walked second, so a
   file saved into a new folder is not missed either. The text of new and changed
   files is read between batches, 50 files at a time, newest first.
3. Rescan, reading only new and changed files: hourly while events are live (the
   safety net for a kernel queue overflow, which watchfiles cannot report; see
   watch.py), and every `interval` seconds (60, or 100 times the last scan's time if
   that is longer, so scanning stays under 1 % of a core) where events are
   unavailable (the watch limit, a lost watcher that could not be made again) and
   for roots on a network file system. Each change of state is logged once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tools.documents import readers as documents
from tools.filesystem.index import FileIndex
from tools.filesystem.paths import allowed_roots
from tools.filesystem.tree import root_of, walk
from tools.filesystem.watch import RECURSIVE, Lost, Unavailable, Watcher, network_roots

log = logging.getLogger("dispatch.index")

DUTY = 100  # wait at least this many times as long as the last scan took
READ_SLICE = 50  # files whose text is read between two looks at the events
SETTLE = 1.0  # seconds a changed file must be left alone before its text is read again
_WAKE = object()


class FileIndexer:
    """Keeps the index fresh while Dispatch runs: `start()` at start-up, `stop()` at
    shutdown (prompt: the walk and the reading check a flag)."""

    def __init__(self, settings: Any, *, interval: float = 60.0, safety: float = 3600.0,
                 recursive: bool = RECURSIVE) -> None:
        self.settings = settings
        self.interval = interval  # rescans where events are unavailable
        self.safety = safety  # rescans while events are live
        self.recursive = recursive
        self.last: dict[str, int] = {}  # counts of the last scan
        self.scans = 0  # scans finished, their text included
        self.events = False  # file-system events are live
        self.why_not = ""  # and if not, why
        self._begun = self._finished = 0
        self._stop = threading.Event()
        self._rescan = threading.Event()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._watcher: Watcher | None = None
        self._watched: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._roots: list[Path] = []
        self._polled: list[Path] = []
        self._home = ""
        self._index: Any = None
        self._reading = False
        self._scan_no = 0
        self._due_full = self._due_polled = 0.0
        self._due_settle = float("inf")

    # The event loop's side ---------------------------------------------------------

    def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._stop.clear()
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def finished() -> None:
            try:
                loop.call_soon_threadsafe(done.set)
            except RuntimeError:
                pass  # the loop closed first

        threading.Thread(target=self._work, args=(finished,), name="dispatch-index", daemon=True).start()
        self._task = asyncio.create_task(done.wait(), name="dispatch-indexer")

    async def stop(self) -> None:
        self._stop.set()
        self._queue.put(_WAKE)
        documents.kill_parses()  # a document parse in progress would hold the stop up to its time cap
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def poke(self) -> None:
        """Rescan now instead of when due."""
        self._rescan.set()
        self._queue.put(_WAKE)

    async def refresh(self) -> None:
        """Rescan now, and return once a scan that began after this call has finished
        (its text included)."""
        want = self._begun + 1
        self.poke()
        while self._finished < want and self._task is not None and not self._task.done():
            await asyncio.sleep(0.02)

    # The worker thread -------------------------------------------------------------

    def _work(self, finished: Callable[[], None]) -> None:
        index = None
        self._watcher = Watcher(self._queue, recursive=self.recursive)
        try:
            index = FileIndex(self.settings.home)
            self._run(index)
        except Exception:
            log.exception("the file indexer stopped")
        finally:
            self._watcher.close()
            self.events = False
            if index is not None:
                index.close()
            finished()

    def _run(self, index: FileIndex) -> None:
        self._index = index
        self._roots = allowed_roots(self.settings)
        self._home = index.home
        self._polled = network_roots(self._roots)
        if self._polled:
            log.info("index: %s on a network file system: rescanned every %.0f s",
                     ", ".join(map(str, self._polled)), self.interval)
        self._start_events()
        self._scan(index, self._roots)
        while not self._stop.is_set():
            due = min(self._due_full, self._due_polled, self._due_settle)
            wait = 0.0 if self._reading else max(0.0, due - time.monotonic())
            batch = self._take(wait)
            if self._stop.is_set():
                break
            lost = [b for b in batch if isinstance(b, Lost)]
            if lost:
                self._watcher.forget()  # type: ignore[union-attr]
                log.warning("index: file events were lost (%s); rescanning", lost[0].reason)
                self.events = False
                self._start_events()
                self._scan(index, self._roots)
                continue
            changes: set[tuple[int, str]] = set()
            for b in batch:
                changes |= b
            if changes:
                self._apply(index, changes)
            now = time.monotonic()
            if self._rescan.is_set() or now >= self._due_full:
                self._rescan.clear()
                if not self.events:
                    self._start_events()  # the limit may have been raised since
                self._scan(index, self._roots)
            elif self._polled and now >= self._due_polled:
                self._scan(index, self._polled, forget=False)
            if now >= self._due_settle:
                self._reading, self._due_settle = True, float("inf")
            if self._reading and index.read_pending(self._stop, limit=READ_SLICE, settle=SETTLE) == 0:
                self._reading = False
                if index.pending():  # changed less than SETTLE ago: read once they settle
                    self._due_settle = time.monotonic() + SETTLE / 2
                if self._scan_no > self._finished:
                    self._finished = self._scan_no
                    self.scans += 1

    def _take(self, wait: float) -> list[Any]:
        """What the watcher has queued, waiting up to `wait` seconds for something."""
        items = []
        try:
            items.append(self._queue.get(timeout=min(wait, 3600.0)) if wait > 0 else self._queue.get_nowait())
            while True:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return [i for i in items if i is not _WAKE]

    def _nested(self, root: Path | str) -> frozenset[str]:
        return frozenset(str(r) for r in self._roots if str(r) != str(root)) | {self._home}

    def _start_events(self) -> None:
        """Watch the roots (or each folder the index walks); fall back to rescans."""
        assert self._watcher is not None
        if self.recursive:
            paths = [str(r) for r in self._roots if r.is_dir()]
        else:
            paths = []
            for r in self._roots:
                for _ in walk(r, r, self._stop, self._nested(r), paths, files=False):
                    pass
        self._watch(paths)

    def _watch(self, paths: list[str]) -> bool:
        assert self._watcher is not None
        try:
            self._watcher.watch(paths)
        except Unavailable as exc:
            if self.events or str(exc) != self.why_not:
                log.warning("index: file events unavailable (%s); rescanning every %.0f s instead",
                            exc, self.interval)
            self.events, self.why_not = False, str(exc)
            self._record(len(paths))
            self._due_full = min(self._due_full, time.monotonic() + self.interval) if self._due_full else 0.0
            return False
        if self.why_not:
            log.warning("index: file events are live again (%d folders)", len(self._watcher.paths))
        self.events, self.why_not = True, ""
        self._watched = set(self._watcher.paths)
        self._record(len(self._watched))
        return True

    def _record(self, folders: int) -> None:
        """The state of events, for `dispatch doctor` (another process) to read."""
        state = {"live": self.events, "why": self.why_not, "folders": folders, "at": time.time()}
        try:
            self._index.conn.execute("INSERT OR REPLACE INTO meta VALUES ('events', ?)", (json.dumps(state),))
        except Exception:
            log.debug("could not record the state of events", exc_info=True)

    def _scan(self, index: FileIndex, roots: list[Path], *, forget: bool = True) -> None:
        self._begun += 1
        number = self._begun
        started = time.monotonic()
        folders: list[str] = []
        stats = index.scan(roots, self._stop, read=False, folders=folders, forget=forget)
        if self._stop.is_set():
            return
        took = time.monotonic() - started
        self.last = stats
        if stats["added"] or stats["changed"] or stats["removed"]:
            log.info("index: %s in %.1f s", stats, took)
        if self.events and not self.recursive:
            made = [f for f in folders if f not in self._watched]  # since the folders were listed
            if made:
                self._add_folders(index, made, stats)
        now = time.monotonic()
        if forget:
            self._due_full = now + max(self.safety if self.events else self.interval, DUTY * took)
        # Roots on network file systems are rescanned on their own; without any, never.
        self._due_polled = now + max(self.interval, DUTY * took) if self._polled else float("inf")
        self._reading, self._scan_no = True, number

    def _apply(self, index: FileIndex, changes: set[tuple[int, str]]) -> None:
        stats = {"added": 0, "changed": 0, "removed": 0, "files": 0}
        made, gone = index.apply(changes, self._roots, stats)
        for path in gone:
            if path in self._watched:
                prefix = path + os.sep
                self._watched = {f for f in self._watched if f != path and not f.startswith(prefix)}
        if made:
            self._add_folders(index, made, stats)
        index.flush_moved(stats)
        if stats["added"] or stats["changed"]:
            self._reading = True
        log.debug("index: %d events: %s", len(changes), stats)

    def _add_folders(self, index: FileIndex, folders: list[str], stats: dict[str, int]) -> None:
        """Watch folders that appeared (and the folders in them), then index their
        files; folders made meanwhile go round again."""
        todo = folders
        for _ in range(5):
            if self.events and not self.recursive:
                listed: list[str] = []
                for d in todo:
                    root = root_of(Path(d), self._roots)
                    if root is not None:
                        for _ in walk(d, root, self._stop, self._nested(root), listed, files=False):
                            pass
                keep = {f for f in self._watched if os.path.isdir(f)}
                self._watch(sorted(keep | set(listed)))
            seen: list[str] = []
            for d in todo:
                root = root_of(Path(d), self._roots)
                if root is not None:
                    index.sync(d, str(root), self._nested(root), self._stop, stats, seen)
            if not self.events or self.recursive:
                return
            todo = [f for f in seen if f not in self._watched]
            if not todo:
                return


def doctor_check(settings: Any) -> tuple[str, bool, str]:
    """`dispatch doctor`'s line about the file index, from what the running indexer
    last recorded (Dispatch may not be running now: the time is shown)."""
    from datetime import datetime

    from tools.filesystem.index import connect

    conn = connect(settings.home, create=False)
    if conn is None:
        return ("File index", True, "not built yet: Dispatch builds it when it starts")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'events'").fetchone()
        files = conn.execute("SELECT count(*) FROM files").fetchone()[0]
    except Exception as exc:
        return ("File index", False, f"{settings.home / 'index.db'} cannot be read ({exc}); delete it and "
                "Dispatch rebuilds it")
    finally:
        conn.close()
    if row is None:
        return ("File index", True, f"{files:,} files; the state of file events is not recorded yet")
    state = json.loads(row[0])
    when = datetime.fromtimestamp(state["at"]).strftime("%Y-%m-%d %H:%M")
    if state["live"]:
        return ("File index", True, f"{files:,} files; follows file-system events ({state['folders']:,} "
                f"folders watched, as of {when})")
    fix = (" To fix: `sudo sysctl fs.inotify.max_user_watches=524288`, and the same line in "
           "/etc/sysctl.d/90-dispatch.conf to keep it." if "max_user_watches" in state["why"] else "")
    return ("File index", False, f"{files:,} files; file events unavailable as of {when} ({state['why']}), "
            f"so changes are found by rescans, every minute or so, not at once.{fix}")
