"""Finding files in Drive: the `q` search grammar, folder lookup, and a file's path.

The search language is Drive v3's (developers.google.com/drive/api/guides/search-files):
terms like `name contains 'x'`, `fullText contains 'x'`, `'FOLDER' in parents`,
`'a@b.com' in owners`, `modifiedTime > '2024-06-01T00:00:00Z'`, `mimeType = '...'`,
joined with `and`. Every value the model gives goes in a quoted string with `\\` and
`'` escaped, so a name like "x' or name contains '" is looked for literally and
cannot widen the query.

Drive has no path field: a path is the chain of parent names up to "My Drive" or a
shared drive's name, looked up once per folder per call. A file shared with the
owner whose folder they cannot see shows as "Shared with me/NAME".
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any

from store.config import Settings
from tools.gdrive.client import Drive, file_id
from tools.registry import ToolError

FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
KINDS = {
    "application/vnd.google-apps.document": "Google Doc",
    "application/vnd.google-apps.spreadsheet": "Google Sheet",
    "application/vnd.google-apps.presentation": "Google Slides",
    "application/vnd.google-apps.drawing": "Google Drawing",
    "application/vnd.google-apps.form": "Google Form",
    FOLDER: "folder",
    SHORTCUT: "shortcut",
    "application/pdf": "PDF",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "Excel workbook",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "PowerPoint deck",
    "text/csv": "CSV",
    "text/plain": "text",
}
# What the `type` filter of drive_search takes, and the MIME types each means.
TYPE_FILTERS = {
    "doc": ["application/vnd.google-apps.document",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"],
    "sheet": ["application/vnd.google-apps.spreadsheet",
              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "text/csv"],
    "slides": ["application/vnd.google-apps.presentation",
               "application/vnd.openxmlformats-officedocument.presentationml.presentation"],
    "pdf": ["application/pdf"],
    "folder": [FOLDER],
}
FILE_FIELDS = ("id,name,mimeType,modifiedTime,size,version,webViewLink,parents,driveId,trashed,"
               "owners(displayName,emailAddress),shortcutDetails(targetId,targetMimeType)")
MAX_DEPTH = 25


def kind(mime: str) -> str:
    return KINDS.get(mime, mime)


def quote(value: str) -> str:
    """A value as a q string literal: backslash and single quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _instant(value: str, settings: Settings, what: str, *, end: bool = False) -> str:
    """A date or date-time (owner's time zone) as the RFC 3339 UTC time Drive compares."""
    raw = value.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            when = datetime.combine(day, time.max if end else time.min, settings.tz)
        else:
            when = datetime.fromisoformat(raw)
            if when.tzinfo is None:
                when = when.replace(tzinfo=settings.tz)
    except ValueError:
        raise ToolError(f"{what} must be a date like 2024-05-31 (or 2024-05-31T14:00), not {value!r}.") from None
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_q(settings: Settings, *, name: str = "", text: str = "", folder_id: str = "", owner: str = "",
            modified_after: str = "", modified_before: str = "", type: str = "") -> str:
    terms = ["trashed = false"]
    for word in name.split() if not (name.startswith('"') and name.endswith('"')) else [name.strip('"')]:
        terms.append(f"name contains {quote(word)}")
    if text.strip():
        terms.append(f"fullText contains {quote(text.strip())}")
    if folder_id:
        terms.append(f"{quote(folder_id)} in parents")
    if owner.strip():
        who = owner.strip()
        if who != "me" and "@" not in who:
            raise ToolError(f"owner must be an email address (or \"me\"), not {who!r}: Drive searches owners by address.")
        terms.append(f"{quote(who)} in owners")
    if modified_after.strip():
        terms.append(f"modifiedTime > {quote(_instant(modified_after, settings, 'modified_after'))}")
    if modified_before.strip():
        terms.append(f"modifiedTime < {quote(_instant(modified_before, settings, 'modified_before', end=True))}")
    if type.strip():
        mimes = TYPE_FILTERS.get(type.strip().lower())
        if mimes is None:
            raise ToolError(f"type must be one of {', '.join(TYPE_FILTERS)}, not {type!r}.")
        terms.append("(" + " or ".join(f"mimeType = {quote(m)}" for m in mimes) + ")")
    return " and ".join(terms)


def list_files(drive: Drive, q: str, *, limit: int, order: bool, what: str) -> tuple[list[dict[str, Any]], bool]:
    """Files matching q in My Drive, shared with the owner, and every shared drive they are in."""
    params: dict[str, Any] = dict(q=q, pageSize=min(limit, 100), corpora="allDrives", includeItemsFromAllDrives=True,
                                  supportsAllDrives=True, fields=f"nextPageToken,incompleteSearch,files({FILE_FIELDS})")
    if order:  # Drive refuses orderBy together with fullText (those come by relevance)
        params["orderBy"] = "modifiedTime desc"
    found: list[dict[str, Any]] = []
    incomplete = False
    token = None
    while len(found) < limit:
        page = drive.run(drive.service.files().list(pageToken=token, **params), what)
        found.extend(page.get("files") or [])
        incomplete = incomplete or bool(page.get("incompleteSearch"))
        token = page.get("nextPageToken")
        if not token:
            break
    return found[:limit], incomplete


