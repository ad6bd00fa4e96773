"""Defect 6: no file can take the desktop down. Documents are parsed in capped worker
processes; zip bombs are refused before inflating; a sheet is read at the size of its
data; a parse that broke (memory, time) marks the file until it changes, for read_text
and the indexer alike; /cancel and shutdown kill the parse. Memory is measured as the
growth of this (Dispatch's) process's resident memory while the parse runs."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from agent.channel import Inbound
from store.db import Store
from tests.conftest import task_state, until
from tests.helpers import call, files_settings, refused
from tests.security.hostile_files import RssWatch, docx_bomb, heavy_docx, pptx_bomb, xlsx_far_cell
from tools.documents import readers, worker
from tools.filesystem import index as idx
from tools.filesystem.indexer import FileIndexer
from tools.filesystem.paths import allowed_roots
from tools.registry import ToolContext

MB = 1024 * 1024


@pytest.fixture
def ctx(tmp_path: Path, root: Path):
    settings = files_settings(tmp_path, root)
    store = Store(settings.db_url)
    yield ToolContext(settings, store, task_id=1, origin="console:local")
    store.close()


@pytest.fixture
def capped(monkeypatch: pytest.MonkeyPatch):
    """Workers started under a lower memory cap (and fresh ones after the test)."""
    worker.kill_all()

    def cap(memory_mb: int, seconds: float | None = None) -> None:
        monkeypatch.setattr(worker, "MEMORY_BYTES", memory_mb * MB)
        if seconds is not None:
            monkeypatch.setattr(worker, "SECONDS", seconds)

    yield cap
    worker.kill_all()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the worker processes started during the test."""
    pids: list[int] = []
    real = worker.Worker

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            pids.append(self.proc.pid)

    monkeypatch.setattr(worker, "Worker", Counted)
    return pids


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:  # a zombie not yet reaped is gone too
        return fh.read().split(") ")[1].startswith("Z")


async def test_zip_bombs_are_refused_before_inflating_with_bounded_memory_and_time(ctx, root):
    small_docx = docx_bomb(root / "invoice.docx", inflated_mb=15)
    small_pptx = pptx_bomb(root / "deck.pptx", inflated_mb=20)
    assert small_docx.stat().st_size < 100_000 and small_pptx.stat().st_size < 150_000
    big_docx = docx_bomb(root / "big.docx", inflated_mb=300)
    started_at = time.monotonic()
    with RssWatch() as rss:
        for name, why in (("invoice.docx", "packed"), ("deck.pptx", "packed"), ("big.docx", "inflate to 300 MB")):
            message = await refused(ctx, "read_text", path=name)
            assert "decompression bomb" in message and why in message, message
    assert time.monotonic() - started_at < 10
    assert rss.grew < 30 * MB
    assert big_docx.exists()


async def test_a_sheet_with_one_cell_at_the_far_corner_reads_in_well_under_a_second(ctx, root):
    far = xlsx_far_cell(root / "budget.xlsx")
    assert far.stat().st_size < 6_000
    xlsx_far_cell(root / "warm.xlsx")
    await call(ctx, "read_text", path="warm.xlsx")  # a worker with openpyxl loaded, as in use
    started_at = time.monotonic()
    text = await call(ctx, "read_text", path="budget.xlsx")
    assert time.monotonic() - started_at < 1.0
    assert "| 1 | Name | Amount |  |" in text and "| 1048576 |  |  | the far corner |" in text
    assert len(text) < 1_000


async def test_a_parse_over_the_memory_cap_dies_alone_and_is_not_retried(ctx, root, capped, started):
    capped(140)
    heavy = heavy_docx(root / "minutes.docx", xml_mb=15)  # packs ~4x: passes the zip checks
    with RssWatch() as rss:
        message = await refused(ctx, "read_text", path="minutes.docx")
    assert "needed more than 140 MB" in message and "not be tried again until it changes" in message
    assert rss.grew < 30 * MB, "the parent never held the document"
    assert all(gone(pid) for pid in started), "the worker that ran out is gone"
    n = len(started)
    # Read again: refused at once from the mark, no worker started.
    again = await refused(ctx, "read_text", path="minutes.docx")
    assert "failed before" in again and len(started) == n
    # The mark is on disk (survives a restart), keyed by path, size and time.
    assert readers.broken_mark(ctx.settings.home, heavy)["why"].startswith("it needed more than 140 MB")
    # Once the file changes, it is tried again.
    heavy_docx(heavy, xml_mb=1, seed=2)
    assert "Paragraph" not in (text := await call(ctx, "read_text", path="minutes.docx")) and len(text) > 1000
    assert len(started) > n


async def test_a_parse_over_the_time_cap_is_killed_and_marked(ctx, root, capped, started):
    capped(512, seconds=0.3)
    heavy_docx(root / "slow.docx", xml_mb=10)
    started_at = time.monotonic()
    message = await refused(ctx, "read_text", path="slow.docx")
    assert "took longer than 0.3 s" in message
    assert time.monotonic() - started_at < 5
    assert all(gone(pid) for pid in started)
    assert "failed before" in await refused(ctx, "read_text", path="slow.docx")


