"""What the file index sees of the disk: which folders and files it walks, and the
text it reads from each file.

Never indexed: hidden and noise folders (`.git`, `node_modules`, ...), secret places
and files (tools.filesystem.paths), and symbolic links (a link out of a root must not
be followed; a link within one is a duplicate). Hidden files are indexed by name
only, as are binary files (a NUL in the first 4 KB).

Reading text says why a file has none, so that a content search can tell the owner
what it could not look at instead of claiming that no file contains the words:
`done` (text read), `none` (nothing to read: binary or empty), `large` (over the
size limit: names only), `failed` (could not be read: no permission, a damaged or
password-protected document).
"""

from __future__ import annotations

import os
import stat
import threading
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tools.documents import readers as documents
from tools.filesystem.paths import secret_file_name, secret_in, secret_reason

MAX_INDEX_CHARS = 1_000_000  # text indexed per file
MAX_TEXT_BYTES = 50 * 1024 * 1024  # text files above this: names only
MAX_INDEX_DOCUMENT_BYTES = 25 * 1024 * 1024  # documents above this: names only

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


@dataclass(slots=True)
class Entry:
    path: str
    root: str
    name: str  # lower case
    dir: str  # lower case, relative to the root
    size: int
    mtime_ns: int
    kind: str
    ino: int = 0  # kept by a rename or move: a moved file keeps its indexed text


def kind_of(name: str, size: int = 0) -> str:
    """What the content pass does with a file: text, document, or other (names only).
    Size limits are applied when the text is read (`extract`), so that a file skipped
    for its size is known as such."""
    if name.startswith("."):
        return "other"  # hidden files are never content-searched
    ext = os.path.splitext(name)[1].lower()
    if ext in documents.DOCUMENT_TYPES:
        return "document"
    if ext in BINARY_EXT or ext in documents.LEGACY_OFFICE:
        return "other"
    return "text"  # unknown extensions are sniffed when read


def skip_folder(name: str, path: str, skip: frozenset[str] = frozenset()) -> bool:
    """True for a folder the index never enters (hidden, noise, secret, or in `skip`)."""
    return (name.startswith(".") or name.lower() in NOISE_DIRS or path in skip
            or secret_reason(Path(path)) is not None)


def walk(base: Path | str, root: Path | str, stop: threading.Event | None = None,
         skip: frozenset[str] = frozenset(), folders: list[str] | None = None,
         files: bool = True) -> Iterator[Entry]:
    """Every indexable file under `base` (which lies in `root`), without following
    links, and not under the folders in `skip` (other roots nested in this one: each
    file belongs to the innermost root, so nested roots are not walked twice).
    Each folder walked is appended to `folders` when given; `files=False` walks the
    folders only (no stat of each file)."""
    stack = [str(base)]
    root_s = str(root)
    while stack:
        if stop is not None and stop.is_set():
            return
        folder = stack.pop()
        if folders is not None:
            folders.append(folder)
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
                        if not skip_folder(e.name, e.path, skip):
                            stack.append(e.path)
                    elif files and e.is_file():
                        if secret_file_name(e.name):
                            continue
                        st = e.stat()
                        yield Entry(e.path, root_s, e.name.lower(), rel, st.st_size, st.st_mtime_ns,
                                    kind_of(e.name, st.st_size), st.st_ino)
                except OSError:
                    continue


def root_of(path: Path, roots: list[Path]) -> Path | None:
    best = None
    for r in roots:
        if path == r or path.is_relative_to(r):
            if best is None or len(str(r)) > len(str(best)):
                best = r
    return best


def inside(path: str, root: str, skip: frozenset[str]) -> bool:
    """True when every folder between `root` and `path` is one the index walks (an
    event may name a path below a hidden or secret folder, or under a link)."""
    if not (path == root or path.startswith(root.rstrip(os.sep) + os.sep)):
        return False
    folder = os.path.dirname(path)
    while len(folder) > len(root):
        if skip_folder(os.path.basename(folder), folder, skip):
            return False
        folder = os.path.dirname(folder)
    # A link inside a root resolves elsewhere: its events are not the root's files.
    return os.path.realpath(os.path.dirname(path)) == os.path.dirname(path) or path == root


def entry_for(path: str, root: str) -> Entry | None:
    """The index entry for one file (None: gone, a link, not a regular file, a secret)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or secret_file_name(os.path.basename(path)):
        return None
    name = os.path.basename(path)
    rel = os.path.relpath(os.path.dirname(path), root)
    return Entry(path, root, name.lower(), "" if rel == "." else rel.lower(), st.st_size, st.st_mtime_ns,
                 kind_of(name, st.st_size), st.st_ino)


# Reading text for the index ------------------------------------------------------


# The data folder whose broken-file marks a parse goes by (tools.documents.readers: a file
# that broke a parse is not parsed again until it changes); set by whoever searches or indexes.
parses_home: ContextVar[Path | None] = ContextVar("dispatch_parses_home", default=None)


def extract(path: str, kind: str, home: Path | None = None) -> tuple[str, str | None]:
    """(status, text) of one file: `done` with its text, or `none`, `large` or
    `failed` with None (see the module docstring). A file holding a private key or a
    credential has no text here, whatever its name."""
    status, text = _extract(path, kind, home or parses_home.get())
    return ("none", None) if text and secret_in(text) else (status, text)


def _extract(path: str, kind: str, home: Path | None) -> tuple[str, str | None]:
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return "failed", None
    if size == 0:
        return "none", None
    if kind == "document":
        if size > MAX_INDEX_DOCUMENT_BYTES:
            return "large", None
        try:
            return "done", documents.convert(p, max_chars=MAX_INDEX_CHARS, home=home)
        except Exception:  # damaged, password-protected, or the reader refused it
            return "failed", None
    try:
        with open(p, "rb") as fh:
            if b"\x00" in fh.read(4096):
                return "none", None
        if size > MAX_TEXT_BYTES:
            return "large", None
        with open(p, encoding="utf-8", errors="replace") as fh:
            text = fh.read(MAX_INDEX_CHARS)
    except OSError:
        return "failed", None
    return ("done", text) if text else ("none", None)
