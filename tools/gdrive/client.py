"""The Drive v3 client: google-api-python-client over google-auth, pointed at DISPATCH_GOOGLE_API_URL.

Building. The client is made from the Drive discovery document that ships inside
google-api-python-client (no network fetch), with its `rootUrl` replaced by
DISPATCH_GOOGLE_API_URL. Both URL families then follow from it as the library
builds them: calls to {URL}drive/v3/... and uploads to {URL}upload/drive/v3/...
(`client_options.api_endpoint` alone would replace the base including `drive/v3/`,
and keep Google's scheme and path for uploads).

Retries, per Google's guidance for Drive: 429, 5xx and 403 `rateLimitExceeded` /
`userRateLimitExceeded` are retried with truncated exponential backoff and jitter —
googleapiclient's `num_retries` does exactly that. Everything else is an answer and
becomes a sentence for the model. Uploads are different: see `Drive.send`.

httplib2 itself re-sends a request when the connection drops while it waits for
the answer (it takes that for a stale kept-alive connection, "regardless of the
number of RETRIES set"). For a read that is harmless; for an upload it is a second
copy in the owner's Drive. So every request that is not a GET goes out on a fresh
connection (no stale one to excuse a retry) and at most once (`_SendOnce`): a drop
after it went out is reported as such, and the upload ends `unknown`.

The sign-in refreshes by itself (google-auth, on expiry or a 401); a refreshed
token is saved back. A revoked or expired refresh token (`invalid_grant`) becomes
one clear message with the command that reconnects.
"""

from __future__ import annotations

import json
import re
import time
from functools import lru_cache
from typing import Any

from store.config import Settings
from tools.gdrive import auth
from tools.registry import ToolError, ToolOutcomeUnknown

RETRIES = 4  # waits of up to 2, 4, 8, 16 s: about half a minute in all
TIMEOUT_S = 60
# Where the backoff waits; tests replace it to record the waits instead of sleeping.
SLEEP = time.sleep

REVOKED = ("Google refused Dispatch's saved sign-in: it was revoked (for example under Google Account -> "
           "Security -> Third-party access) or has expired. Run `dispatch connect google` on the desktop "
           "to connect again.")
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
_ID = re.compile(r"[A-Za-z0-9_-]{10,}")
_LINK_ID = re.compile(r"(?:/d/|/folders/|[?&]id=)([A-Za-z0-9_-]{10,})")


def file_id(ref: str) -> str:
    """A Drive file id from an id or any Drive/Docs link; ToolError otherwise."""
    ref = ref.strip()
    link = _LINK_ID.search(ref)
    if link:
        return link.group(1)
    if _ID.fullmatch(ref):
        return ref
    raise ToolError(f"{ref[:100]!r} is not a Drive file id or link; drive_search finds files and shows their ids.")


@lru_cache(maxsize=4)
def _discovery(root_url: str) -> str:
    from googleapiclient import discovery_cache

    doc = json.loads(discovery_cache.get_static_doc("drive", "v3"))
    doc["rootUrl"] = root_url
    doc["mtlsRootUrl"] = root_url
    doc["baseUrl"] = root_url + doc["servicePath"]
    return json.dumps(doc)


def _sleep(seconds: float) -> None:
    SLEEP(seconds)


class NotResent(Exception):
    """httplib2 wanted to send a request again after the connection dropped; it had gone out once."""


@lru_cache(maxsize=1)
def _send_once_http() -> type:
    import httplib2

    class SendOnceHttp(httplib2.Http):
        """httplib2.Http that sends anything but a GET once, on a fresh connection (module docstring)."""

        def _conn_request(self, conn: Any, request_uri: str, method: str, body: Any, headers: Any) -> Any:
            if method in ("GET", "HEAD"):
                return super()._conn_request(conn, request_uri, method, body, headers)
            conn.close()  # a fresh connection: no stale keep-alive for httplib2 to excuse a retry with
            send = conn.request
            sent: list[bool] = []

            def once(*args: Any, **kwargs: Any) -> Any:
                if sent:
                    raise NotResent(f"the connection dropped after the {method} went out")
                sent.append(True)
                return send(*args, **kwargs)

            conn.request = once
            try:
                return super()._conn_request(conn, request_uri, method, body, headers)
            finally:
                del conn.request  # back to the class's method for the next request on this connection

    return SendOnceHttp


