"""The file index and ranked find_files: names and content, kept fresh, never showing
secrets, hidden or binary content, and a live walk where the index has gaps. Searches
go through the find_files tool as the runner calls it; the index is built by the real
scanner (or the background FileIndexer) over files made here."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from watchfiles._rust_notify import RustNotify, WatchfilesRustInternalError

from agent.channel import Inbound
from store.db import Store
from tests.conftest import task_state, until
from tests.helpers import call, files_settings
from tests.office_files import make_docx, make_pdf
from tools.filesystem import index as idx
from tools.filesystem.indexer import FileIndexer
from tools.filesystem import search, watch
from tools.filesystem.paths import allowed_roots
from tools.registry import ToolContext, ToolError
from tools.catalogue import default_registry

DAY = 86400


# `root` and `ctx` (a tool context over that one folder) are in conftest.py.


def write(path: Path, text: str, age_days: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


def scan(ctx: ToolContext) -> dict[str, int]:
    index = idx.FileIndex(ctx.settings.home)
    try:
        return index.scan(allowed_roots(ctx.settings))
    finally:
        index.close()


async def find(ctx: ToolContext, **args: Any) -> list[str]:
    """The paths find_files shows, in order."""
    out = await call(ctx, "find_files", **args)
    return [line.split("  (")[0] for line in out.splitlines() if line.startswith("/")]


async def find_text(ctx: ToolContext, **args: Any) -> str:
    return await call(ctx, "find_files", **args)


def used_index(ctx: ToolContext, name: str = "", text: str = "") -> bool:
    return not search.search(ctx.settings, allowed_roots(ctx.settings), name, text, 30).live


# Ranking -------------------------------------------------------------------------


async def test_names_rank_exact_then_name_then_folder_and_newer_first(ctx: ToolContext, root: Path) -> None:
    exact = write(root / "Campaign Tracker.csv", "w,s\n", age_days=40)
    newer_copy = write(root / "old" / "campaign_tracker_v2.csv", "w,s\n", age_days=2)
    stale_copy = write(root / "old" / "campaign-tracker-v1.csv", "w,s\n", age_days=300)
    in_folder = write(root / "Campaign" / "tracker notes.txt", "x", age_days=1)
    write(root / "unrelated.txt", "campaign tracker")  # content only: not a name match
    assert scan(ctx)["added"] == 5
    assert used_index(ctx, name="campaign tracker")
    found = await find(ctx, name="campaign tracker")
    assert found == [str(exact), str(newer_copy), str(stale_copy), str(in_folder)]


async def test_content_search_ranks_snippets_and_document_formats(ctx: ToolContext, root: Path) -> None:
    write(root / "notes" / "misc.txt", "lunch with the team; the quarterly revenue came up once")
    write(root / "notes" / "revenue-plan.md", "# Revenue plan\nquarterly revenue targets, revenue by region")
    make_docx(root / "memo.docx")  # "Revenue grew in every region."
    make_pdf(root / "statement.pdf", ["Quarterly revenue statement", "revenue revenue"])
    scan(ctx)
    out = await find_text(ctx, text="revenue")
    paths = [line.split("  (")[0] for line in out.splitlines() if line.startswith("/")]
    assert set(paths) == {str(root / "notes" / "misc.txt"), str(root / "notes" / "revenue-plan.md"),
                          str(root / "memo.docx"), str(root / "statement.pdf")}
    assert "[Revenue]" in out or "[revenue]" in out, "snippets mark the hit"
    # Name and text together: only files matching both.
    assert await find(ctx, name="plan", text="region") == [str(root / "notes" / "revenue-plan.md")]
    # A phrase, and prefixes ("quarter" finds "quarterly").
    assert await find(ctx, text='"revenue targets"') == [str(root / "notes" / "revenue-plan.md")]
    assert len(await find(ctx, text="quarter revenue")) == 4, "the memo's heading is 'Quarterly memo'"
    assert "No files contain 'nonexistentword'." in await find_text(ctx, text="nonexistentword")


async def test_globs_list_newest_first(ctx: ToolContext, root: Path) -> None:
    a = write(root / "a.csv", "1", age_days=3)
    b = write(root / "sub" / "b.CSV", "1", age_days=1)
    write(root / "c.txt", "1")
    scan(ctx)
    assert await find(ctx, name="*.csv") == [str(b), str(a)]


# What is never searched ----------------------------------------------------------


async def test_hidden_secret_binary_and_linked_files_stay_out(ctx: ToolContext, root: Path, tmp_path: Path) -> None:
    write(root / "plan.txt", "the launch codeword is pineapple")
    write(root / ".hidden-notes.txt", "pineapple hidden")
    write(root / ".git" / "config", "pineapple in git")
    write(root / "node_modules" / "pkg" / "readme.md", "pineapple package")
    write(root / "deploy.env", "PINEAPPLE=1")
    write(root / ".ssh" / "notes.txt", "pineapple key notes")
    (root / "blob.dat").write_bytes(b"\x00\x01pineapple\x00")
    (root / "mystery").write_bytes(b"pineapple\x00\x00binary")
    outside = tmp_path / "private"
    write(outside / "pineapple.txt", "pineapple outside")
    (root / "link.txt").symlink_to(outside / "pineapple.txt")
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    scan(ctx)
    assert await find(ctx, text="pineapple") == [str(root / "plan.txt")]
    names = await find(ctx, name="pineapple")
    assert names == [], "the link and the folder it points to are not indexed"
    assert await find(ctx, name="hidden") == [str(root / ".hidden-notes.txt")], "hidden names are findable"
    conn = sqlite3.connect(idx.index_path(ctx.settings.home))
    paths = [p for (p,) in conn.execute("SELECT path FROM files")]
    conn.close()
    assert not any(".ssh" in p or p.endswith(".env") or ".git" in p or "node_modules" in p for p in paths)


# Freshness -----------------------------------------------------------------------


async def test_rescans_pick_up_changes_and_shown_files_are_rechecked(ctx: ToolContext, root: Path) -> None:
    doc = write(root / "status.txt", "project is green")
    gone = write(root / "draft.txt", "project is green too")
    scan(ctx)
    assert len(await find(ctx, text="green")) == 2
    write(doc, "project is red")
    os.utime(doc, (time.time() + 5, time.time() + 5))
    gone.unlink()
    # Before the next scan: the deleted file is not shown, the changed one is searched directly.
    assert await find(ctx, text="green") == []
    stats = scan(ctx)
    assert (stats["changed"], stats["removed"]) == (1, 1)
    assert await find(ctx, text="red") == [str(doc)]
    new = write(root / "new" / "fresh.md", "brand new words")
    # A miss is answered by the index, never by walking the folders (here no indexer
    # runs, so nothing has told the index yet; with one, its events do: see below).
    assert used_index(ctx, name="fresh") and await find(ctx, name="fresh") == []
    scan(ctx)
    assert used_index(ctx, name="fresh")
    assert await find(ctx, name="fresh") == [str(new)]


async def test_new_files_not_read_yet_are_searched_directly(ctx: ToolContext, root: Path) -> None:
    write(root / "a.txt", "alpha")
    scan(ctx)
    late = write(root / "b.txt", "bravo words")
    index = idx.FileIndex(ctx.settings.home)
    try:  # names noted, text not read yet (as when a scan is half-way)
        index._upsert(list(idx.walk(root, root)))
    finally:
        index.close()
    assert used_index(ctx, text="bravo")
    assert await find(ctx, text="bravo") == [str(late)]


async def test_live_fallback_before_the_first_scan_and_for_other_folders(ctx: ToolContext, root: Path) -> None:
    doc = write(root / "sub" / "report.txt", "numbers inside")
    assert not used_index(ctx, name="report")
    assert await find(ctx, name="report") == [str(doc)]
    assert await find(ctx, text="numbers") == [str(doc)]
    assert await find(ctx, name="report", folder=str(root / "sub")) == [str(doc)]


async def test_a_removed_root_and_a_new_schema_rebuild(ctx: ToolContext, root: Path, tmp_path: Path) -> None:
    write(root / "keep.txt", "x")
    scan(ctx)
    other = files_settings(tmp_path)  # same home, no roots any more
    index = idx.FileIndex(other.home)
    try:
        index.scan(allowed_roots(other))
        assert index.conn.execute("SELECT count(*) FROM files WHERE root = ?", (str(root),)).fetchone()[0] == 0
        index.conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    finally:
        index.close()
    index = idx.FileIndex(other.home)  # an index from another version is rebuilt, not misread
    try:
        assert index.conn.execute("SELECT count(*) FROM files").fetchone()[0] == 0
        assert idx.ready_roots(index.conn) == set()
    finally:
        index.close()


async def test_bad_queries(ctx: ToolContext, root: Path) -> None:
    t = default_registry().get("find_files")
    assert t is not None
    for args in ({}, {"name": " - "}, {"name": "", "text": "  "}):
        with pytest.raises(ToolError, match="Give part of a file name"):
            await t.call(ctx, args)
    write(root / "f.txt", "x")
    with pytest.raises(ToolError, match="is a file, not a folder"):
        await t.call(ctx, {"name": "x", "folder": "f.txt"})
    scan(ctx)
    # FTS5 syntax in user text is taken literally, never as a query language.
    assert await find(ctx, text='NEAR( "x" OR * -') == []
    assert await find(ctx, name='"; DROP TABLE files; --') == []


# The background indexer ---------------------------------------------------------


async def test_indexer_runs_in_a_thread_keeps_the_loop_free_and_stops_promptly(ctx: ToolContext, root: Path) -> None:
    for i in range(1500):
        write(root / f"d{i % 30}" / f"note {i}.txt", f"note number {i} " + "filler words " * 40)
    indexer = FileIndexer(ctx.settings, interval=0.2)
    gaps: list[float] = []
    loop = asyncio.get_running_loop()
    indexer.start()
    last = loop.time()
    while indexer.scans < 1:
        await asyncio.sleep(0.01)
        now = loop.time()
        gaps.append(now - last)
        last = now
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f} s"
    assert await find(ctx, text="1499") == [str(root / "d29" / "note 1499.txt")]
    write(root / "later.txt", "appears later")
    await indexer.refresh()
    assert used_index(ctx, name="later") and await find(ctx, name="later") == [str(root / "later.txt")]
    started = time.monotonic()
    await indexer.stop()
    assert time.monotonic() - started < 2


async def test_core_starts_and_stops_the_indexer(core, fake, settings, roots: Path) -> None:
    write(roots / "weekly" / "tracker.csv", "week,signups\n45,120\n")
    assert core.indexer is not None
    await core.indexer.refresh()
    assert used_index(ToolContext(settings, core.store), name="tracker")
    fake.reply(tool_uses=[("find_files", {"name": "tracker"})])
    fake.reply("Found it.")
    task = await core.submit(Inbound("find the tracker", "console:local"))
    await until(lambda: task_state(core.store, task.id) == "done", timeout=30)  # a loaded machine is slow
    assert str(roots / "weekly" / "tracker.csv") in fake.requests[1]["messages"][-1]["content"][0]["content"]
    indexer = core.indexer
    await core.stop()
    assert indexer._task is None


async def test_files_dispatch_writes_are_indexed_at_once(ctx: ToolContext, root: Path) -> None:
    scan(ctx)
    t = default_registry().get("make_document")
    assert t is not None
    await t.call(ctx, {"name": "launch memo.docx", "markdown": "# Launch\n\nThe zebra project starts Monday."})
    assert await find(ctx, text="zebra") == [str(ctx.settings.outbox / "launch memo.docx")]


async def test_nested_roots_are_walked_once(tmp_path: Path) -> None:
    home_root = tmp_path / "home"
    docs = home_root / "Documents"
    write(docs / "plan.txt", "nested words")
    write(home_root / "top.txt", "top words")
    # DISPATCH_HOME inside a root, and one root inside another.
    settings = files_settings(tmp_path, home_root, docs, DISPATCH_HOME=str(home_root / "dispatch"))
    store = Store(settings.db_url)
    try:
        ctx = ToolContext(settings, store)
        both = sorted([str(docs / "plan.txt"), str(home_root / "top.txt")])
        assert sorted(await find(ctx, text="words")) == both, "the live walk lists each file once"
        assert await find(ctx, name="dispatch") == [], "Dispatch's own data folder is not searched"
        scan(ctx)
        assert scan(ctx)["changed"] == 0, "no file flips between two roots"
        assert sorted(await find(ctx, text="words")) == both
        assert await find(ctx, name="dispatch") == [] and await find(ctx, name="index") == []
        await default_registry().get("make_document").call(ctx, {"name": "out.md", "markdown": "outbox words"})
        assert str(settings.outbox / "out.md") in await find(ctx, text="words")
    finally:
        store.close()


# Following file-system events ------------------------------------------------------
# A live FileIndexer with rescans far away (an hour): whatever it finds after its
# first scan came through events. Waits are generous polls, never timed assertions.


def indexed(ctx: ToolContext) -> set[str]:
    """The paths in the index itself (find_files re-checks what it shows, so a
    deleted file would vanish from its answers even with a stale index)."""
    conn = sqlite3.connect(idx.index_path(ctx.settings.home))
    try:
        return {p for (p,) in conn.execute("SELECT path FROM files")}
    finally:
        conn.close()


async def live_indexer(ctx: ToolContext, **kw: Any) -> Any:
    indexer = FileIndexer(ctx.settings, interval=kw.pop("interval", 3600.0), safety=3600.0, **kw)
    indexer.start()
    await until(lambda: indexer.scans >= 1, timeout=30, what="the first scan")
    return indexer


async def test_events_add_change_rename_move_and_delete_files_and_folders(
        ctx: ToolContext, root: Path, tmp_path: Path) -> None:
    keep = write(root / "keep.txt", "steady")
    indexer = await live_indexer(ctx)
    try:
        assert indexer.events, indexer.why_not
        # A new file: by name, then by content, from the index.
        new = write(root / "budget 2026.md", "the walrus budget")
        await until(lambda: str(new) in indexed(ctx), timeout=20, what="a new file")
        assert used_index(ctx, name="budget") and await find(ctx, name="budget") == [str(new)]
        await until(lambda: search.search(ctx.settings, [root], "", "walrus", 30).hits, timeout=20,
                    what="its text")
        # Changed: the old words go, the new ones come.
        write(new, "the narwhal budget")
        await until(lambda: search.search(ctx.settings, [root], "", "narwhal", 30).hits, timeout=20,
                    what="changed text")
        assert await find(ctx, text="walrus") == []
        # Renamed and deleted.
        renamed = new.rename(root / "budget final.md")
        await until(lambda: str(renamed) in indexed(ctx) and str(new) not in indexed(ctx), timeout=20,
                    what="a rename")
        keep.unlink()
        await until(lambda: str(keep) not in indexed(ctx), timeout=20, what="a deletion")
        # A new folder with a file written at once, then one written later (the
        # folder is being watched by then).
        (root / "Clients" / "Acme").mkdir(parents=True)
        first = write(root / "Clients" / "Acme" / "brief.txt", "acme brief")
        await until(lambda: str(first) in indexed(ctx), timeout=20, what="a file in a new folder")
        later = write(root / "Clients" / "Acme" / "notes.txt", "acme notes")
        await until(lambda: str(later) in indexed(ctx), timeout=20, what="a file written into it later")
        # A folder renamed, then moved into another folder: its files follow it.
        (root / "Clients" / "Acme").rename(root / "Clients" / "Acme Corp")
        moved = {str(root / "Clients" / "Acme Corp" / n) for n in ("brief.txt", "notes.txt")}
        await until(lambda: moved <= indexed(ctx) and str(first) not in indexed(ctx), timeout=20,
                    what="a renamed folder")
        (root / "Archive").mkdir()
        (root / "Clients" / "Acme Corp").rename(root / "Archive" / "Acme Corp")
        archived = {str(root / "Archive" / "Acme Corp" / n) for n in ("brief.txt", "notes.txt")}
        await until(lambda: archived <= indexed(ctx) and not moved & indexed(ctx), timeout=20,
                    what="a moved folder")
        deeper = write(root / "Archive" / "Acme Corp" / "2025" / "q4.txt", "acme quarter")
        await until(lambda: str(deeper) in indexed(ctx), timeout=20, what="a file in the moved folder")
        # Out of the roots and back in from outside.
        outside = tmp_path / "elsewhere"
        (root / "Archive" / "Acme Corp").rename(outside)
        await until(lambda: not any("Acme Corp" in p for p in indexed(ctx)), timeout=20,
                    what="a folder moved out")
        outside.rename(root / "Back")
        await until(lambda: str(root / "Back" / "2025" / "q4.txt") in indexed(ctx), timeout=20,
                    what="a folder moved in")
        assert await find(ctx, text="quarter") == [str(root / "Back" / "2025" / "q4.txt")]
        shutil.rmtree(root / "Back")
        await until(lambda: not any("/Back/" in p for p in indexed(ctx)), timeout=20, what="a folder deleted")
        assert indexer._begun == 1, "all of this came through events, without a rescan"
    finally:
        await indexer.stop()


class Overflowing:
    """RustNotify with a switch: when `drop` is set, the next batch is lost and the
    watcher fails, as watchfiles does when the OS watcher reports an error."""

    drop = threading.Event()

    def __init__(self, *args: Any) -> None:
        self.real = RustNotify(*args)

    def watch(self, *args: Any) -> Any:
        got = self.real.watch(*args)
        if isinstance(got, set) and Overflowing.drop.is_set():
            Overflowing.drop.clear()
            raise WatchfilesRustInternalError("error in underlying watcher: event queue overflowed (simulated)")
        return got

    def close(self) -> None:
        self.real.close()


async def test_lost_events_fall_back_to_a_rescan(ctx: ToolContext, root: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(watch, "RustNotify", Overflowing)
    indexer = await live_indexer(ctx)
    try:
        assert indexer.events
        Overflowing.drop.set()
        missed = write(root / "missed.txt", "lost in the overflow")
        await until(lambda: str(missed) in indexed(ctx), timeout=20, what="the rescan after lost events")
        assert not Overflowing.drop.is_set(), "the batch with the file was dropped"
        assert indexer._begun == 2, "found by a second scan"
        assert "file events were lost" in caplog.text and "rescanning" in caplog.text
        assert indexer.events, "and a new watcher follows events again"
        after = write(root / "after.txt", "x")
        await until(lambda: str(after) in indexed(ctx), timeout=20, what="an event after the new watcher")
        assert indexer._begun == 2
    finally:
        await indexer.stop()


async def test_no_watcher_means_periodic_rescans(ctx: ToolContext, root: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def refused(*args: Any) -> None:
        # What RustNotify raises when inotify_add_watch fails with ENOSPC.
        raise OSError('OS file watch limit reached. about ["/x"] (Error { kind: MaxFilesWatch })')

    monkeypatch.setattr(watch, "RustNotify", refused)
    indexer = await live_indexer(ctx, interval=0.3)
    try:
        assert not indexer.events and "watch limit" in indexer.why_not
        assert caplog.text.count("file events unavailable") == 1, "said once, not at every rescan"
        new = write(root / "polled.txt", "x")
        await until(lambda: str(new) in indexed(ctx), timeout=20, what="a rescan")
        assert indexer._begun >= 2
        assert caplog.text.count("file events unavailable") == 1
    finally:
        await indexer.stop()


# Content search says what it could not search -----------------------------------------


async def test_content_search_reports_files_it_skipped(ctx: ToolContext, root: Path) -> None:
    big = root / "server.log"
    with open(big, "w") as fh:  # 51 MB, sparse: text at the start (no NUL in the first 4 KB)
        fh.write("needle in a very large log\n" * 200)
        fh.truncate(51 * 1024 * 1024)
    (root / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a PDF needle")
    # Before the first scan the folders are searched directly (10 MB limit there).
    out = await find_text(ctx, text="needle")
    assert out.startswith("No searchable files contain 'needle'.")
    assert "server.log (over 10 MB, the limit when searching folders directly)" in out
    assert "broken.pdf (could not be read)" in out
    scan(ctx)
    out = await find_text(ctx, text="needle")
    assert out.startswith("No searchable files contain 'needle'."), out
    assert "Not searched for text: 2 files" in out
    assert "server.log (over 50 MB, the limit for text)" in out and "broken.pdf (could not be read)" in out
    # With a hit elsewhere the note is still there; a name filter narrows it.
    write(root / "small.txt", "a needle here")
    scan(ctx)
    out = await find_text(ctx, text="needle")
    assert out.splitlines()[0].startswith(str(root / "small.txt")) and "Not searched for text: 2 files" in out
    assert "broken.pdf" not in await find_text(ctx, name="server", text="needle")
    assert await find(ctx, name="server") == [str(big)], "the big file is still found by name"
    # Nothing skipped: the plain answer.
    assert await find_text(ctx, name="small", text="haystack") == "No files with 'small' in their name contain 'haystack'."


WATCH_LIMIT_SCRIPT = r"""
import asyncio, json, logging, sys, time
from pathlib import Path
from store.config import Settings
from tools.filesystem.indexer import FileIndexer
from tools.filesystem import index as idx

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
tmp = Path(sys.argv[1])
settings = Settings(_env_file=None, ANTHROPIC_API_KEY="x", DISPATCH_HOME=str(tmp / "home"),
                    DISPATCH_ROOTS=str(tmp / "Documents"))

