"""Reading documents in place: PDF, Word, Excel and PowerPoint as Markdown text.

The formats themselves are walked in tools.documents.formats (which libraries, and
why), always inside a capped worker process (tools.documents.worker). This module is
the entry point every reader uses — `read_text` and the background indexer — so the
limits below hold for both:
- Documents above `MAX_DOCUMENT_BYTES` are refused with their size (a 2 GB file is
  never opened, let alone read into memory).
- Encrypted Office files (an OLE container where a ZIP is expected) and PDFs with a
  user password are refused as password-protected; damaged files as damaged; a ZIP
  bomb is refused before it is inflated.
- A file that broke a parse (out of memory, out of time, a library crash) is marked,
  keyed by path, size and modification time, in DISPATCH_HOME/cache/documents/broken,
  and is not parsed again until it changes: one bad file costs one worker once, not
  one on every read and every start of the indexer.
- The file is looked at (size, modification time) before and after converting; if
  either changed, it was being written, and we say so instead of returning a mix.
- Converted text is cached under DISPATCH_HOME/cache/documents, keyed by path, size
  and modification time, so reading page 2 does not parse the file again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from tools.documents import worker
from tools.documents.formats import DOCUMENT_TYPES, MAX_CONVERTED_CHARS
from tools.registry import ToolError

MAX_DOCUMENT_BYTES = 100 * 1024 * 1024  # documents above this are refused, with their size
CACHE_FILES = 200  # converted documents kept on disk
LEGACY_OFFICE = {".doc": ".docx", ".xls": ".xlsx", ".ppt": ".pptx"}
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Compound File: old Office, or encrypted new Office
__all__ = ["DOCUMENT_TYPES", "MAX_CONVERTED_CHARS"]


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def is_document(path: Path) -> bool:
    return path.suffix.lower() in DOCUMENT_TYPES or path.suffix.lower() in LEGACY_OFFICE


def looks_binary(path: Path) -> bool:
    """True when the first 4 KB hold a NUL byte: not something to read as text."""
    with open(path, "rb") as fh:
        return b"\x00" in fh.read(4096)


# Conversion --------------------------------------------------------------------


def check_readable(path: Path) -> os.stat_result:
    """Refuse what must not be parsed (too big, legacy, encrypted); returns its stat."""
    st = path.stat()
    ext = path.suffix.lower()
    if ext in LEGACY_OFFICE:
        raise ToolError(
            f"{path.name} is in the old Office format ({ext}), which Dispatch cannot read. "
            f"Save it as {LEGACY_OFFICE[ext]} on the desktop and ask again."
        )
    kind = DOCUMENT_TYPES.get(ext, "document")
    if st.st_size > MAX_DOCUMENT_BYTES:
        raise ToolError(
            f"{path.name} is {human_size(st.st_size)}; Dispatch reads documents up to "
            f"{human_size(MAX_DOCUMENT_BYTES)}. Open it on the desktop, or export the part you need."
        )
    if st.st_size == 0:
        raise ToolError(f"{path.name} is empty (0 bytes), so it is not a readable {kind}.")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if ext != ".pdf" and head == OLE_MAGIC:
        raise ToolError(
            f"{path.name} is password-protected (encrypted), so it cannot be read. Remove the "
            "password on the desktop (File > Info > Protect) or send an unprotected copy."
        )
    return st


def convert(path: Path, *, max_chars: int = MAX_CONVERTED_CHARS, home: Path | None = None,
            seconds: float | None = None) -> str:
    """The document's text as Markdown, parsed in a capped worker process, waiting in
    this thread. ToolError (in words) for anything unreadable. With `home`, a file that
    broke a parse before is refused at once, and one that breaks it now is marked."""
    before = _admit(path, home)
    try:
        text = worker.run(path, max_chars, seconds)
    except worker.ParseBroke as exc:
        raise _broke(path, before, home, exc) from None
    except ToolError:
        _changed(path, before)  # a file being written looks damaged: say what really happened
        raise
    _changed(path, before)
    return text


async def convert_async(path: Path, *, max_chars: int = MAX_CONVERTED_CHARS, home: Path | None = None,
                        seconds: float | None = None) -> str:
    """`convert` for the event loop: cancelling the awaiting task (/cancel) kills the parse."""
    before = _admit(path, home)
    try:
        text = await worker.run_async(path, max_chars, seconds)
    except worker.ParseBroke as exc:
        raise _broke(path, before, home, exc) from None
    except ToolError:
        _changed(path, before)
        raise
    _changed(path, before)
    return text


def kill_parses() -> int:
    """Kill every document parse in progress (at shutdown)."""
    return worker.kill_all()


def _admit(path: Path, home: Path | None) -> os.stat_result:
    before = check_readable(path)
    if home is not None:
        mark = broken_mark(home, path, before)
        if mark is not None:
            raise ToolError(
                f"{path.name} was not read: reading it failed before ({mark.get('why', 'it broke the reader')}, "
                f"{mark.get('at', '')}), and it has not changed since. Dispatch will try again once the file "
                "changes; open it on the desktop, or save a simpler copy."
            )
    return before


def _broke(path: Path, before: os.stat_result, home: Path | None, exc: ToolError) -> ToolError:
    why = str(exc)
    if home is not None:
        _mark(home, path, before, why)
    return ToolError(f"{path.name} could not be read: {why}. It will not be tried again until it changes; "
                     "open it on the desktop, or save a simpler copy.")


def _mark_path(home: Path, path: Path, st: os.stat_result) -> Path:
    key = hashlib.sha1(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    return cache_dir_for(home) / "broken" / f"{key}.json"


def broken_mark(home: Path, path: Path, st: os.stat_result | None = None) -> dict | None:
    """The mark of a file that broke a parse, if it has not changed since; else None."""
    try:
        mark = _mark_path(home, path, st or path.stat())
        return json.loads(mark.read_text(encoding="utf-8")) if mark.exists() else None
    except (OSError, ValueError):
        return None


def _mark(home: Path, path: Path, st: os.stat_result, why: str) -> None:
    mark = _mark_path(home, path, st)
    mark.parent.mkdir(parents=True, exist_ok=True)
    data = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "why": why,
            "at": time.strftime("%Y-%m-%d %H:%M")}
    tmp = mark.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, mark)


def _changed(path: Path, before: os.stat_result) -> None:
    try:
        after = path.stat()
    except OSError:
        raise ToolError(f"{path.name} was moved or deleted while it was being read.") from None
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise ToolError(
            f"{path.name} changed while it was being read (it is still being written or synced). "
            "Try again in a moment."
        )


def _cache_file(cache_dir: Path, path: Path) -> tuple[Path, str | None]:
    st = path.stat()
    key = hashlib.sha1(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    cached = cache_dir / f"{key}.md"
    if cached.exists():
        os.utime(cached)  # most recently used
        return cached, cached.read_text(encoding="utf-8")
    return cached, None


def _store(cache_dir: Path, cached: Path, text: str) -> str:
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, cached)
    _prune(cache_dir)
    return text


def document_text(cache_dir: Path, path: Path) -> str:
    """`convert`, cached on disk by (path, size, modification time). `cache_dir` is
    DISPATCH_HOME/cache/documents (`cache_dir_for`); broken files are marked beside it."""
    cached, text = _cache_file(cache_dir, path)
    if text is not None:
        return text
    return _store(cache_dir, cached, convert(path, home=cache_dir.parent.parent))


async def document_text_async(cache_dir: Path, path: Path) -> str:
    """`document_text` for the event loop: cancelling the awaiting task kills the parse."""
    cached, text = _cache_file(cache_dir, path)
    if text is not None:
        return text
    return _store(cache_dir, cached, await convert_async(path, home=cache_dir.parent.parent))


def _prune(cache_dir: Path) -> None:
    entries = sorted(cache_dir.glob("*.md"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[CACHE_FILES:]:
        old.unlink(missing_ok=True)


# Paging -------------------------------------------------------------------------


def more_note(next_offset: int) -> str:
    return f"\n\n[... more follows. Read the next page with offset={next_offset}.]"


def page_of(text: str, offset: int, limit: int, name: str) -> str:
    """One page of converted text, with the note that says how to read on."""
    if offset and offset >= len(text):
        return f"{name}: nothing after offset {offset}; the whole file has been read."
    page = text[offset: offset + limit]
    if offset + limit < len(text):
        page += more_note(offset + len(page))
    return page


def read_text_page(path: Path, offset: int, limit: int) -> str:
    """A page of a text file by character offset, without loading the whole file.

    Text files are not size-limited: a 2 GB log is read a page at a time, and a
    file that grows while read gets a warning with its page rather than an error
    (logs are always being written)."""
    before = path.stat()
    text, more = _read_chars(path, offset, limit)
    if offset and not text:
        return f"{path.name}: nothing after offset {offset}; the whole file has been read."
    if more:
        text += more_note(offset + len(text))
    try:
        after = path.stat()
    except OSError:
        after = None
    if after is None or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        text += f"\n\n[Note: {path.name} changed while it was being read; this page may be out of date.]"
    return text


def _read_chars(path: Path, offset: int, limit: int) -> tuple[str, bool]:
    """`limit` characters from character `offset`, and whether more follow."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        skip = offset
        while skip:  # character offsets, so multi-byte text pages cleanly
            got = len(fh.read(min(skip, 1 << 20)))
            if not got:
                break
            skip -= got
        return fh.read(limit), fh.read(1) != ""


def cache_dir_for(home: Path) -> Path:
    return home / "cache" / "documents"