class Drive:
    """One Drive session for one tool call: the service, and the sign-in kept fresh."""

    def __init__(self, settings: Settings) -> None:
        import google_auth_httplib2
        from googleapiclient.discovery import build_from_document


        self.settings = settings
        try:
            self.creds = auth.credentials(settings)
        except auth.NotConnected as exc:
            raise ToolError(str(exc)) from None
        self._token = self.creds.token
        http = google_auth_httplib2.AuthorizedHttp(self.creds, http=_send_once_http()(timeout=TIMEOUT_S))
        self.service = build_from_document(_discovery(settings.google_api_url), http=http)

    def _saved(self) -> None:
        """Save a token google-auth refreshed during the call, so the next call starts with it."""
        if self.creds.token and self.creds.token != self._token:
            self._token = self.creds.token
            auth.save_token(self.settings, self.creds.to_json())

    def run(self, request: Any, what: str) -> Any:
        """A read (or a draft-time lookup): retried per Google's guidance, errors in words."""
        request._sleep = _sleep  # googleapiclient's backoff waits go through SLEEP
        try:
            return request.execute(num_retries=RETRIES)
        except Exception as exc:
            raise failed(exc, what) from None
        finally:
            self._saved()

    def download(self, request: Any, fh: Any, what: str, *, limit: int) -> int:
        """Stream a files.get(alt=media) or files.export request into `fh`; at most `limit` bytes."""
        from googleapiclient.http import MediaIoBaseDownload

        loader = MediaIoBaseDownload(fh, request, chunksize=8 * 1024 * 1024)
        loader._sleep = _sleep
        try:
            done = False
            while not done:
                _, done = loader.next_chunk(num_retries=RETRIES)
                if fh.tell() > limit:
                    raise ToolError(f"{what}: the file is over {limit // (1024 * 1024)} MB, more than Dispatch reads.")
        except ToolError:
            raise
        except Exception as exc:
            raise failed(exc, what) from None
        finally:
            self._saved()
        return fh.tell()

    def send(self, request: Any, what: str) -> Any:
        """An upload, exactly once. Only what Google surely did not take is retried (a
        rate-limit answer); a 5xx or a connection lost after the request went out may
        have stored the file, so it is `unknown` and never retried."""
        request._sleep = _sleep
        for attempt in range(RETRIES + 1):
            try:
                return request.execute(num_retries=0)
            except Exception as exc:
                status, reasons = _status(exc)
                if (status == 429 or (status == 403 and reasons & RATE_REASONS)) and attempt < RETRIES:
                    import random

                    _sleep(random.random() * 2 ** (attempt + 1))
                    continue
                if status and status >= 500:
                    raise ToolOutcomeUnknown(
                        f"Google Drive answered {status} during {what}; the file may or may not have been "
                        "stored. Look in Drive before uploading it again.") from None
                if status is None and _after_sending(exc):
                    raise ToolOutcomeUnknown(
                        f"The connection to Google Drive broke during {what} ({type(exc).__name__}); the file "
                        "may or may not have been stored. Look in Drive before uploading it again.") from None
                raise failed(exc, what) from None
            finally:
                self._saved()
        raise ToolError(f"Google Drive kept rate-limiting {what}; nothing was uploaded. Try again in a minute.")


def _status(exc: Exception) -> tuple[int | None, set[str]]:
    from googleapiclient.errors import HttpError

    if not isinstance(exc, HttpError):
        return None, set()
    reasons: set[str] = set()
    try:  # Drive's body has `errors` (v2-style reasons) and sometimes `details` (ErrorInfo): read both
        error = json.loads(exc.content.decode("utf-8"))["error"]
        for item in [*(error.get("errors") or []), *(error.get("details") or [])]:
            if isinstance(item, dict) and item.get("reason"):
                reasons.add(str(item["reason"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return int(exc.resp.status), reasons


def _after_sending(exc: Exception) -> bool:
    """Whether a transport error may have come after the request reached Google."""
    import httplib2
    from google.auth.exceptions import RefreshError

    if isinstance(exc, (RefreshError, ConnectionRefusedError, httplib2.ServerNotFoundError)):
        return False  # the refresh failed or no connection was made: nothing was sent
    return isinstance(exc, (NotResent, OSError, httplib2.HttpLib2Error)) or type(exc).__module__.startswith("http.client")


def failed(exc: Exception, what: str) -> ToolError:
    """A readable ToolError for a Drive call that did not work."""
    from google.auth.exceptions import RefreshError, TransportError
    from googleapiclient.errors import HttpError

    if isinstance(exc, ToolError):
        return exc
    if isinstance(exc, RefreshError):
        if "invalid_grant" in str(exc) or "invalid_client" in str(exc):
            return ToolError(REVOKED)
        return ToolError(f"Could not renew the Google sign-in ({str(exc)[:200]}). Try again later, or run "
                         "`dispatch connect google` if it keeps failing.")
    if isinstance(exc, TransportError):
        return ToolError(f"Could not reach Google to renew the sign-in for {what}; try again later.")
    if not isinstance(exc, HttpError):
        return ToolError(f"Could not reach Google Drive for {what} ({type(exc).__name__}); try again later.")
    status, reasons = _status(exc)
    message = str(exc.reason or "").strip()
    if status == 401:
        return ToolError(REVOKED)
    if status == 404:
        return ToolError(f"Drive has no such file for {what}, or the owner's account cannot see it.")
    if reasons & RATE_REASONS or status == 429:
        return ToolError(f"Google Drive is rate-limiting Dispatch; {what} was tried {RETRIES + 1} times. "
                         "Try again in a minute.")
    if "exportSizeLimitExceeded" in reasons:
        return ToolError(f"{what}: the file is too large for Drive to export (Drive exports up to 10 MB). Open "
                         "it in Drive and download it there, or ask for a smaller part (one sheet, a copy).")
    if "insufficientFilePermissions" in reasons:
        return ToolError(f"The owner's Google account may not do that ({what}): {message}")
    if reasons & {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}:
        return ToolError("Drive is connected read-only. To allow uploads run `dispatch connect google --write` "
                         "on the desktop.")
    if "storageQuotaExceeded" in reasons:
        return ToolError("The Google Drive is full (storage quota exceeded); nothing was uploaded.")
    if status and status >= 500:
        return ToolError(f"Google Drive had a server error ({status}) for {what}; try again later.")
    return ToolError(f"Google Drive refused {what}: {message or f'HTTP {status}'}")