async def main():
    indexer = FileIndexer(settings, interval=0.3, safety=3600)
    indexer.start()
    while indexer.scans < 1:
        await asyncio.sleep(0.05)
    out = {"events": indexer.events, "why": indexer.why_not}
    new = tmp / "Documents" / "d7" / "after-start.txt"
    new.write_text("x")
    end = time.monotonic() + 20
    conn = idx.connect(settings.home)
    while time.monotonic() < end and not conn.execute("SELECT 1 FROM files WHERE path = ?", (str(new),)).fetchone():
        await asyncio.sleep(0.05)
    out["found"] = bool(conn.execute("SELECT 1 FROM files WHERE path = ?", (str(new),)).fetchone())
    out["scans"] = indexer._begun
    await indexer.stop()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_the_real_inotify_watch_limit_falls_back_to_rescans(tmp_path: Path) -> None:
    """A real ENOSPC from inotify_add_watch: in a user namespace of its own (no root,
    nothing outside it affected) the watch limit is set to 5 for a tree of 12 folders."""
    import json
    import subprocess
    import sys

    probe = subprocess.run(["unshare", "-U", "-r", "sh", "-c", "echo 5 > /proc/sys/user/max_inotify_watches"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or not sys.platform.startswith("linux"):
        pytest.skip(f"user namespaces unavailable here: {probe.stderr.strip()[:200]}")
    for i in range(12):
        (tmp_path / "Documents" / f"d{i}").mkdir(parents=True)
    cmd = ["unshare", "-U", "-r", "sh", "-c",
           'echo 5 > /proc/sys/user/max_inotify_watches && exec "$0" -c "$1" "$2"',
           sys.executable, WATCH_LIMIT_SCRIPT, str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["events"] is False and "watch limit" in out["why"], out
    assert "max_user_watches" in out["why"], "and it says what to raise"
    assert out["found"] and out["scans"] >= 2, "a periodic rescan found the new file"
    assert done.stderr.count("file events unavailable") == 1, done.stderr[-2000:]


async def test_name_matches_come_before_folder_matches_and_both_are_counted(ctx: ToolContext, root: Path) -> None:
    named = [write(root / f"alpha {i}.txt", "x", age_days=400 + i) for i in range(5)]
    both = write(root / "Alpha stuff" / "alpha z.txt", "x", age_days=500)
    under = [write(root / "Alpha stuff" / f"x {i}.txt", "x") for i in range(3)]  # newer, but folder only
    scan(ctx)
    found = search.search(ctx.settings, allowed_roots(ctx.settings), "alpha", "", 30)
    assert [h.path for h in found.hits][:6] == [str(p) for p in [*named, both]]
    assert {h.path for h in found.hits[6:]} == {str(p) for p in under} and found.total == 9
    top = search.search(ctx.settings, allowed_roots(ctx.settings), "alpha", "", 2)
    assert len(top.hits) == 2 and top.total == 9, "counted beyond the rows shown"
    out = await find_text(ctx, name="alpha", folder=str(root / "Alpha stuff"))
    assert out.splitlines()[0].startswith(str(both)) and len(await find(ctx, name="alpha", folder=str(root / "Alpha stuff"))) == 4
    two = search.search(ctx.settings, allowed_roots(ctx.settings), "alpha z", "", 1)
    assert [h.path for h in two.hits] == [str(both)] and two.total == 1


async def test_a_glob_narrows_a_content_search(ctx: ToolContext, root: Path) -> None:
    plan = write(root / "plan.md", "revenue targets")
    write(root / "notes.txt", "revenue notes")
    write(root / "other.md", "nothing here")
    assert sorted(await find(ctx, name="*.md", text="revenue")) == [str(plan)], "the walk, before a scan"
    scan(ctx)
    assert await find(ctx, name="*.md", text="revenue") == [str(plan)]
    late = write(root / "late.md", "revenue later")
    write(root / "late.txt", "revenue later")
    index = idx.FileIndex(ctx.settings.home)
    try:  # noted but not read yet: searched directly, still within the glob
        index._upsert([e for e in idx.walk(root, root) if e.name.startswith("late")])
    finally:
        index.close()
    assert sorted(await find(ctx, name="*.md", text="revenue")) == sorted([str(plan), str(late)])


async def test_a_watcher_replaced_before_use_loses_nothing(tmp_path: Path) -> None:
    import queue

    folders = [tmp_path / n for n in ("a", "b", "c")]
    for f in folders:
        f.mkdir()
    out: queue.SimpleQueue[Any] = queue.SimpleQueue()
    watcher = watch.Watcher(out, recursive=False)
    try:
        watcher.watch([str(folders[0])])
        watcher.watch([str(f) for f in folders[:2]])  # the thread is waiting on the first one
        (folders[1] / "new.txt").write_text("x")  # only the second watcher sees b/
        watcher.watch([str(f) for f in folders])  # replaces the second before it was used
        seen: set[str] = set()

        def arrived() -> bool:
            while not out.empty():
                item = out.get()
                assert not isinstance(item, watch.Lost), item
                seen.update(p for _, p in item)
            return str(folders[1] / "new.txt") in seen
        await until(arrived, timeout=20, what="the event seen by the replaced watcher")
    finally:
        watcher.close()


async def test_doctor_says_whether_the_index_follows_events(ctx: ToolContext, root: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.filesystem.indexer import doctor_check

    assert doctor_check(ctx.settings) == ("File index", True, "not built yet: Dispatch builds it when it starts")
    write(root / "a.txt", "x")
    indexer = await live_indexer(ctx)
    await indexer.stop()
    name, ok, message = doctor_check(ctx.settings)
    assert ok and "follows file-system events" in message and "folders watched" in message, message

    def refused(*args: Any) -> None:
        raise OSError('OS file watch limit reached. about ["/x"] (Error { kind: MaxFilesWatch })')

    monkeypatch.setattr(watch, "RustNotify", refused)
    indexer = await live_indexer(ctx)
    await indexer.stop()
    name, ok, message = doctor_check(ctx.settings)
    assert not ok and "file events unavailable" in message and "sysctl fs.inotify.max_user_watches" in message


async def test_a_moved_file_keeps_its_indexed_text(ctx: ToolContext, root: Path) -> None:
    (root / "Acme").mkdir()
    make_docx(root / "Acme" / "memo.docx")
    plain = write(root / "Acme" / "notes.txt", "zebra notes")
    indexer = await live_indexer(ctx)

    def row(path: Path) -> tuple[int, str] | None:
        conn = sqlite3.connect(idx.index_path(ctx.settings.home))
        try:
            return conn.execute("SELECT id, content FROM files WHERE path = ?", (str(path),)).fetchone()
        finally:
            conn.close()
    try:
        files = (root / "Acme" / "memo.docx", plain)
        await until(lambda: all((row(p) or (0, ""))[1] == "done" for p in files), timeout=20, what="their text")
        before = {p.name: row(p) for p in files}
        renamed = plain.rename(root / "Acme" / "zebra.txt")
        await until(lambda: row(renamed) is not None, timeout=20, what="a file rename")
        assert row(renamed) == before["notes.txt"], "same row, text kept: nothing read again"
        (root / "Acme").rename(root / "Acme Corp")
        moved = (root / "Acme Corp" / "memo.docx", root / "Acme Corp" / "zebra.txt")
        await until(lambda: all(row(p) for p in moved), timeout=20, what="a folder rename")
        assert [row(p) for p in moved] == list(before.values())
        assert await find(ctx, text="zebra") == [str(moved[1])]
        assert await find(ctx, name="zebra") == [str(moved[1])]
        assert {str(p) for p in moved} == indexed(ctx)
    finally:
        await indexer.stop()
