"""`dispatch connect google`: the installed-app flow of google-auth-oauthlib with PKCE
and a loopback redirect, against the fake token endpoint (which checks the S256
verifier against the challenge the URL carried), then --status, --disconnect and the
doctor's check. The browser is the only thing played by the test: it reads the
address Dispatch printed or opened and "approves" at the fake, as Google's consent
screen would, then follows the redirect."""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from bot.ops import doctor
from bot.ops.cli import main
from tests.drive_helpers import connect, drive_settings, google, no_os_keyring, waits  # noqa: F401  (fixtures)
from tools.gdrive import auth


@pytest.fixture
def secrets_file(tmp_path: Path, google, monkeypatch: pytest.MonkeyPatch) -> Path:
    # oauthlib insists on https for the token endpoint; the fake is plain http on loopback.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    path = tmp_path / "client_secret.json"
    path.write_text(json.dumps({"installed": {
        "client_id": google.client_id, "client_secret": google.client_secret, "project_id": "dispatch-test",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "redirect_uris": ["http://localhost"]}}))
    return path


def consent(google: Any, url: str) -> tuple[str, dict[str, list[str]]]:
    """Google's consent screen: check the request, issue a code, say where the browser goes next."""
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    assert parts.netloc == "accounts.google.com" and q["response_type"] == ["code"]
    assert q["client_id"] == [google.client_id] and q["access_type"] == ["offline"]
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43  # PKCE
    code = google.authorize(scopes=q["scope"][0].split(), challenge=q["code_challenge"][0], method="S256",
                            redirect_uri=q["redirect_uri"][0])
    back = q["redirect_uri"][0] + "?" + urlencode({"state": q["state"][0], "code": code, "scope": q["scope"][0]})
    return back, q


def test_no_browser_prints_the_address_and_takes_the_pasted_redirect(tmp_path, google, secrets_file,
                                                                      monkeypatch, capsys) -> None:
    settings = drive_settings(tmp_path, google, DISPATCH_GOOGLE_CLIENT_SECRETS=str(secrets_file))
    monkeypatch.setattr("bot.ops.cli._settings", lambda: settings)
    seen: dict[str, Any] = {}

    def paste(prompt: str) -> str:
        printed = capsys.readouterr().out
        url = next(line for line in printed.splitlines() if line.startswith("https://accounts.google.com/"))
        back, seen["q"] = consent(google, url)
        assert back.startswith("http://localhost:")
        return back

    monkeypatch.setattr("builtins.input", paste)
    assert main(["connect", "google", "--no-browser"]) == 0
    out = capsys.readouterr().out
    assert "Connected Google Drive for sam@example.com: read-only." in out
    assert seen["q"]["scope"] == [auth.READ_SCOPE]
    token = json.loads(auth.token_file(settings).read_text())
    assert token["refresh_token"] in google.refresh and stat.S_IMODE(os.stat(auth.token_file(settings)).st_mode) == 0o600
    assert auth.connection(settings).account == "sam@example.com" and not auth.connection(settings).can_write
    assert token["refresh_token"] not in out and token["token"] not in out  # nothing secret printed
    # The token works for Drive.
    assert "Google Drive: connected as sam@example.com, read-only" in _status(settings, monkeypatch, capsys)


def test_the_browser_flow_with_a_loopback_redirect_asks_for_uploads_with_write(tmp_path, google, secrets_file,
                                                                              monkeypatch, capsys) -> None:
    settings = drive_settings(tmp_path, google, DISPATCH_GOOGLE_CLIENT_SECRETS=str(secrets_file))
    monkeypatch.setattr("bot.ops.cli._settings", lambda: settings)
    asked: dict[str, Any] = {}

    class Browser:
        def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
            back, asked["q"] = consent(google, url)
            # Google redirects the browser to the loopback server Dispatch is about to wait on.
            threading.Thread(target=lambda: urllib.request.urlopen(back, timeout=10).read(), daemon=True).start()
            return True

    monkeypatch.setattr("webbrowser.get", lambda using=None: Browser())
    assert main(["connect", "google", "--write"]) == 0
    assert set(asked["q"]["scope"][0].split()) == {auth.READ_SCOPE, auth.WRITE_SCOPE}
    assert urlsplit(asked["q"]["redirect_uri"][0]).hostname == "localhost"
    assert "read and upload (each upload still waits for your Approve)" in capsys.readouterr().out
    assert auth.connection(settings).can_write


