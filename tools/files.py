"""The local file tools: list a folder, find files (by name and content, ranked),
read any supported file in place a page at a time, and send a file to the owner.

Everything goes through `tools.filesystem.paths.resolve`, so the tools see only the allowed
roots. The work behind them lives next door: tools.filesystem.search, ranking and live
with tools.filesystem.index (finding), tools.documents.readers (PDF and Office files
as text), tools.produce (writing deliverables).

`send_file` has effect WRITE, not SEND: handing a file to the owner's own chat is
the reply itself (DESIGN.md). Platform size limits are the front end's business:
its `send_file` says what happened (e.g. "over Telegram's 50 MB limit; it is at
...") and that sentence is what the model gets back.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path

from tools.documents import readers as documents
from tools.filesystem import ranking, search
from tools.filesystem.paths import allowed_roots, check_content, is_secret, resolve, secret_in
from tools.registry import Effect, ToolContext, ToolError, tool

MAX_LIST = 200
MAX_FOUND = 30
# A page and its "read on" note stay under the runner's 20,000-character result
# limit, so the note is never cut off.
MAX_READ_CHARS = 19_000


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@tool(connector="files", effect=Effect.READ, untrusted=True)
def list_folder(ctx: ToolContext, path: str = "") -> str:
    """List the files and folders in a folder.

    Args:
        path: The folder. Empty lists the allowed root folders themselves.
    """
    if not path:
        return "Allowed folders:\n" + "\n".join(str(r) for r in allowed_roots(ctx.settings))
    folder = resolve(ctx.settings, path)
    if not folder.is_dir():
        raise ToolError(f"{path} is a file, not a folder.")
    lines = []
    entries = sorted(os.scandir(folder), key=lambda e: (not e.is_dir(), e.name.lower()))
    shown = [e for e in entries if not is_secret(Path(e.path))]
    for e in shown[:MAX_LIST]:
        try:
            st = e.stat()
        except OSError:
            continue
        when = datetime.fromtimestamp(st.st_mtime).strftime("%Y-%m-%d %H:%M")
        if e.is_dir():
            lines.append(f"{e.name}/  (folder, {when})")
        else:
            lines.append(f"{e.name}  ({_size(st.st_size)}, {when})")
    more = len(shown) - MAX_LIST
    head = f"{folder} — {len(shown)} entries"
    tail = [f"... and {more} more; use find_files to narrow down."] if more > 0 else []
    return "\n".join([head, *lines, *tail]) if lines else f"{folder} is empty."


@tool(connector="files", effect=Effect.READ, untrusted=True)
def find_files(ctx: ToolContext, name: str = "", text: str = "", folder: str = "") -> str:
    """Find files by name and/or words inside them (also PDF and Office files), best and newest first.

    Args:
        name: Words of the file or folder name, or a glob like *.csv.
        text: Words in the file; "quotes" for a phrase.
        folder: Only under this folder (default: all).
    """
    bases = [resolve(ctx.settings, folder)] if folder else allowed_roots(ctx.settings)
    name, text = name.strip(), text.strip()
    if not ranking.is_glob(name) and not ranking.name_words(name):
        name = ""
    if not name and not text:
        raise ToolError("Give part of a file name, or words to look for inside files.")
    for b in bases:
        if not b.is_dir():
            raise ToolError(f"{folder} is a file, not a folder.")
    found = search.search(ctx.settings, bases, name, text, MAX_FOUND)
    skipped = ranking.skipped_note(found)
    if not found.hits:
        # With files left unsearched, "no file contains" would be untrue: say which.
        some = "searchable " if skipped else ""
        if name and text:
            empty = f"No {some}files with {name!r} in their name contain {text!r}."
        elif name:
            empty = f"No file names match {name!r}."
        else:
            empty = f"No {some}files contain {text!r}."
        return "\n".join([empty, *found.notes, *([skipped] if skipped else [])])
    lines = []
    for h in found.hits:
        when = datetime.fromtimestamp(h.mtime, ctx.settings.tz).strftime("%Y-%m-%d %H:%M")
        lines.append(f"{h.path}  ({_size(h.size)}, {when})")
        if h.snippet:
            lines.append(f"    {h.snippet[:200]}")
    if found.total > len(found.hits):
        lines.append(f"(showing {len(found.hits)} of {found.total}; add words or folder= to narrow)")
    return "\n".join(lines + found.notes + ([skipped] if skipped else []))


@tool(connector="files", effect=Effect.READ, untrusted=True)
async def read_text(ctx: ToolContext, path: str, offset: int = 0, limit: int = MAX_READ_CHARS) -> str:
    """Read a file a page at a time: text, CSV, PDF, Word, Excel (sheets as tables), PowerPoint (with notes).

    Args:
        path: The file.
        offset: Character offset to start at, for the next page.
        limit: How many characters to read (at most 19000).
    """
    # Async so that /cancel reaches the document parse: it runs in a worker process that
    # the cancelled await kills (a sync tool would run on in its thread).
    file = resolve(ctx.settings, path)
    if file.is_dir():
        raise ToolError(f"{path} is a folder; use list_folder.")
    if offset < 0:
        # fh.read(-1) would swallow the whole file and report it as read.
        raise ToolError(f"offset must be 0 or more, not {offset}.")
    limit = max(1, min(limit, MAX_READ_CHARS))
    if documents.is_document(file):
        text = await documents.document_text_async(documents.cache_dir_for(ctx.settings.home), file)
        page = documents.page_of(text, offset, limit, path)
    else:
        page = await asyncio.to_thread(_text_page, file, path, offset, limit)
    reason = secret_in(page)  # a private key pasted into a document, or past the first megabyte
    if reason:
        raise ToolError(f"Refused: {path} — {reason}.")
    return page


def _text_page(file: Path, path: str, offset: int, limit: int) -> str:
    if documents.looks_binary(file):
        raise ToolError(f"{path} is a binary file, not text ({_size(file.stat().st_size)}).")
    check_content(file, path)  # a private key under an innocent name (notes.txt, key.asc)
    return documents.read_text_page(file, offset, limit)


@tool(connector="files", effect=Effect.WRITE)
async def send_file(ctx: ToolContext, path: str, caption: str = "") -> str:
    """Send a file (produced or found) to the owner's phone; this is how deliverables reach them.

    Args:
        path: The file.
        caption: A line shown with it.
    """
    file = resolve(ctx.settings, path)
    if file.is_dir():
        raise ToolError(f"{path} is a folder; send the files in it one by one, or zip them first.")
    size = file.stat().st_size
    if size == 0:
        raise ToolError(f"{file.name} is empty (0 bytes); there is nothing to send.")
    check_content(file, path)
    if ctx.deliver is None:
        raise ToolError(f"There is no chat to send {file.name} to here; it is at {file}.")
    outcome = await ctx.deliver(file, caption.strip())
    return f"{file.name} ({_size(size)}): {outcome}"
