"""Hostile or careless files arriving through file-system events get no further into
the index than a scan would let them: secrets, files under secret or hidden folders,
and symbolic links (to a file or a folder outside the roots) stay out."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tests.conftest import until
from tools.filesystem import index as idx
from tools.filesystem.indexer import FileIndexer
from tools.registry import ToolContext


def indexed(ctx: ToolContext) -> set[str]:
    conn = sqlite3.connect(idx.index_path(ctx.settings.home))
    try:
        return {p for (p,) in conn.execute("SELECT path FROM files")}
    finally:
        conn.close()


async def test_events_do_not_bring_secrets_hidden_folders_or_links_in(ctx: ToolContext, root: Path,
                                                                      tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "passwords.txt").write_text("hunter2")
    indexer = FileIndexer(ctx.settings, interval=3600, safety=3600)
    indexer.start()
    try:
        await until(lambda: indexer.scans >= 1 and indexer.events, timeout=30, what="a live index")
        (root / ".env").write_text("API_KEY=secret")
        (root / "id_rsa").write_text("-----BEGIN KEY-----")
        (root / ".ssh").mkdir()
        (root / ".ssh" / "notes.txt").write_text("key notes")
        (root / ".git").mkdir()
        (root / ".git" / "config").write_text("[core]")
        (root / "node_modules" / "pkg").mkdir(parents=True)
        (root / "node_modules" / "pkg" / "index.js").write_text("x")
        (root / "link.txt").symlink_to(outside / "passwords.txt")
        (root / "linked").symlink_to(outside, target_is_directory=True)
        (outside / "later.txt").write_text("written through no link")
        os.link(outside / "passwords.txt", outside / "hard.txt")  # noise outside the roots
        # A plain file written last: once it is in, every event before it was applied.
        marker = root / "marker.txt"
        marker.write_text("ok")
        await until(lambda: str(marker) in indexed(ctx), timeout=20, what="the marker")
        assert indexed(ctx) == {str(marker)}, indexed(ctx)
        # A file replaced by a link is dropped, not followed.
        plain = root / "plain.txt"
        plain.write_text("plain")
        await until(lambda: str(plain) in indexed(ctx), timeout=20, what="a plain file")
        plain.unlink()
        plain.symlink_to(outside / "passwords.txt")
        await until(lambda: str(plain) not in indexed(ctx), timeout=20, what="the link replacing it")
    finally:
        await indexer.stop()
