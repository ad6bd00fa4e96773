"""`dispatch connect google`: connect the owner's Google Drive once, on the desktop.

    dispatch connect google               sign in (read-only), in the browser on this desktop
    dispatch connect google --write       also allow uploads (Dispatch still asks before each one)
    dispatch connect google --no-browser  print the address to open anywhere, then paste back where it lands
    dispatch connect google --status      is it connected, as whom, may it upload, does the token work
    dispatch connect google --disconnect  revoke the token at Google and forget it here

Google's installed-app flow (google-auth-oauthlib's InstalledAppFlow) with PKCE (an
S256 code challenge; the verifier never leaves this process) and a loopback redirect:
Google sends the browser back to http://localhost:PORT/ where a one-request server
takes the code. On a desktop without a browser (--no-browser), the address is
printed; the owner opens it on any device, approves, and pastes back the address
the browser was sent to (it fails to load there, which is expected: only the code
in it matters, and it is useless without this process's verifier).

The client is the owner's own "Desktop app" OAuth client (DISPATCH_GOOGLE_CLIENT_SECRETS,
see the README section "Google Drive"). The token goes to the OS keyring, or a 0600
file where there is none (tools.gdrive.auth). Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from store.config import Settings
from tools.gdrive import auth

Check = tuple[str, bool, str]
WALKTHROUGH = ("Google Drive needs an OAuth client of your own first (about five minutes, once):\n"
               "  1. console.cloud.google.com -> create a project (any name).\n"
               "  2. APIs & Services -> Library -> Google Drive API -> Enable.\n"
               "  3. APIs & Services -> OAuth consent screen: External, add yourself as a test user.\n"
               "  4. APIs & Services -> Credentials -> Create credentials -> OAuth client ID -> Desktop app.\n"
               "  5. Download its JSON and set DISPATCH_GOOGLE_CLIENT_SECRETS=/path/to/client_secret.json.\n"
               "Then run `dispatch connect google` again. The README section \u201cGoogle Drive\u201d has the details.")


def run(settings: Settings, args: argparse.Namespace, *, ask: Callable[[str], str] | None = None) -> int:
    if args.status:
        name, ok, message = check(settings)
        print(f"{name}: {message}")
        return 0 if ok else 1
    if args.disconnect:
        return disconnect(settings)
    return connect(settings, write=args.write, browser=not args.no_browser, ask=ask)


def _client_config(settings: Settings) -> dict[str, Any] | None:
    path = settings.google_client_secrets
    if path is None:
        print(WALKTHROUGH, file=sys.stderr)
        return None
    try:
        config = json.loads(path.expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"Could not read DISPATCH_GOOGLE_CLIENT_SECRETS ({path}): {type(exc).__name__}. Download the "
              "client's JSON again from Google Cloud Console -> Credentials.", file=sys.stderr)
        return None
    if "installed" not in config:
        kind = next(iter(config), "unknown")
        print(f"{path} is a \u201c{kind}\u201d OAuth client; Dispatch needs a \u201cDesktop app\u201d client "
              "(Credentials -> Create credentials -> OAuth client ID -> Application type: Desktop app).",
              file=sys.stderr)
        return None
    config["installed"]["token_uri"] = settings.google_token_url
    return config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect(settings: Settings, *, write: bool, browser: bool, ask: Callable[[str], str] | None = None) -> int:
    from google_auth_oauthlib.flow import InstalledAppFlow

    config = _client_config(settings)
    if config is None:
        return 2
    scopes = [auth.READ_SCOPE] + ([auth.WRITE_SCOPE] if write else [])
    # Google's consent screen lets the owner untick the upload scope; oauthlib would call
    # a narrower grant an error, we say what was granted instead.
    os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    flow = InstalledAppFlow.from_client_config(config, scopes=scopes, autogenerate_code_verifier=True)
    try:
        if browser:
            creds = flow.run_local_server(
                host="localhost", port=0, open_browser=True, timeout_seconds=300,
                authorization_prompt_message="Opening Google's sign-in in your browser. If it does not open, "
                                             "visit:\n{url}\n", success_message=
                "Dispatch is connected to Google Drive. You can close this tab.",
                access_type="offline", prompt="consent")
        else:
            creds = _paste_flow(flow, ask or input)
            if creds is None:
                return 1
    except Exception as exc:  # a timeout, a refused code, a network error: one sentence, no traceback
        print(f"Connecting Google Drive did not work: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        return 1
    granted = sorted(set(creds.granted_scopes or creds.scopes or scopes))
    storage = auth.save_token(settings, creds.to_json(), scopes=granted)
    account = _account(settings)
    if account:
        auth.save_token(settings, creds.to_json(), account=account, scopes=granted)
    mode = "read and upload (each upload still waits for your Approve)" if auth.WRITE_SCOPE in granted else "read-only"
    where = "the system keyring" if storage == "keyring" else f"{auth.token_file(settings)} (readable only by you)"
    print(f"Connected Google Drive{' for ' + account if account else ''}: {mode}. The sign-in is kept in {where}.")
    if write and auth.WRITE_SCOPE not in granted:
        print("Uploads were not allowed on Google's consent screen, so Drive is read-only. Run "
              "`dispatch connect google --write` again and tick the Drive permission to allow them.")
    return 0


def _paste_flow(flow: Any, ask: Callable[[str], str]) -> Any:
    flow.redirect_uri = f"http://localhost:{_free_port()}/"
    url, state = flow.authorization_url(access_type="offline", prompt="consent")
    print("Open this address in a browser on any device and sign in:\n\n" + url + "\n\n"
          "Afterwards the browser goes to an address starting with http://localhost that does not load; "
          "that is expected. Copy that whole address from the address bar and paste it here.")
    answer = ask("Address: ").strip()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(answer).query) if "?" in answer else {"code": [answer]}
    if query.get("error"):
        print(f"Google said {query['error'][0]}: nothing was connected.", file=sys.stderr)
        return None
    if "state" in query and query["state"][0] != state:
        print("That address belongs to another sign-in attempt; run the command again and use the new address.",
              file=sys.stderr)
        return None
    code = (query.get("code") or [""])[0]
    if not code:
        print("That is not the address Google sent the browser to (it has ?code=... in it).", file=sys.stderr)
        return None
    flow.fetch_token(code=code)
    return flow.credentials


def _account(settings: Settings) -> str:
    try:
        from tools.gdrive.client import Drive

        drive = Drive(settings)
        about = drive.run(drive.service.about().get(fields="user(displayName,emailAddress)"), "checking the account")
        return str((about.get("user") or {}).get("emailAddress") or "")
    except Exception:
        return ""


def check(settings: Settings) -> Check:
    """For --status and `dispatch doctor`: connected, as whom, and does the token work."""
    conn = auth.connection(settings)
    if conn is None:
        if settings.google_client_secrets:
            return ("Google Drive", False, "DISPATCH_GOOGLE_CLIENT_SECRETS is set but Drive is not connected yet: "
                    "run `dispatch connect google` (add --write to allow uploads).")
        return ("Google Drive", True, "not set up (optional): see the README section \u201cGoogle Drive\u201d, then "
                "`dispatch connect google`")
    from tools.registry import ToolError

    try:
        from tools.gdrive.client import Drive

        drive = Drive(settings)
        about = drive.run(drive.service.about().get(fields="user(displayName,emailAddress)"), "checking the sign-in")
    except ToolError as exc:
        return ("Google Drive", False, str(exc))
    account = (about.get("user") or {}).get("emailAddress") or conn.account or "?"
    mode = "read and upload" if conn.can_write else "read-only (`dispatch connect google --write` allows uploads)"
    where = "the system keyring" if conn.storage == "keyring" else str(auth.token_file(settings))
    return ("Google Drive", True, f"connected as {account}, {mode}; token in {where}, works")


def disconnect(settings: Settings) -> int:
    try:
        info = auth.load_token(settings)
    except auth.NotConnected:
        auth.forget(settings)
        print("Google Drive was not connected; nothing to do.")
        return 0
    token = info.get("refresh_token") or info.get("token") or ""
    revoked = False
    try:
        data = urllib.parse.urlencode({"token": token}).encode()
        request = urllib.request.Request(auth.revoke_url(settings), data=data, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=20):
            revoked = True
    except urllib.error.HTTPError as exc:
        revoked = exc.code == 400  # already revoked or expired at Google: nothing left to revoke
    except OSError:
        revoked = False
    auth.forget(settings)
    if revoked:
        print("Disconnected: the token was revoked at Google and removed from this computer.")
        return 0
    print("Removed the token from this computer, but could not reach Google to revoke it. Remove Dispatch under "
          "myaccount.google.com -> Security -> Third-party apps & services to revoke it there too.")
    return 1
