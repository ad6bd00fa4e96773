"""The HTTP side of the fake Google (tests/fakes/google_api.py): routes, auth, faults,
partial responses, media and uploads. State and rules live in FakeGoogle."""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import google_query as gq

SCOPE_DETAILS = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                  "domain": "googleapis.com", "metadata": {"service": "drive.googleapis.com",
                                                           "method": "google.apps.drive.v3.DriveFiles.Create"}}]


class Handler(BaseHTTPRequestHandler):
    fake: Any = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # -- plumbing -----------------------------------------------------------------------

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: Any, *, ctype: str = "application/json; charset=UTF-8",
              headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, body: dict[str, Any], params: dict[str, str], default: str) -> None:
        try:
            self._send(200, gq.apply_fields(body, gq.parse_fields(params.get("fields") or default)))
        except gq.Invalid as exc:
            raise gq.Fail(400, f"Invalid field selection {exc}", "invalidParameter", location="fields",
                          locationType="parameter") from None

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _route(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        path = parts.path
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        fake.requests.append((method, path, parse_qs(parts.query)))
        body = self._body()
        try:
            if path == "/token" and method == "POST":
                form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
                status, answer = fake.token_endpoint(form, self.headers.get("Authorization", ""))
                return self._send(status, answer)
            if path == "/revoke" and method == "POST":
                form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
                status, answer = fake.revoke_endpoint(params.get("token") or form.get("token", ""))
                return self._send(status, answer)
            if not path.startswith(("/drive/v3/", "/upload/drive/v3/")):
                return self._send(404, b"<html><body>Not Found</body></html>", ctype="text/html")
            scopes = fake.scopes_of(self.headers.get("Authorization", ""))
            for fault in fake.faults:
                if fault[0] in path and fault[3] > 0:
                    fault[3] -= 1
                    raise gq.Fail(fault[1], fault[4] or {"rateLimitExceeded": "Rate Limit Exceeded",
                                                         "userRateLimitExceeded": "User Rate Limit Exceeded"}.get(
                        fault[2], fault[2]), fault[2], fault[5])
            if path.startswith("/upload/"):
                if not scopes & {"https://www.googleapis.com/auth/drive"}:
                    raise gq.Fail(403, "Request had insufficient authentication scopes.", "insufficientPermissions",
                                  api_status="PERMISSION_DENIED", details=SCOPE_DETAILS)
                return self._upload(method, path, params, body)
            if method != "GET":
                return self._send(404, b"<html><body>Not Found</body></html>", ctype="text/html")
            return self._read(path, params)
        except gq.Fail as fail:
            self._send(fail.status, fail.body())
        except Exception as exc:  # a bug in the fake or the test: answer, so the client doesn't hang on it
            self._send(500, gq.Fail(500, f"fake: {type(exc).__name__}: {exc}", "backendError").body())

    # -- reads --------------------------------------------------------------------------

    def _read(self, path: str, params: dict[str, str]) -> None:
        fake = self.fake
        if path == "/drive/v3/files":
            return self._json(fake.list_files(params), params, "kind,incompleteSearch,nextPageToken,files(kind,id,name,mimeType)")
        if path == "/drive/v3/about":
            if not params.get("fields"):
                raise gq.Fail(400, "The 'fields' parameter is required for this method.", "required",
                              location="fields", locationType="parameter")
            return self._json({"kind": "drive#about", "user": {"displayName": "Sam Lee",
                               "emailAddress": "sam@example.com"}}, params, "")
        m = re.fullmatch(r"/drive/v3/drives/([^/]+)", path)
        if m:
            if m.group(1) not in fake.drives:
                raise gq.Fail(404, f"Shared drive not found: {m.group(1)}", "notFound", location="driveId",
                              locationType="parameter")
            return self._json({"kind": "drive#drive", "id": m.group(1), "name": fake.drives[m.group(1)]}, params,
                              "kind,id,name")
        m = re.fullmatch(r"/drive/v3/files/([^/]+)(/export)?", path)
        if not m:
            return self._send(404, b"<html><body>Not Found</body></html>", ctype="text/html")
        f = fake.visible(m.group(1), params)
        if m.group(2):
            wanted = params.get("mimeType", "")
            formats = gq_exports(f.mimeType)
            if not formats:
                raise gq.Fail(403, "Export only supports Docs Editors files.", "fileNotExportable")
            if wanted not in formats:
                raise gq.Fail(400, "The requested conversion is not supported.", "badRequest",
                              location="convertTo", locationType="parameter")
            data = f.exports.get(wanted)
            if data is None:
                raise AssertionError(f"the test gave {f.name} no {wanted} export")
            if len(data) > 10 * 1024 * 1024:
                raise gq.Fail(403, "This file is too large to be exported.", "exportSizeLimitExceeded")
            return self._send(200, data, ctype=wanted)
        if params.get("alt") == "media":
            if f.mimeType.startswith("application/vnd.google-apps."):
                raise gq.Fail(403, "Only files with binary content can be downloaded. Use Export with Docs Editors "
                              "files.", "fileNotDownloadable", location="alt", locationType="parameter")
            return self._send(200, f.content, ctype="application/octet-stream")
        return self._json(f.resource(fake.url), params, "kind,id,name,mimeType")

    # -- uploads --------------------------------------------------------------------------

    def _upload(self, method: str, path: str, params: dict[str, str], body: bytes) -> None:
        fake = self.fake
        m = re.fullmatch(r"/upload/drive/v3/files(?:/([^/]+))?", path)
        if not m or (method == "POST") == bool(m.group(1)) and method != "PUT":
            return self._send(404, b"<html><body>Not Found</body></html>", ctype="text/html")
        kind = params.get("uploadType")
        if method == "PUT" or params.get("upload_id"):
            return self._resumable_put(params, body)
        if kind == "multipart":
            if len(body) > 5 * 1024 * 1024 + 64 * 1024:
                raise gq.Fail(400, "Multipart uploads are limited to 5 MB; use a resumable upload.", "badRequest")
            meta, media = _multipart(self.headers.get("Content-Type", ""), body)
            return self._store(m.group(1), meta, media, params)
        if kind == "media":  # the bytes alone (a new revision, or a file with no metadata)
            if len(body) > 5 * 1024 * 1024:
                raise gq.Fail(400, "Simple uploads are limited to 5 MB; use a resumable upload.", "badRequest")
            return self._store(m.group(1), {}, body, params)
        if kind == "resumable":
            sid = secrets.token_urlsafe(12)
            fake.sessions[sid] = {"id": m.group(1), "meta": json.loads(body or b"{}"), "params": params,
                                  "total": int(self.headers.get("X-Upload-Content-Length") or -1), "data": b""}
            location = f"{fake.url}upload/drive/v3/files?uploadType=resumable&upload_id={sid}"
            return self._send(200, b"", headers={"Location": location})
        raise gq.Fail(400, f"Invalid value '{kind}'. Values must be one of: media, multipart, resumable", "invalid",
                      location="uploadType", locationType="parameter")

    def _resumable_put(self, params: dict[str, str], body: bytes) -> None:
        session = self.fake.sessions.get(params.get("upload_id", ""))
        if session is None:
            raise gq.Fail(404, "Upload session not found.", "notFound")
        crange = self.headers.get("Content-Range", "")
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", crange)
        if m is None or int(m.group(1)) != len(session["data"]):
            raise gq.Fail(400, f"Invalid Content-Range {crange!r}", "badContent")
        session["data"] += body
        total = m.group(3)
        if total == "*" or len(session["data"]) < int(total):
            return self._send(308, b"", headers={"Range": f"bytes=0-{len(session['data']) - 1}"})
        del self.fake.sessions[params["upload_id"]]
        return self._store(session["id"], session["meta"], session["data"], session["params"])

    def _store(self, fid: str | None, meta: dict[str, Any], media: bytes, params: dict[str, str]) -> None:
        fake = self.fake
        if fid:  # a new revision of an existing file
            f = fake.visible(fid, params)
            f.revisions.append(f.content)
            f.content, f.version, f.modified = media, f.version + 1, time.time()
        else:
            parents = meta.get("parents") or ["root"]
            parent = fake.visible(parents[0], params)
            if parent.mimeType != "application/vnd.google-apps.folder":
                raise gq.Fail(400, "The specified parent is not a folder.", "invalid")
            f = fake.add(meta.get("name") or "Untitled", meta.get("mimeType") or "application/octet-stream",
                         parent=parent.id, content=media)
        fake.uploads.append({"id": f.id, "name": f.name, "parent": f.parents[0] if f.parents else None,
                             "content": media, "revision": bool(fid)})
        if fake.drop_next_upload:  # stored, then the connection breaks before the answer
            fake.drop_next_upload = False
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._json(f.resource(fake.url), params, "kind,id,name,mimeType")


def gq_exports(mime: str) -> set[str]:
    from tests.fakes.google_api import EXPORT_FORMATS

    return EXPORT_FORMATS.get(mime, set())


def _multipart(ctype: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    """multipart/related: the JSON metadata, then the media (RFC 2387), split by hand so
    binary media comes out byte for byte."""
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.startswith("multipart/related") or not m:
        raise gq.Fail(400, "Bad Request: multipart/related with a boundary expected.", "badContent")
    delimiter = b"--" + m.group(1).encode()
    chunks = body.split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk[1:] if chunk.startswith(b"\n") else chunk
        sep = b"\r\n\r\n" if b"\r\n\r\n" in chunk else b"\n\n"
        head, _, content = chunk.partition(sep)
        content = content[:-2] if content.endswith(b"\r\n") else content[:-1] if content.endswith(b"\n") else content
        parts.append((head.decode("latin-1"), content))
    if len(parts) != 2 or "application/json" not in parts[0][0].lower():
        raise gq.Fail(400, "Bad Request: expected metadata and media parts.", "badContent")
    return json.loads(parts[0][1] or b"{}"), parts[1][1]