async def test_cancel_kills_the_parse(core, fake, roots: Path, started):
    heavy_docx(roots / "huge-report.docx", xml_mb=25)
    fake.reply(tool_uses=[("read_text", {"path": str(roots / "huge-report.docx")})])
    fake.reply("unused")
    task = await core.submit(Inbound("summarise the huge report", "console:local"))
    await until(lambda: worker.running(), timeout=20, what="the parse to start")
    pid = worker.running()[0]
    assert (await core.cancel()).startswith(f"Cancelled task #{task.id}")
    await until(lambda: task_state(core.store, task.id) == "cancelled", what="the task to stop")
    await until(lambda: gone(pid), timeout=3, what="the worker to be killed")
    assert worker.running() == []
    # A cancel says nothing about the file: it is not marked.
    assert readers.broken_mark(core.settings.home, roots / "huge-report.docx") is None


async def test_the_indexer_skips_a_file_that_broke_a_parse_on_the_next_start(ctx, root, capped, started):
    capped(140)
    heavy = heavy_docx(root / "archive.docx", xml_mb=15)
    (root / "plain.txt").write_text("zebra crossing")
    index = idx.FileIndex(ctx.settings.home)
    try:
        with RssWatch() as rss:
            index.scan(allowed_roots(ctx.settings))
        state = dict(index.conn.execute("SELECT path, content FROM files"))
        assert state[str(heavy)] == "failed" and state[str(root / "plain.txt")] == "done"
        assert rss.grew < 30 * MB
        assert readers.broken_mark(ctx.settings.home, heavy) is not None
        # As if Dispatch had died mid-parse: the row is still pending at the next start.
        index.conn.execute("UPDATE files SET content = 'pending' WHERE path = ?", (str(heavy),))
        n = len(started)
        assert index.read_pending() == 1
        assert len(started) == n, "the marked file was not parsed again"
    finally:
        index.close()
    # And read_text knows it too (the mark is shared).
    assert "failed before" in await refused(ctx, "read_text", path="archive.docx")


async def test_shutdown_kills_the_indexers_parse_and_does_not_blame_the_file(ctx, root, started):
    heavy = heavy_docx(root / "big-minutes.docx", xml_mb=25)
    indexer = FileIndexer(ctx.settings, interval=3600)
    indexer.start()
    try:
        await until(lambda: worker.running(), timeout=20, what="the indexer's parse to start")
        pid = worker.running()[0]
    finally:
        started_at = time.monotonic()
        await indexer.stop()
    assert time.monotonic() - started_at < 3, "stop did not wait for the parse"
    assert gone(pid)
    assert readers.broken_mark(ctx.settings.home, heavy) is None
    conn = idx.connect(ctx.settings.home)
    assert conn.execute("SELECT content FROM files WHERE path = ?", (str(heavy),)).fetchone()[0] == "pending"
    conn.close()


def test_a_worker_dies_with_a_sync_caller_killed_by_kill_all(tmp_path: Path, started):
    heavy = heavy_docx(tmp_path / "slow.docx", xml_mb=25)
    outcome: list[BaseException] = []

    def parse() -> None:
        try:
            readers.convert(heavy, home=tmp_path / "home")
        except BaseException as exc:  # noqa: BLE001 - what it raised is the point
            outcome.append(exc)

    t = threading.Thread(target=parse)
    t.start()
    deadline = time.monotonic() + 20
    while not worker.running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker.kill_all() == 1
    t.join(5)
    assert not t.is_alive() and isinstance(outcome[0], worker.ParseStopped)
    assert readers.broken_mark(tmp_path / "home", heavy) is None


async def test_a_live_search_does_not_parse_a_marked_file_again(ctx, root, capped, started):
    capped(140)
    heavy_docx(root / "notes.docx", xml_mb=15)
    assert "needed more than 140 MB" in await refused(ctx, "read_text", path="notes.docx")
    n = len(started)
    # No index yet: find_files walks the folder and reads documents itself.
    found = await call(ctx, "find_files", text="minutes")
    assert "No searchable files contain" in found and "notes.docx (could not be read)" in found
    assert len(started) == n, "the marked document was parsed again by the search"


def test_a_worker_gets_none_of_dispatchs_secrets(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
    monkeypatch.setenv("EMAIL_PASSWORD", "mail-password-must-not-leak")
    w = worker.Worker()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until the fork has exec'd the worker (before, it is our copy)
            with open(f"/proc/{w.proc.pid}/cmdline", "rb") as fh:
                if b"tools.documents.worker" in fh.read():
                    break
            time.sleep(0.01)
        with open(f"/proc/{w.proc.pid}/environ", "rb") as fh:
            env = fh.read()
        assert b"must-not-leak" not in env and b"PYTHONPATH=" in env
    finally:
        w.close()
