"""Drive files as text, and as local copies: which export, which reader.

Google's own files have no bytes to download; they are exported (files.export) in
one of the formats Drive offers for their type
(developers.google.com/drive/api/guides/ref-export-formats):

    Google Doc     -> text/markdown to read; .docx to download
    Google Sheet   -> .xlsx, read with the same reader as a local workbook
                      (tools.documents.readers), so every tab comes out as a table
                      and a 12.5 % cell reads "12.5%", exactly as for a local file
    Google Slides  -> .pptx, read slide by slide (titles, text, tables, notes)
    Google Drawing -> PDF

Drive exports up to 10 MB; a bigger file is a sentence saying so (client.failed).
Everything else is downloaded (files.get alt=media): PDF and Office files go
through the document readers, text through the text reader; other binaries are
offered as a download instead.

Copies are cached under DISPATCH_HOME/cache/drive by file id and Drive's `version`
(which changes with every edit), so reading page 2 downloads nothing again.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from store.config import Settings
from tools.documents import readers
from tools.gdrive.client import Drive
from tools.gdrive.query import FOLDER, kind
from tools.registry import ToolError

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
# Google type -> (export MIME to read it, extension), (export MIME to download it, extension)
EXPORTS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "application/vnd.google-apps.document": (("text/markdown", ".md"), (DOCX, ".docx")),
    "application/vnd.google-apps.spreadsheet": ((XLSX, ".xlsx"), (XLSX, ".xlsx")),
    "application/vnd.google-apps.presentation": ((PPTX, ".pptx"), (PPTX, ".pptx")),
    "application/vnd.google-apps.drawing": (("application/pdf", ".pdf"), ("application/pdf", ".pdf")),
}
EXTENSIONS = {"application/pdf": ".pdf", DOCX: ".docx", XLSX: ".xlsx", PPTX: ".pptx", "text/csv": ".csv",
              "text/plain": ".txt", "text/markdown": ".md", "application/json": ".json", "text/html": ".html"}
TEXTUAL = re.compile(r"^(text/|application/(json|xml|csv|x-yaml|yaml|javascript|x-sh|sql))")
TEXT_EXTENSIONS = {".txt", ".csv", ".tsv", ".md", ".json", ".xml", ".yaml", ".yml", ".log", ".html"}
MAX_READ_BYTES = readers.MAX_DOCUMENT_BYTES  # what drive_read fetches at most
MAX_DOWNLOAD_BYTES = 500 * 1024 * 1024  # what drive_download copies at most
CACHE_FILES = 50


def cache_dir(settings: Settings) -> Path:
    return settings.home / "cache" / "drive"


def safe_name(name: str, fallback: str = "drive file") -> str:
    """A Drive name as a local file name: no folders, no control characters, no dot-files."""
    cleaned = re.sub(r"[\x00-\x1f\x7f/\\:*?\"<>|]", "_", name).strip().strip(".")
    return cleaned[:150] or fallback


def _fetch(drive: Drive, meta: dict[str, Any], export: str | None, target: Path, limit: int) -> Path:
    """Download or export into `target` (through a temporary name, so a half copy is never used)."""
    what = f"{'exporting' if export else 'downloading'} {meta.get('name')!r}"
    files = drive.service.files()
    if export:
        request = files.export_media(fileId=meta["id"], mimeType=export)
    else:
        size = int(meta.get("size") or 0)
        if size > limit:
            raise ToolError(f"{meta.get('name')} is {readers.human_size(size)}; Dispatch copies Drive files up to "
                            f"{readers.human_size(limit)}.")
        request = files.get_media(fileId=meta["id"], supportsAllDrives=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        with open(tmp, "wb") as fh:
            drive.download(request, fh, what, limit=limit)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def cached_copy(settings: Settings, drive: Drive, meta: dict[str, Any]) -> Path:
    """The file (or its reading export) on disk, fetched once per Drive version."""
    mime = str(meta.get("mimeType", ""))
    if mime == FOLDER:
        raise ToolError(f"{meta.get('name')} is a folder; drive_search(folder=...) lists what is in it.")
    export = EXPORTS.get(mime, (None, None))[0]
    if export is None and mime.startswith("application/vnd.google-apps."):
        raise ToolError(f"{meta.get('name')} is a {kind(mime)}, which Drive cannot export as a file Dispatch reads.")
    ext = export[1] if export else (Path(str(meta.get("name", ""))).suffix.lower() or EXTENSIONS.get(mime, ""))
    key = hashlib.sha1(f"{meta['id']}\0{meta.get('version')}\0{meta.get('modifiedTime')}".encode()).hexdigest()[:20]
    target = cache_dir(settings) / f"{key}{ext}"
    if target.exists():
        os.utime(target)
        return target
    if not (export or readers.is_document(target) or TEXTUAL.match(mime) or ext in TEXT_EXTENSIONS):
        raise ToolError(f"{meta.get('name')} is a {kind(mime)} file, not a document or text. Copy it with "
                        "drive_download to use it with other tools.")
    _fetch(drive, meta, export[0] if export else None, target, MAX_READ_BYTES)
    _prune(cache_dir(settings))
    return target


def text_of(settings: Settings, path: Path) -> str:
    """The whole text of a cached copy, through the same readers as local files."""
    if readers.is_document(path):
        return readers.document_text(readers.cache_dir_for(settings.home), path)
    if readers.looks_binary(path):
        raise ToolError(f"{path.name} is binary, not text.")
    return path.read_text(encoding="utf-8", errors="replace")


def download(settings: Settings, drive: Drive, meta: dict[str, Any], folder: Path, name: str) -> Path:
    """A copy in `folder` (Google files in their Office form), under a name not yet taken."""
    mime = str(meta.get("mimeType", ""))
    if mime == FOLDER:
        raise ToolError(f"{meta.get('name')} is a folder; download the files in it one by one.")
    export = EXPORTS.get(mime, (None, None))[1]
    if export is None and mime.startswith("application/vnd.google-apps."):
        raise ToolError(f"{meta.get('name')} is a {kind(mime)}, which Drive cannot export as a file.")
    base = safe_name(name or str(meta.get("name", "")), f"drive-{meta['id']}")
    if export and not base.lower().endswith(export[1]):
        base += export[1]
    elif not export and not Path(base).suffix and EXTENSIONS.get(mime):
        base += EXTENSIONS[mime]
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(base).stem, Path(base).suffix
    for n in range(1, 1000):
        candidate = folder / (base if n == 1 else f"{stem} ({n}){suffix}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # claims the name
        except FileExistsError:
            continue
        os.close(fd)
        try:
            return _fetch(drive, meta, export[0] if export else None, candidate, MAX_DOWNLOAD_BYTES)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
    raise ToolError(f"Too many files called {base} in {folder}; give another name.")


def _prune(folder: Path) -> None:
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[CACHE_FILES:]:
        old.unlink(missing_ok=True)