def test_a_narrower_grant_than_asked_is_said_not_failed(tmp_path, google, secrets_file, monkeypatch, capsys) -> None:
    settings = drive_settings(tmp_path, google, DISPATCH_GOOGLE_CLIENT_SECRETS=str(secrets_file))
    monkeypatch.setattr("bot.ops.cli._settings", lambda: settings)

    def paste(prompt: str) -> str:
        url = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("https://"))
        q = parse_qs(urlsplit(url).query)
        code = google.authorize(scopes=[auth.READ_SCOPE], challenge=q["code_challenge"][0], method="S256",
                                redirect_uri=q["redirect_uri"][0])  # the owner unticked "upload"
        return f"{q['redirect_uri'][0]}?state={q['state'][0]}&code={code}&scope={auth.READ_SCOPE}"

    monkeypatch.setattr("builtins.input", paste)
    assert main(["connect", "google", "--write", "--no-browser"]) == 0
    assert "Uploads were not allowed on Google's consent screen" in capsys.readouterr().out
    assert not auth.connection(settings).can_write


def test_a_wrong_paste_or_a_denial_connects_nothing(tmp_path, google, secrets_file, monkeypatch, capsys) -> None:
    settings = drive_settings(tmp_path, google, DISPATCH_GOOGLE_CLIENT_SECRETS=str(secrets_file))
    monkeypatch.setattr("bot.ops.cli._settings", lambda: settings)
    for answer, said in (("http://localhost:1/?error=access_denied", "Google said access_denied"),
                         ("http://localhost:1/?state=forged&code=abc", "another sign-in attempt"),
                         ("4/0Anot-a-real-code", "did not work")):
        monkeypatch.setattr("builtins.input", lambda prompt, a=answer: a)
        assert main(["connect", "google", "--no-browser"]) == 1
        assert said in capsys.readouterr().err
        assert not auth.is_connected(settings)


def test_without_client_secrets_the_walkthrough_is_printed(tmp_path, google, monkeypatch, capsys) -> None:
    settings = drive_settings(tmp_path, google)
    monkeypatch.setattr("bot.ops.cli._settings", lambda: settings)
    assert main(["connect", "google"]) == 2
    err = capsys.readouterr().err
    assert "Desktop app" in err and "DISPATCH_GOOGLE_CLIENT_SECRETS" in err
    web = tmp_path / "web.json"
    web.write_text(json.dumps({"web": {"client_id": "x"}}))
    settings = drive_settings(tmp_path, google, DISPATCH_GOOGLE_CLIENT_SECRETS=str(web))
    monkeypatch.setattr("bot.ops.cli._settings", lambda: settings)
    assert main(["connect", "google"]) == 2
    assert "a \u201cweb\u201d OAuth client; Dispatch needs a \u201cDesktop app\u201d client" in capsys.readouterr().err


def _status(settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> str:
    monkeypatch.setattr("bot.ops.cli._settings", lambda: settings)
    main(["connect", "google", "--status"])
    return capsys.readouterr().out


def test_status_and_disconnect_revoke_at_google_and_forget_here(tmp_path, google, monkeypatch, capsys) -> None:
    settings = drive_settings(tmp_path, google)
    assert "not set up (optional)" in _status(settings, monkeypatch, capsys)
    info = connect(settings, google, write=False)
    assert "connected as sam@example.com, read-only (`dispatch connect google --write` allows uploads)" in \
        _status(settings, monkeypatch, capsys)
    assert main(["connect", "google", "--disconnect"]) == 0
    assert "revoked at Google and removed from this computer" in capsys.readouterr().out
    assert info["refresh_token"] not in google.refresh and google.calls("/revoke", "POST")
    assert not auth.token_file(settings).exists() and not auth.is_connected(settings)
    assert main(["connect", "google", "--disconnect"]) == 0
    assert "was not connected" in capsys.readouterr().out


async def test_doctor_says_when_the_token_works_and_when_it_was_revoked(tmp_path, google) -> None:
    settings = drive_settings(tmp_path, google)
    connect(settings, google)
    name, ok, message = await doctor.check_google(settings)
    assert ok and message.startswith("connected as sam@example.com, read and upload; token in ")
    google.revoke_all()
    name, ok, message = await doctor.check_google(settings)
    assert name == "Google Drive" and not ok and "`dispatch connect google`" in message and "revoked" in message
    secret = json.loads(auth.token_file(settings).read_text())["refresh_token"]
    text, _ = doctor.report([(name, ok, message)])
    assert secret not in text
