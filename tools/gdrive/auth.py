"""The owner's Google sign-in: where the token is kept, and turning it into credentials.

The token (an OAuth refresh token and its access token, as google-auth's
`Credentials.to_json()`) is a secret. It goes to the OS keyring through `keyring`
(macOS Keychain, Windows Credential Locker, Secret Service on Linux) under the
service "dispatch-google" and the account DISPATCH_HOME, so two Dispatch homes on
one computer keep two sign-ins. Where no usable keyring backend exists (a headless
Linux box without a Secret Service), it goes to DISPATCH_HOME/google-token.json,
created with mode 0600 (only the owner's user can read it).

Beside it, DISPATCH_HOME/google.json (no secret in it) records that Drive is
connected, where the token is, the account and the scopes granted. Checking that
file is what `ready()` does on every model step: a stat, not a keyring round trip.

google-auth's `Credentials.from_authorized_user_info()` always sets Google's own
token endpoint; `with_token_uri` puts back DISPATCH_GOOGLE_TOKEN_URL (a test or
proxy endpoint), which refreshes then go to.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.config import Settings

READ_SCOPE = "https://www.googleapis.com/auth/drive.readonly"
# Uploading into folders the owner already has (and new revisions of their files) needs
# the full scope: drive.file only reaches files Dispatch itself created.
WRITE_SCOPE = "https://www.googleapis.com/auth/drive"
KEYRING_SERVICE = "dispatch-google"
RECONNECT = "dispatch connect google"


class NotConnected(Exception):
    """No usable Google sign-in; the message says what to run."""


@dataclass
class Connection:
    """What google.json says (never the token itself)."""

    account: str
    scopes: list[str]
    storage: str  # "keyring" or "file"

    @property
    def can_write(self) -> bool:
        return WRITE_SCOPE in self.scopes


def marker_path(settings: Settings) -> Path:
    return settings.home / "google.json"


def token_file(settings: Settings) -> Path:
    return settings.home / "google-token.json"


def is_connected(settings: Settings) -> bool:
    return marker_path(settings).is_file()


def connection(settings: Settings) -> Connection | None:
    try:
        data = json.loads(marker_path(settings).read_text(encoding="utf-8"))
        return Connection(str(data.get("account", "")), list(data.get("scopes") or []), str(data["storage"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# The keyring ------------------------------------------------------------------------


def usable_keyring() -> Any | None:
    """The keyring backend, or None when there is no real one (only the fail/null
    backends, or a chainer with nothing in it)."""
    try:
        import keyring
        from keyring.backends import chainer, fail

        backend = keyring.get_keyring()
    except Exception:  # a broken keyring install must not take Drive down
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    module = type(backend).__module__
    if module.startswith("keyrings.alt") and "file" in module.lower():
        return None  # a plaintext file keyring is no better than our own 0600 file, and less obvious
    return backend


def _write_private(path: Path, text: str) -> None:
    """Write a file only the owner's user can read, never briefly readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: two tool calls refreshing at once must not write into each other's file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # umask cannot widen it, but a platform default might
    os.replace(tmp, path)


def save_token(settings: Settings, token_json: str, *, account: str = "", scopes: list[str] | None = None) -> str:
    """Keep the token (keyring, else a 0600 file) and write the marker. Returns where it went."""
    backend = usable_keyring()
    storage = "file"
    if backend is not None:
        try:
            backend.set_password(KEYRING_SERVICE, str(settings.home), token_json)
            storage = "keyring"
            token_file(settings).unlink(missing_ok=True)  # no stale copy left behind
        except Exception:
            storage = "file"
    if storage == "file":
        _write_private(token_file(settings), token_json)
    old = connection(settings)
    if scopes is None:
        scopes = old.scopes if old else []
    account = account or (old.account if old else "")
    _write_private(marker_path(settings), json.dumps({"account": account, "scopes": scopes, "storage": storage}))
    return storage


def load_token(settings: Settings) -> dict[str, Any]:
    conn = connection(settings)
    if conn is None:
        raise NotConnected(f"Google Drive is not connected. Run `{RECONNECT}` on the desktop (the README "
                           "section \u201cGoogle Drive\u201d says how).")
    text: str | None = None
    if conn.storage == "keyring":
        backend = usable_keyring()
        try:
            text = backend.get_password(KEYRING_SERVICE, str(settings.home)) if backend is not None else None
        except Exception:
            text = None
        if text is None:
            raise NotConnected("The system keyring did not give back the Google sign-in: it may be locked, or "
                               "Dispatch runs outside your desktop session (where the keyring lives). Unlock it, "
                               f"or run `{RECONNECT}` again (without a keyring the token goes to a private file).")
    else:
        try:
            text = token_file(settings).read_text(encoding="utf-8")
        except OSError:
            text = None
    if not text:
        raise NotConnected(f"The saved Google sign-in is missing from the {conn.storage}. "
                           f"Run `{RECONNECT}` on the desktop to connect again.")
    try:
        return dict(json.loads(text))
    except ValueError:
        raise NotConnected(f"The saved Google sign-in is damaged. Run `{RECONNECT}` to connect again.") from None


def forget(settings: Settings) -> None:
    """Remove the token from wherever it is, and the marker."""
    backend = usable_keyring()
    if backend is not None:
        try:
            backend.delete_password(KEYRING_SERVICE, str(settings.home))
        except Exception:  # keyring.errors.PasswordDeleteError: there was none
            pass
    token_file(settings).unlink(missing_ok=True)
    marker_path(settings).unlink(missing_ok=True)


def credentials(settings: Settings) -> Any:
    """google-auth user credentials from the saved token, refreshing at DISPATCH_GOOGLE_TOKEN_URL."""
    from google.oauth2.credentials import Credentials

    info = load_token(settings)
    try:
        creds = Credentials.from_authorized_user_info(info)
    except ValueError:
        raise NotConnected(f"The saved Google sign-in is incomplete. Run `{RECONNECT}` to connect again.") from None
    moved = creds.with_token_uri(settings.google_token_url)
    moved.expiry = creds.expiry  # the copy forgets it, and would then never refresh before a 401
    return moved


def revoke_url(settings: Settings) -> str:
    """Google's revocation endpoint beside its token endpoint (…/token -> …/revoke)."""
    base = settings.google_token_url.rstrip("/")
    return base.rsplit("/", 1)[0] + "/revoke"
