"""Shared pieces of the Google Drive tests: the loopback fake of Drive and Google's
token endpoint, settings pointed at it, a connected owner, no real keyring, and
backoff waits recorded instead of slept."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from store.config import Settings
from store.db import Store
from tests.conftest import make_settings
from tests.fakes.google_api import XLSX, FakeGoogle
from tools.gdrive import auth, client
from tools.registry import ToolContext


class MemoryKeyring(KeyringBackend):
    """A keyring that lives in this process: the real `keyring` API, no OS store touched."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


@pytest.fixture(autouse=True)
def no_os_keyring() -> Any:
    """Never touch the keyring of the machine the tests run on: the file store is used,
    unless a test installs a MemoryKeyring."""
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


@pytest.fixture(autouse=True)
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff waits googleapiclient asks for, recorded instead of slept."""
    seen: list[float] = []
    monkeypatch.setattr(client, "SLEEP", seen.append)
    return seen


@pytest.fixture
def google() -> Any:
    fake = FakeGoogle()
    fake.start_sync()
    yield fake
    fake.stop_sync()


def drive_settings(tmp_path: Path, google: FakeGoogle, model_url: str = "http://127.0.0.1:9/",
                   roots: Path | None = None, **extra: Any) -> Settings:
    return make_settings(tmp_path, model_url, roots, DISPATCH_GOOGLE_API_URL=google.url,
                         DISPATCH_GOOGLE_TOKEN_URL=google.token_url, **extra)


def connect(settings: Settings, google: FakeGoogle, *, write: bool = True) -> dict[str, Any]:
    """As if the owner had run `dispatch connect google [--write]`."""
    scopes = {auth.READ_SCOPE} | ({auth.WRITE_SCOPE} if write else set())
    info = google.grant(scopes)
    auth.save_token(settings, json.dumps(info), account="sam@example.com", scopes=sorted(scopes))
    return info


@pytest.fixture
def dctx(tmp_path: Path, google: FakeGoogle) -> Any:
    roots = tmp_path / "files"
    roots.mkdir()
    settings = drive_settings(tmp_path, google, roots=roots)
    connect(settings, google)
    store = Store(settings.db_url)
    yield ToolContext(settings, store, task_id=1, origin="console:local")
    store.close()


def tracker_xlsx(rows: list[list[Any]] | None = None) -> bytes:
    """A campaign tracker as Google exports a Sheet: .xlsx with cached values, percent
    formats, and several tabs."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Weekly"
    ws.append(["Campaign", "Week", "Spend", "Signups", "Target", "Pace"])
    for row in rows or [["Spring launch", 24, 1500.25, 180, 200, 0.9],
                        ["Retargeting", 24, 820, 41, 80, 0.5125],
                        ["Newsletter", 24, 120, 66, 60, 1.1]]:
        ws.append(row)
    for r in range(2, ws.max_row + 1):
        ws.cell(r, 6).number_format = "0.0%"
    notes = wb.create_sheet("Notes")
    notes.append(["Off pace means under 80% of target."])
    targets = wb.create_sheet("Targets")
    targets.append(["Quarter", "Signups"])
    targets.append(["Q2", 2400])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


SHEET = "application/vnd.google-apps.spreadsheet"
DOC = "application/vnd.google-apps.document"
SLIDES = "application/vnd.google-apps.presentation"
__all__ = ["XLSX", "MemoryKeyring", "connect", "dctx", "drive_settings", "google", "no_os_keyring", "tracker_xlsx",
           "waits", "SHEET", "DOC", "SLIDES"]
