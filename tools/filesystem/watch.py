"""File-system events for the index, through watchfiles (the Rust `notify` crate:
inotify on Linux, FSEvents on macOS, ReadDirectoryChangesW on Windows).

What is watched. inotify watches one folder at a time and every watch counts against
`fs.inotify.max_user_watches`, so on Linux exactly the folders the index walks are
watched, each on its own (not `.git`, `node_modules`, hidden or secret folders). A
new folder means a new watcher over the new set, made before the old one is closed so
that no event falls in between (for a moment both report; applying an event twice is
harmless). Elsewhere the native API is recursive at one handle per root, so each
root is watched whole and the index drops events from the folders it skips.

Batches. A thread of its own waits in `RustNotify.watch`, which sleeps in `STEP_MS`
steps with the GIL released and takes it back after each step to look at its stop
event: that look is the watcher's whole idle cost, on the development machine about
0.09 % of a core with 100 ms steps, 0.06 % with 150 ms and 0.04 % with 200 ms. It puts each batch of
changes, a set of (change, path), on the indexer's queue. A change is seen about two
steps after it happens, well inside the second that freshness allows.

When events are lost. `Lost(reason)` goes on the same queue when the watcher fails
(an error from the OS watcher, e.g. the watch limit reached for a folder made since):
the indexer then rescans and makes a new watcher. When no watcher can be made at all
(the watch limit, no inotify instances left), `watch()` raises `Unavailable` and the
indexer falls back to periodic rescans. A kernel queue overflow (IN_Q_OVERFLOW,
FSEvents' MustScanSubDirs) is NOT passed on by watchfiles 1.x: notify reports it as a
path-less `Rescan` event that watchfiles drops (samuelcolvin/watchfiles#348). Such an
overflow needs more than 16,384 events queued faster than notify's own reader thread
drains them into memory, which is rare; for it the indexer keeps a slow safety rescan
(hourly) while events are live. Network file systems (NFS, SMB, sshfs) report only
changes made on this machine, so roots on them are also rescanned periodically.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from watchfiles._rust_notify import RustNotify

log = logging.getLogger("dispatch.index")

RECURSIVE = sys.platform != "linux"  # see the module docstring
STEP_MS = 150  # how long the watcher sleeps between looks (idle cost vs. delay)
DEBOUNCE_MS = 400  # a burst of changes is returned at most this long after it began
TIMEOUT_MS = 1000  # the watcher thread comes back at least this often (stop, swap)
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "9p", "afs", "ceph",
              "glusterfs", "fuse.glusterfs", "davfs", "fuse.davfs2", "fuse.rclone", "lustre", "gpfs"}


@dataclass(frozen=True)
class Lost:
    """Events may have been missed: the index must rescan."""

    reason: str


class Unavailable(Exception):
    """No watcher could be made (the reason is the message)."""


class Watcher:
    """Changes under some folders, as batches on `out` (see the module docstring)."""

    def __init__(self, out: queue.SimpleQueue, *, recursive: bool = RECURSIVE) -> None:
        self.out = out
        self.recursive = recursive
        self.paths: list[str] = []
        self._next: RustNotify | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake = _Wake(self)

    @property
    def live(self) -> bool:
        return bool(self.paths)

    def watch(self, paths: list[str]) -> None:
        """Watch `paths` from now on (each folder on its own, or each root whole when
        recursive). Raises Unavailable when the OS refuses."""
        paths = sorted(set(paths))
        if paths == self.paths:
            return
        notify, paths = make_notify(paths, self.recursive)
        with self._lock:
            if self._next is not None:  # made and replaced before the thread took it:
                self._drain(self._next)  # what it saw meanwhile is not lost
                self._next.close()
            self._next = notify
            self.paths = paths
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dispatch-watch", daemon=True)
            self._thread.start()

    def _drain(self, notify: RustNotify) -> None:
        try:
            got = notify.watch(0, 1, 1, None)  # returns within a step or two
        except RuntimeError as exc:
            self.out.put(Lost(str(exc)))
            return
        if isinstance(got, set) and got:
            self.out.put(got)

    def forget(self) -> None:
        """After a Lost signal: no watcher until the next `watch()`."""
        self.paths = []

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)  # it returns within a step of `_closed`
            self._thread = None
        with self._lock:
            if self._next is not None:
                self._next.close()
                self._next = None
        self.paths = []

    def _run(self) -> None:
        current: RustNotify | None = None
        try:
            while not self._closed.is_set():
                with self._lock:
                    if self._next is not None:
                        # The new watcher has been collecting since it was made; only
                        # now is the old one closed, so nothing is missed in between.
                        old, current, self._next = current, self._next, None
                        if old is not None:
                            old.close()
                if current is None:
                    self._closed.wait(TIMEOUT_MS / 1000)
                    continue
                try:
                    # Back within a step of a close or of a new watcher being made, so
                    # that the old one (paths from before a folder moved) goes at once.
                    got = current.watch(DEBOUNCE_MS, STEP_MS, TIMEOUT_MS, self._wake)
                except RuntimeError as exc:  # WatchfilesRustInternalError: this watcher is dead
                    current.close()
                    current = None
                    self.out.put(Lost(str(exc)))
                    continue
                if isinstance(got, set) and got:
                    self.out.put(got)
        finally:
            if current is not None:
                current.close()


class _Wake:
    """The stop event RustNotify.watch polls each step: closing, or a watcher to adopt."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def is_set(self) -> bool:
        return self.watcher._closed.is_set() or self.watcher._next is not None


def make_notify(paths: list[str], recursive: bool) -> tuple[RustNotify, list[str]]:
    """A RustNotify over `paths` (dropping folders that vanish or cannot be read
    meanwhile), and the paths it watches. Unavailable when the OS refuses."""
    for _ in range(3):
        try:
            return RustNotify(paths, False, False, 300, recursive, False), paths
        except (FileNotFoundError, PermissionError):
            # A folder went away or is not readable: watch the others (its files, if
            # any, are the next scan's business).
            kept = [p for p in paths if os.path.isdir(p) and os.access(p, os.R_OK | os.X_OK)]
            if kept == paths:
                break
            paths = kept
        except OSError as exc:
            raise Unavailable(reason(exc, len(paths))) from None
    raise Unavailable(f"the folders could not be watched ({len(paths):,})")


def reason(exc: BaseException, folders: int) -> str:
    text = str(exc).split(" about ")[0].strip().rstrip(".")
    if "watch limit" in text.lower() or "no space left" in text.lower():
        return (f"{text}: {folders:,} folders to watch; raise fs.inotify.max_user_watches "
                "(sysctl) to have changes seen at once")
    if "too many open files" in text.lower():
        return f"{text}: raise fs.inotify.max_user_instances (sysctl)"
    return text


def network_roots(roots: list[Path]) -> list[Path]:
    """The roots on a network file system (whose changes made elsewhere raise no events)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            mounts = [line.split()[1:3] for line in fh if len(line.split()) >= 3]
    except OSError:
        return []  # not Linux: no cheap way to ask; the hourly safety rescan covers it
    out = []
    for r in roots:
        best, fstype = "", ""
        for point, kind in mounts:
            point = point.replace("\\040", " ")
            if (str(r) == point or str(r).startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, fstype = point, kind
        if fstype in NETWORK_FS:
            out.append(r)
    return out
