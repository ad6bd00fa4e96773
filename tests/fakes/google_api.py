"""A loopback fake of Google Drive v3 and Google's OAuth 2.0 token endpoint.

Written from the public reference (developers.google.com/drive/api/reference/rest/v3,
/guides/search-files, /guides/ref-export-formats, /guides/handle-errors,
/guides/manage-uploads, and developers.google.com/identity/protocols/oauth2/native-app),
strictly, so that the real google-api-python-client and google-auth talk to it as to
Google:

- OAuth: POST /token with grant_type=authorization_code (client id and secret, the
  redirect URI the code was issued for, and a PKCE code_verifier whose S256 must
  match the challenge) or grant_type=refresh_token; a revoked or unknown refresh
  token is 400 {"error": "invalid_grant", "error_description": "Token has been
  expired or revoked."}. POST /revoke?token=... revokes a refresh token and its
  access tokens. Access tokens expire (`expires_in`).
- Drive: every call needs `Authorization: Bearer`, else 401 with Google's body; a
  call needs a scope that allows it (uploads need .../auth/drive), else 403
  insufficientPermissions / ACCESS_TOKEN_SCOPE_INSUFFICIENT.
- files.list: `q` parsed by the grammar of the search guide (name, fullText,
  mimeType, modifiedTime, trashed, parents, owners; and/or/not/parentheses; quoted
  strings with \\' and \\\\); anything else is 400 "Invalid Value" for q. orderBy
  with fullText is 403 (Drive's own message). Shared-drive items appear only with
  includeItemsFromAllDrives=true, which corpora=allDrives requires (403 otherwise);
  pageSize 1..1000, nextPageToken paging; `fields` partial responses (v3 default:
  kind, id, name, mimeType).
- files.get (and alt=media; 403 fileNotDownloadable for a Google Docs file),
  files.export (only the export formats Drive lists for the type; 403
  exportSizeLimitExceeded over 10 MB), drives.get, about.get. A shared-drive file
  is 404 "File not found" without supportsAllDrives=true.
- Uploads at /upload/drive/v3/files: uploadType=multipart (multipart/related, JSON
  metadata then the media; over 5 MB is refused) and resumable (a session URI, then
  PUT with Content-Range); PATCH on an id adds a new revision.

Errors have Drive's JSON shape (code, message, errors[{domain, reason, message}]).
Faults can be queued: `fail(path_part, status, reason, times)` answers the next
matching calls with that error; `drop_next_upload` stores an upload and then cuts
the connection without answering.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote_plus

from tests.fakes import google_query as gq
from tests.fakes.google_handler import Handler

READ_SCOPES = {"https://www.googleapis.com/auth/drive.readonly", "https://www.googleapis.com/auth/drive"}
WRITE_SCOPES = {"https://www.googleapis.com/auth/drive"}
FOLDER = "application/vnd.google-apps.folder"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
# Drive's export formats per Google type (ref-export-formats).
EXPORT_FORMATS = {
    "application/vnd.google-apps.document": {DOCX, "application/vnd.oasis.opendocument.text", "application/rtf",
                                             "application/pdf", "text/plain", "application/zip",
                                             "application/epub+zip", "text/markdown"},
    "application/vnd.google-apps.spreadsheet": {XLSX, "application/x-vnd.oasis.opendocument.spreadsheet",
                                                "application/pdf", "application/zip", "text/csv",
                                                "text/tab-separated-values"},
    "application/vnd.google-apps.presentation": {PPTX, "application/vnd.oasis.opendocument.presentation",
                                                 "application/pdf", "text/plain", "image/jpeg", "image/png",
                                                 "image/svg+xml"},
    "application/vnd.google-apps.drawing": {"application/pdf", "image/jpeg", "image/png", "image/svg+xml"},
}
EXPORT_LIMIT = 10 * 1024 * 1024
MULTIPART_LIMIT = 5 * 1024 * 1024
DEFAULT_FIELDS = "kind,id,name,mimeType"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


@dataclass
class DriveFile:
    id: str
    name: str
    mimeType: str
    parents: list[str] = field(default_factory=list)
    content: bytes = b""  # what alt=media returns (binary files)
    exports: dict[str, bytes] = field(default_factory=dict)  # Google files: what each export returns
    text: str = ""  # what fullText search sees
    owner: tuple[str, str] | None = ("Sam Lee", "sam@example.com")
    driveId: str | None = None
    modified: float = field(default_factory=time.time)
    version: int = 1
    trashed: bool = False
    revisions: list[bytes] = field(default_factory=list)

    def resource(self, base: str) -> dict[str, Any]:
        r: dict[str, Any] = {"kind": "drive#file", "id": self.id, "name": self.name, "mimeType": self.mimeType,
                             "parents": list(self.parents), "modifiedTime": _rfc3339(self.modified),
                             "version": str(self.version), "trashed": self.trashed,
                             "webViewLink": f"https://drive.google.com/file/d/{self.id}/view?usp=drivesdk"}
        if not self.mimeType.startswith("application/vnd.google-apps."):
            r["size"] = str(len(self.content))
            r["md5Checksum"] = hashlib.md5(self.content).hexdigest()
        if self.driveId:
            r["driveId"] = self.driveId
        elif self.owner:
            r["owners"] = [{"kind": "drive#user", "displayName": self.owner[0], "emailAddress": self.owner[1]}]
            r["ownedByMe"] = self.owner[1] == "sam@example.com"
        if not self.parents:
            del r["parents"]
        return r


class FakeGoogle:
    """Drive v3 and the OAuth token endpoint on 127.0.0.1, in a thread (the clients are synchronous)."""

    def __init__(self, *, client_id: str = "dispatch-test.apps.googleusercontent.com",
                 client_secret: str = "GOCSPX-test-secret", token_lifetime: int = 3599) -> None:
        self.client_id, self.client_secret, self.token_lifetime = client_id, client_secret, token_lifetime
        self.url = ""
        self.files: dict[str, DriveFile] = {}
        self.drives: dict[str, str] = {}
        self.root = self.add_folder("My Drive", parent=None, id="0AROOTmydrive00000000")
        self.access: dict[str, tuple[set[str], float, str]] = {}  # token -> scopes, expiry, refresh token
        self.refresh: dict[str, set[str]] = {}  # live refresh token -> scopes
        self.codes: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.uploads: list[dict[str, Any]] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.faults: list[list[Any]] = []
        self.drop_next_upload = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle (sync and async, for either kind of test) -------------------------

    def start_sync(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), type("BoundHandler", (Handler,), {"fake": self}))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def stop_sync(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    async def start(self) -> None:
        self.start_sync()

    async def stop(self) -> None:
        self.stop_sync()

    @property
    def token_url(self) -> str:
        return self.url + "token"

    # -- seeding ------------------------------------------------------------------------

    def new_id(self) -> str:
        return f"1{secrets.token_hex(4)}{next(self._ids):06d}abcdefgh"

    def add(self, name: str, mime: str, *, parent: str | None = "root", **kw: Any) -> DriveFile:
        parent_id = self.root.id if parent == "root" else parent
        f = DriveFile(id=kw.pop("id", None) or self.new_id(), name=name, mimeType=mime,
                      parents=[parent_id] if parent_id else [], **kw)
        if parent_id and parent_id in self.files and self.files[parent_id].driveId and not f.driveId:
            f.driveId = self.files[parent_id].driveId
        if parent_id in self.drives:
            f.driveId = parent_id
        self.files[f.id] = f
        return f

    def add_folder(self, name: str, parent: str | None = "root", **kw: Any) -> DriveFile:
        return self.add(name, FOLDER, parent=parent, **kw)

    def add_shared_drive(self, name: str) -> str:
        did = "0A" + secrets.token_hex(8)
        self.drives[did] = name
        return did

    def authorize(self, *, scopes: list[str], challenge: str, method: str, redirect_uri: str) -> str:
        """What Google's consent screen does: an authorization code for these scopes."""
        code = "4/0A" + secrets.token_urlsafe(20)
        self.codes[code] = dict(scopes=set(scopes), challenge=challenge, method=method, redirect_uri=redirect_uri)
        return code

    def grant(self, scopes: set[str]) -> dict[str, Any]:
        """A refresh token (and access token) as if the owner had connected: the saved token's info."""
        refresh = "1//0g" + secrets.token_urlsafe(24)
        self.refresh[refresh] = set(scopes)
        access = self._issue(refresh)
        return {"token": access, "refresh_token": refresh, "client_id": self.client_id,
                "client_secret": self.client_secret, "scopes": sorted(scopes), "token_uri": self.token_url,
                "expiry": datetime.fromtimestamp(self.access[access][1], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def revoke_all(self) -> None:
        """The owner removed Dispatch under Google Account -> Third-party access."""
        self.refresh.clear()
        self.access.clear()

    def expire_access_tokens(self) -> None:
        with self._lock:
            self.access = {t: (s, 0.0, r) for t, (s, _, r) in self.access.items()}

    def fail(self, path_part: str, status: int, reason: str, *, times: int = 1, message: str = "",
             domain: str = "usageLimits") -> None:
        self.faults.append([path_part, status, reason, times, message, domain])

    def calls(self, path_part: str, method: str | None = None) -> list[tuple[str, str, dict[str, list[str]]]]:
        return [r for r in self.requests if path_part in r[1] and (method is None or r[0] == method)]

    def lists(self) -> list[dict[str, list[str]]]:
        """The query parameters of every files.list call, in order."""
        return [params for method, path, params in self.requests if method == "GET" and path == "/drive/v3/files"]

    # -- OAuth --------------------------------------------------------------------------

    def _issue(self, refresh: str) -> str:
        token = "ya29." + secrets.token_urlsafe(30)
        self.access[token] = (self.refresh[refresh], time.time() + self.token_lifetime, refresh)
        return token

    def token_endpoint(self, form: dict[str, str], authorization: str = "") -> tuple[int, dict[str, Any]]:
        if authorization.startswith("Basic "):  # client_secret_basic (RFC 6749 2.3.1), as requests-oauthlib sends
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            form = {**form, "client_id": unquote_plus(user), "client_secret": unquote_plus(password)}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            if code is None:
                return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
            if form.get("redirect_uri") != code["redirect_uri"]:
                return 400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if code["method"] != "S256" or not verifier or digest != code["challenge"]:
                return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
            refresh = "1//0g" + secrets.token_urlsafe(24)
            self.refresh[refresh] = code["scopes"]
            return 200, {"access_token": self._issue(refresh), "expires_in": self.token_lifetime,
                         "refresh_token": refresh, "scope": " ".join(sorted(code["scopes"])),
                         "token_type": "Bearer"}
        if grant == "refresh_token":
            refresh = form.get("refresh_token", "")
            if refresh not in self.refresh:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            return 200, {"access_token": self._issue(refresh), "expires_in": self.token_lifetime,
                         "scope": " ".join(sorted(self.refresh[refresh])), "token_type": "Bearer"}
        return 400, {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant}"}

    def revoke_endpoint(self, token: str) -> tuple[int, dict[str, Any]]:
        refresh = self.access[token][2] if token in self.access else token
        if refresh not in self.refresh:
            return 400, {"error": "invalid_token", "error_description": "Token expired or revoked"}
        del self.refresh[refresh]
        self.access = {t: v for t, v in self.access.items() if v[2] != refresh}
        return 200, {}

    def scopes_of(self, header: str) -> set[str]:
        token = header[7:] if header.startswith("Bearer ") else ""
        entry = self.access.get(token)
        if entry is None or entry[1] < time.time():
            raise gq.Fail(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                        "cookie or other valid authentication credential. See https://developers.google.com/"
                        "identity/sign-in/web/devconsole-project.", "authError", location="Authorization",
                        locationType="header", api_status="UNAUTHENTICATED")
        return entry[0]

    # -- Drive --------------------------------------------------------------------------

    def visible(self, fid: str, params: dict[str, str]) -> DriveFile:
        fid = self.root.id if fid == "root" else fid
        f = self.files.get(fid)
        if f is None or (f.driveId and params.get("supportsAllDrives") != "true"):
            raise gq.not_found(fid)
        return f

    def list_files(self, params: dict[str, str]) -> dict[str, Any]:
        corpora = params.get("corpora", "user")
        all_drives = params.get("includeItemsFromAllDrives") == "true"
        if (corpora in ("drive", "allDrives") or params.get("driveId")) and not all_drives:
            raise gq.Fail(403, "The includeItemsFromAllDrives parameter must be set to true when driveId is specified "
                        "or corpora contains drive or allDrives.", "forbidden")
        if bool(params.get("driveId")) != (corpora == "drive"):
            raise gq.Fail(400, "The driveId parameter must be specified if and only if corpora is set to drive.",
                        "teamDriveIdRequiresTeamDriveCorpora")
        size = int(params.get("pageSize", "100"))
        if not 1 <= size <= 1000:
            raise gq.Fail(400, f"Invalid value '{size}'. Values must be within the range: [1, 1000]", "invalid",
                        location="pageSize", locationType="parameter")
        try:
            predicate = gq.parse(params.get("q", ""))
        except gq.Invalid:
            raise gq.Fail(400, "Invalid Value", "invalid", location="q", locationType="parameter") from None
        if params.get("orderBy") and "fullText" in params.get("q", ""):
            msg = "Sorting is not supported for queries with fullText terms. Results are always in descending relevance order."
            raise gq.Fail(403, msg, "forbidden", location="orderBy", locationType="parameter")
        hits = [f for f in self.files.values() if f.id != self.root.id and (all_drives or not f.driveId)
                and (corpora != "drive" or f.driveId == params.get("driveId")) and predicate(_Doc(f, self))]
        order = params.get("orderBy", "")
        if order.startswith("modifiedTime"):
            hits.sort(key=lambda f: f.modified, reverse=order.endswith("desc"))
        start = int(params.get("pageToken") or 0)
        page = hits[start:start + size]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False,
                                "files": [f.resource(self.url) for f in page]}
        if start + size < len(hits):
            body["nextPageToken"] = str(start + size)
        return body


class _Doc:
    """One file as the q grammar's evaluator sees it."""

    def __init__(self, f: DriveFile, fake: FakeGoogle) -> None:
        self.f, self.fake = f, fake

    def value(self, name: str) -> Any:
        f = self.f
        return {"name": f.name, "fullText": f"{f.name}\n{f.text}", "mimeType": f.mimeType, "trashed": f.trashed,
                "modifiedTime": f.modified, "parents": [self.fake.root.id if p == self.fake.root.id else p
                                                        for p in f.parents],
                # 'me' is the signed-in user (the fake's only user is sam@example.com)
                "owners": ([f.owner[1]] + (["me"] if f.owner[1] == "sam@example.com" else []))
                if f.owner and not f.driveId else []}[name]
