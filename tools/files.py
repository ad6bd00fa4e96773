"""A small set of local file tools: list a folder, find by name, read a text file.

Everything goes through `tools.paths.resolve`, so the tools see only the allowed
roots. The full document work (PDF, Office files, an index) is a separate module.
"""

from __future__ import annotations

import fnmatch
import os
from datetime import datetime
from pathlib import Path

from tools.paths import allowed_roots, is_secret, resolve
from tools.registry import Effect, ToolContext, ToolError, tool

MAX_LIST = 200
MAX_FOUND = 50
MAX_READ_CHARS = 20_000
MAX_WALK = 200_000  # entries looked at by one find before it says so and stops


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@tool(connector="files", effect=Effect.READ)
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


@tool(connector="files", effect=Effect.READ)
def find_files(ctx: ToolContext, name: str, folder: str = "") -> str:
    """Find files whose name contains a word or matches a pattern, newest first.

    Args:
        name: Part of the file name (case-insensitive), or a glob such as "*.csv".
        folder: Search only under this folder. Empty searches every allowed folder.
    """
    bases = [resolve(ctx.settings, folder)] if folder else allowed_roots(ctx.settings)
    needle = name.strip().lower()
    if not needle:
        raise ToolError("Give part of a file name to look for.")
    is_glob = any(c in needle for c in "*?[")
    found: list[tuple[float, str]] = []
    seen = 0
    for base in bases:
        for dirpath, dirnames, filenames in os.walk(base):  # does not follow symlinked folders
            dirnames[:] = [d for d in dirnames if not is_secret(Path(dirpath, d))]
            for fname in filenames:
                seen += 1
                low = fname.lower()
                if (fnmatch.fnmatch(low, needle) if is_glob else needle in low):
                    full = Path(dirpath, fname)
                    if is_secret(full):
                        continue
                    try:
                        found.append((full.stat().st_mtime, str(full)))
                    except OSError:
                        continue
            if seen > MAX_WALK:
                break
    if not found:
        return f"No file names match {name!r}."
    found.sort(reverse=True)
    lines = [p for _, p in found[:MAX_FOUND]]
    note = f"\n(showing {MAX_FOUND} of {len(found)})" if len(found) > MAX_FOUND else ""
    stop = f"\n(stopped after looking at {MAX_WALK} files; narrow with folder=)" if seen > MAX_WALK else ""
    return "\n".join(lines) + note + stop


@tool(connector="files", effect=Effect.READ)
def read_text(ctx: ToolContext, path: str, offset: int = 0, limit: int = MAX_READ_CHARS) -> str:
    """Read a text file (notes, Markdown, CSV, code), a page at a time.

    Args:
        path: The file.
        offset: Character offset to start at, for reading the next page of a long file.
        limit: How many characters to read (at most 20000).
    """
    file = resolve(ctx.settings, path)
    if file.is_dir():
        raise ToolError(f"{path} is a folder; use list_folder.")
    if offset < 0:
        # fh.read(-1) below would swallow the whole file and report it as read.
        raise ToolError(f"offset must be 0 or more, not {offset}.")
    limit = max(1, min(limit, MAX_READ_CHARS))
    with open(file, "rb") as fh:
        head = fh.read(4096)
    if b"\x00" in head:
        raise ToolError(f"{path} is a binary file, not text.")
    with open(file, encoding="utf-8", errors="replace") as fh:
        if offset:
            fh.read(offset)  # character offset, so multi-byte text pages cleanly
        text = fh.read(limit)
        more = fh.read(1) != ""
    if more:
        text += (
            f"\n\n[... more follows. Read the next page with offset={offset + len(text)}.]"
        )
    elif offset and not text:
        return f"{path}: nothing after offset {offset}; the whole file has been read."
    return text