def get_file(drive: Drive, ref: str, what: str) -> dict[str, Any]:
    """A file's metadata by id or link, following a shortcut to what it points at."""
    meta = drive.run(drive.service.files().get(fileId=file_id(ref), fields=FILE_FIELDS, supportsAllDrives=True), what)
    if meta.get("mimeType") == SHORTCUT:
        target = (meta.get("shortcutDetails") or {}).get("targetId")
        if not target:
            raise ToolError(f"{meta.get('name')} is a shortcut to a file that no longer exists.")
        meta = drive.run(drive.service.files().get(fileId=target, fields=FILE_FIELDS, supportsAllDrives=True), what)
    return dict(meta)


def find_folder(drive: Drive, ref: str, paths: "Paths") -> dict[str, Any]:
    """A folder by id, link or exact name; ToolError when none or several match."""
    ref = ref.strip()
    if ref.lower() in ("", "my drive", "root", "/"):
        root = dict(drive.run(drive.service.files().get(fileId="root", fields=FILE_FIELDS), "looking up My Drive"))
        return {**root, "_path": "My Drive"}
    try:
        meta = get_file(drive, ref, f"looking up folder {ref}")
    except ToolError:
        meta = {}
        name = ref.rstrip("/").rsplit("/", 1)[-1]
        hits, _ = list_files(drive, f"trashed = false and mimeType = {quote(FOLDER)} and name = {quote(name)}",
                             limit=10, order=True, what=f"looking for folder {name!r}")
        if len(hits) > 1 and "/" in ref:  # a path: keep the one whose path ends the same way
            hits = [h for h in hits if paths.of(h).lower().endswith(ref.strip("/").lower())] or hits
        if not hits:
            raise ToolError(f"There is no Drive folder called {name!r}. drive_search(type=\"folder\") lists folders.")
        if len(hits) > 1:
            listing = "; ".join(f"{paths.of(h)} (id {h['id']})" for h in hits)
            raise ToolError(f"Several Drive folders are called {name!r}: {listing}. Give the id of the one meant.")
        meta = hits[0]
    if meta.get("mimeType") != FOLDER:
        raise ToolError(f"{meta.get('name')} is a {kind(str(meta.get('mimeType')))}, not a folder.")
    return meta


class Paths:
    """Folder names up to the top, looked up once per folder for one tool call."""

    def __init__(self, drive: Drive) -> None:
        self.drive = drive
        self.folders: dict[str, dict[str, Any]] = {}
        self.drives: dict[str, str] = {}

    def _folder(self, fid: str) -> dict[str, Any] | None:
        if fid not in self.folders:
            try:
                self.folders[fid] = self.drive.run(self.drive.service.files().get(
                    fileId=fid, fields="id,name,parents,driveId", supportsAllDrives=True), "looking up a folder")
            except ToolError:
                self.folders[fid] = {}
        return self.folders[fid] or None

    def _drive_name(self, did: str) -> str:
        if did not in self.drives:
            try:
                self.drives[did] = str(self.drive.run(self.drive.service.drives().get(driveId=did, fields="name"),
                                                      "looking up a shared drive").get("name") or did)
            except ToolError:
                self.drives[did] = did
        return self.drives[did]

    def of(self, meta: dict[str, Any]) -> str:
        if meta.get("_path"):
            return str(meta["_path"])
        name = str(meta.get("name", ""))
        names = [name]
        parents = list(meta.get("parents") or [])
        drive_id = meta.get("driveId")
        if drive_id and meta.get("id") == drive_id:
            return f"Shared drives/{self._drive_name(drive_id)}"
        if not parents:  # a file shared with the owner, whose folder they cannot see
            return f"Shared drives/{self._drive_name(drive_id)}/{name}" if drive_id else f"Shared with me/{name}"
        for _ in range(MAX_DEPTH):
            pid = parents[0]
            if drive_id and pid == drive_id:
                return "/".join(["Shared drives", self._drive_name(drive_id), *reversed(names)])
            folder = self._folder(pid)
            if folder is None:
                return "/".join(["Shared with me", *reversed(names)])
            parents = list(folder.get("parents") or [])
            if not parents:
                names.append("My Drive" if not folder.get("driveId") else self._drive_name(folder["driveId"]))
                break
            names.append(str(folder.get("name", "")))
        return "/".join(reversed(names))
