"""The Google Drive tools through the real google-api-python-client and google-auth,
against the loopback fake of Drive v3 and Google's token endpoint
(tests/fakes/google_api.py): search, every export type, a Sheet with several tabs,
paging, downloads, errors and retries, token refresh and revocation, and where the
token is kept."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import keyring
import pytest

from tests.drive_helpers import (  # noqa: F401  (fixtures)
    DOC, SHEET, SLIDES, XLSX, MemoryKeyring, connect, dctx, drive_settings, google, no_os_keyring, tracker_xlsx,
    waits)
from tests.fakes.google_api import DOCX, PPTX
from tests.office_files import make_pdf, make_pptx
from tools import drive
from tools.catalogue import default_registry
from tools.gdrive import auth
from tools.registry import ToolError

DAY = 86400


def test_search_by_name_across_my_drive_shared_drives_and_shared_with_me(dctx, google) -> None:
    marketing = google.add_folder("Marketing")
    archive = google.add_folder("Archive", parent=marketing.id)
    tracker = google.add("Campaign tracker", SHEET, parent=marketing.id, modified=time.time() - DAY)
    old = google.add("campaign tracker 2023", SHEET, parent=archive.id, modified=time.time() - 300 * DAY)
    growth = google.add_shared_drive("Growth team")
    q3 = google.add_folder("Q3", parent=growth)
    shared_drive_copy = google.add("Campaign tracker Q3", SHEET, parent=q3.id, modified=time.time() - 2 * DAY)
    from_ann = google.add("Campaign tracker (Ann)", SHEET, parent=None, owner=("Ann Roe", "ann@example.com"),
                          modified=time.time() - 3 * DAY)
    google.add("Budget", SHEET, parent=marketing.id)

    out = drive.drive_search(dctx, name="campaign tracker")
    lines = out.splitlines()
    assert lines[0] == "4 file(s) in Drive (names are as their authors wrote them):"
    names = [lines[i].split("  (")[0] for i in range(1, len(lines), 3)]
    assert names == ["Campaign tracker", "Campaign tracker Q3", "Campaign tracker (Ann)", "campaign tracker 2023"]
    assert lines[1].startswith("Campaign tracker  (Google Sheet, modified ") and "owner Sam Lee <sam@example.com>" in lines[1]
    assert lines[2] == "    path: My Drive/Marketing/Campaign tracker"
    assert lines[3] == f"    id: {tracker.id}  link: https://drive.google.com/file/d/{tracker.id}/view?usp=drivesdk"
    assert lines[5] == "    path: Shared drives/Growth team/Q3/Campaign tracker Q3" and "owner a shared drive" in lines[4]
    assert lines[8] == "    path: Shared with me/Campaign tracker (Ann)" and "Ann Roe <ann@example.com>" in lines[7]
    assert lines[11] == "    path: My Drive/Marketing/Archive/campaign tracker 2023"
    assert {shared_drive_copy.id, from_ann.id, old.id} <= {ln.split()[1] for ln in lines if ln.strip().startswith("id:")}
    # What went over the wire: Drive's q grammar, every drive, newest first.
    params = google.lists()[0]
    assert params["q"] == ["trashed = false and name contains 'campaign' and name contains 'tracker'"]
    assert params["corpora"] == ["allDrives"] and params["includeItemsFromAllDrives"] == ["true"]
    assert params["supportsAllDrives"] == ["true"] and params["orderBy"] == ["modifiedTime desc"]


def test_search_by_text_folder_owner_type_and_dates(dctx, google) -> None:
    reports = google.add_folder("Reports")
    google.add("June recap", DOC, parent=reports.id, text="signups were off pace in week 24",
               modified=time.time() - 5 * DAY, exports={})
    google.add("May recap", DOC, parent=reports.id, text="all on pace", modified=time.time() - 40 * DAY)
    google.add("Deck", SLIDES, parent=reports.id, text="off pace", owner=("Ann Roe", "ann@example.com"))
    google.add("Elsewhere", DOC, text="off pace")

    by_text = drive.drive_search(dctx, text="off pace", folder="Reports")
    assert "June recap" in by_text and "Deck" in by_text and "May recap" not in by_text and "Elsewhere" not in by_text
    list_call = google.lists()[-1]
    assert "orderBy" not in list_call, "Drive refuses orderBy with fullText"
    assert list_call["q"][0] == f"trashed = false and fullText contains 'off pace' and '{reports.id}' in parents"

    assert "June recap" in drive.drive_search(dctx, owner="me", type="doc", modified_after=time.strftime(
        "%Y-%m-%d", time.localtime(time.time() - 10 * DAY)))
    assert "May recap" not in drive.drive_search(dctx, owner="me", type="doc", modified_after=time.strftime(
        "%Y-%m-%d", time.localtime(time.time() - 10 * DAY)))
    assert "Deck" in drive.drive_search(dctx, owner="ann@example.com")
    assert drive.drive_search(dctx, name="nothing like it") == "No files in Drive match."
    with pytest.raises(ToolError, match="Give something to look for"):
        drive.drive_search(dctx)
    with pytest.raises(ToolError, match="owner must be an email address"):
        drive.drive_search(dctx, owner="Ann")
    with pytest.raises(ToolError, match="date like 2024-05-31"):
        drive.drive_search(dctx, modified_after="last week")
    with pytest.raises(ToolError, match="no Drive folder called 'Nowhere'"):
        drive.drive_search(dctx, name="x", folder="Nowhere")


def test_a_google_doc_reads_as_markdown_and_pages_like_read_text(dctx, google) -> None:
    body = "# Plan\n\n" + "\n".join(f"- item {i}: " + "x" * 60 for i in range(600))
    doc = google.add("Plan", DOC, exports={"text/markdown": body.encode()})
    first = drive.drive_read(dctx, doc.id)
    assert first.startswith("Drive file 'Plan' (Google Doc, modified ") and drive.UNTRUSTED in first.splitlines()[0]
    assert "# Plan\n\n- item 0: " in first
    assert first.endswith(f"[... more follows. Read the next page with offset={drive.MAX_READ_CHARS}.]")
    second = drive.drive_read(dctx, f"https://docs.google.com/document/d/{doc.id}/edit", offset=drive.MAX_READ_CHARS)
    assert body[drive.MAX_READ_CHARS:drive.MAX_READ_CHARS + 50] in second
    exports = google.calls(f"/files/{doc.id}/export")
    assert len(exports) == 1 and exports[0][2]["mimeType"] == ["text/markdown"], "page 2 came from the cache"
    assert "nothing after offset" in drive.drive_read(dctx, doc.id, offset=len(body) + 10)


def test_a_sheet_reads_every_tab_as_tables_with_its_formats(dctx, google, tmp_path) -> None:
    sheet = google.add("Campaign tracker", SHEET, exports={XLSX: tracker_xlsx()})
    out = drive.drive_read(dctx, sheet.id)
    assert "## Sheet: Weekly" in out and "## Sheet: Notes" in out and "## Sheet: Targets" in out
    assert out.index("## Sheet: Weekly") < out.index("## Sheet: Notes") < out.index("## Sheet: Targets")
    assert "| Campaign | Week | Spend | Signups | Target | Pace |" in out
    assert "| Retargeting | 24 | 820 | 41 | 80 | 51.25% |" in out
    assert "| Spring launch | 24 | 1500.25 | 180 | 200 | 90% |" in out
    # The same reader as a local workbook: identical tables.
    from tools.documents import readers

    local = tmp_path / "same.xlsx"
    local.write_bytes(tracker_xlsx())
    assert readers.convert(local) in out
    assert google.calls(f"/files/{sheet.id}/export")[0][2]["mimeType"] == [XLSX]


def test_slides_pdf_word_and_text_files_read_through_the_document_readers(dctx, google, tmp_path) -> None:
    deck = google.add("Kick-off", SLIDES, exports={PPTX: make_pptx(tmp_path / "k.pptx").read_bytes()})
    out = drive.drive_read(dctx, deck.id)
    assert "## Slide 1 of 3: Kick-off" in out and "Notes: Mention the budget." in out and "| Users | 4200 |" in out
    pdf = google.add("Statement.pdf", "application/pdf",
                     content=make_pdf(tmp_path / "s.pdf", ["Balance 1,234.56", "Page two"]).read_bytes())
    assert "## Page 1 of 2\n\nBalance 1,234.56" in drive.drive_read(dctx, pdf.id)
    import docx

    d = docx.Document()
    d.add_heading("Minutes", 1)
    d.add_paragraph("We agreed.")
    d.save(tmp_path / "m.docx")
    word = google.add("Minutes.docx", DOCX, content=(tmp_path / "m.docx").read_bytes())
    assert "# Minutes\n\nWe agreed." in drive.drive_read(dctx, word.id)
    csv = google.add("numbers.csv", "text/csv", content=b"week,spend\n24,1500\n")
    assert drive.drive_read(dctx, csv.id).endswith("week,spend\n24,1500\n")
    media = google.calls(f"/files/{csv.id}")
    assert any(p.get("alt") == ["media"] for _, _, p in media)
    zipfile_ = google.add("photos.zip", "application/zip", content=b"PK\x03\x04")
    with pytest.raises(ToolError, match="not a document or text. Copy it with drive_download"):
        drive.drive_read(dctx, zipfile_.id)
    folder = google.add_folder("Stuff")
    with pytest.raises(ToolError, match="is a folder"):
        drive.drive_read(dctx, folder.id)
    form = google.add("Survey", "application/vnd.google-apps.form")
    with pytest.raises(ToolError, match="Google Form, which Drive cannot export"):
        drive.drive_read(dctx, form.id)


def test_export_over_drives_10_mb_limit_says_so_without_retrying(dctx, google) -> None:
    big = google.add("Huge log", DOC, exports={"text/markdown": b"x" * (10 * 1024 * 1024 + 1)})
    with pytest.raises(ToolError, match="too large for Drive to export \\(Drive exports up to 10 MB\\)"):
        drive.drive_read(dctx, big.id)
    assert len(google.calls(f"/files/{big.id}/export")) == 1


def test_unknown_file_and_no_permission_are_sentences_not_retries(dctx, google, waits) -> None:
    with pytest.raises(ToolError, match="Drive has no such file .* or the owner's account cannot see it"):
        drive.drive_read(dctx, "1DoesNotExist00000000")
    with pytest.raises(ToolError, match="not a Drive file id or link"):
        drive.drive_read(dctx, "the tracker")
    doc = google.add("Locked", DOC, exports={"text/markdown": b"secret"})
    google.fail(f"/files/{doc.id}", 403, "insufficientFilePermissions", domain="global",
                message=f"The user does not have sufficient permissions for file {doc.id}.")
    with pytest.raises(ToolError, match="may not do that .* sufficient permissions"):
        drive.drive_read(dctx, doc.id)
    assert waits == []


@pytest.mark.parametrize("status,reason", [(403, "userRateLimitExceeded"), (403, "rateLimitExceeded"),
                                           (429, "rateLimitExceeded")])
def test_rate_limits_are_retried_with_exponential_backoff(dctx, google, waits, status, reason) -> None:
    google.add("Campaign tracker", SHEET)
    google.fail("/drive/v3/files", status, reason, times=3)
    assert "Campaign tracker" in drive.drive_search(dctx, name="campaign")
    assert len(waits) == 3
    assert all(0 <= w <= 2 ** (n + 1) for n, w in enumerate(waits)), waits  # random * 2**retry
    assert len(google.lists()) == 4


def test_a_rate_limit_that_lasts_gives_up_with_a_sentence(dctx, google, waits) -> None:
    google.fail("/drive/v3/files", 403, "userRateLimitExceeded", times=100)
    with pytest.raises(ToolError, match="rate-limiting Dispatch; searching Drive was tried 5 times"):
        drive.drive_search(dctx, name="x")
    assert len(waits) == 4


def test_an_expired_access_token_is_refreshed_and_the_new_one_saved(dctx, google) -> None:
    google.add("Campaign tracker", SHEET)
    before = auth.load_token(dctx.settings)["token"]
    google.expire_access_tokens()
    assert "Campaign tracker" in drive.drive_search(dctx, name="campaign")
    after = auth.load_token(dctx.settings)
    assert after["token"] != before and after["token"] in google.access
    assert google.calls("/token", "POST"), "google-auth refreshed at DISPATCH_GOOGLE_TOKEN_URL"
    refreshes = len(google.calls("/token"))
    drive.drive_search(dctx, name="campaign")
    assert len(google.calls("/token")) == refreshes, "the saved token is used, not refreshed again"


def test_a_revoked_token_says_how_to_reconnect(dctx, google) -> None:
    google.revoke_all()
    with pytest.raises(ToolError) as err:
        drive.drive_search(dctx, name="campaign")
    assert "revoked" in str(err.value) and "`dispatch connect google`" in str(err.value)


def test_downloads_land_in_the_workspace_in_office_form(dctx, google) -> None:
    data = tracker_xlsx()  # once: a workbook records the second it was written
    sheet = google.add("Campaign tracker", SHEET, exports={XLSX: data})
    out = drive.drive_download(dctx, sheet.id)
    local = dctx.settings.workspace / "drive" / "Campaign tracker.xlsx"
    assert out.startswith(f"Copied 'Campaign tracker' from Drive to {local} (") and local.read_bytes() == data
    again = drive.drive_download(dctx, sheet.id)
    assert "Campaign tracker (2).xlsx" in again and local.read_bytes() == data
    assert (local.parent / "Campaign tracker (2).xlsx").read_bytes() == data
    pdf = google.add("scan.pdf", "application/pdf", content=b"%PDF-1.4 scan")
    assert drive.drive_download(dctx, pdf.id, name="statement").split(" (")[0].endswith("statement.pdf")
    assert (dctx.settings.workspace / "drive" / "statement.pdf").read_bytes() == b"%PDF-1.4 scan"


def test_offered_only_when_connected_and_marked_untrusted(tmp_path, google) -> None:
    settings = drive_settings(tmp_path, google)
    reg = default_registry()
    names = ["drive_search", "drive_read", "drive_download", "drive_upload"]
    assert all(not reg.get(n).ready(settings) for n in names)
    with pytest.raises(ToolError, match="not connected. Run `dispatch connect google`"):
        drive.drive_search(type("Ctx", (), {"settings": settings})(), name="x")
    connect(settings, google)
    assert all(reg.get(n).ready(settings) for n in names)
    assert [reg.get(n).connector for n in names] == ["google_drive"] * 4
    assert [reg.get(n).untrusted for n in names] == [True, True, True, False]
    assert [str(reg.get(n).effect.value) for n in names] == ["read", "read", "read", "send"]


def test_without_a_keyring_the_token_is_a_file_only_the_owner_can_read(tmp_path, google) -> None:
    settings = drive_settings(tmp_path, google)
    info = connect(settings, google)
    path = auth.token_file(settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["refresh_token"] == info["refresh_token"]
    marker = json.loads(auth.marker_path(settings).read_text())
    assert marker == {"account": "sam@example.com", "scopes": sorted([auth.READ_SCOPE, auth.WRITE_SCOPE]),
                      "storage": "file"}
    assert info["refresh_token"] not in auth.marker_path(settings).read_text()


def test_with_a_keyring_the_token_goes_there_and_no_file_is_left(tmp_path, google) -> None:
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    settings = drive_settings(tmp_path, google)
    info = connect(settings, google, write=False)
    assert not auth.token_file(settings).exists()
    stored = json.loads(ring.items[(auth.KEYRING_SERVICE, str(settings.home))])
    assert stored["refresh_token"] == info["refresh_token"]
    assert auth.connection(settings).storage == "keyring" and not auth.connection(settings).can_write
    google.add("Campaign tracker", SHEET)
    ctx = type("Ctx", (), {"settings": settings})()
    assert "Campaign tracker" in drive.drive_search(ctx, name="campaign")
    auth.forget(settings)
    assert ring.items == {} and not auth.is_connected(settings)


def test_settings_problems_for_google(tmp_path: Path) -> None:
    from tests.helpers import files_settings

    bad = files_settings(tmp_path, DISPATCH_GOOGLE_CLIENT_SECRETS=str(tmp_path / "missing.json"),
                         DISPATCH_GOOGLE_API_URL="http://127.0.0.1:1", DISPATCH_GOOGLE_TOKEN_URL="oauth2")
    problems = " ".join(bad.problems())
    assert "DISPATCH_GOOGLE_CLIENT_SECRETS names" in problems and "must end with /" in problems
    assert "DISPATCH_GOOGLE_TOKEN_URL='oauth2' is not a URL" in problems
    assert not [p for p in files_settings(tmp_path).problems() if "GOOGLE" in p]


def test_a_keyring_that_will_not_answer_is_named_not_mistaken_for_no_token(tmp_path, google) -> None:
    class Locked(MemoryKeyring):
        def get_password(self, service: str, username: str) -> str | None:
            raise RuntimeError("org.freedesktop.Secret.Error.IsLocked")

    ring = Locked()
    keyring.set_keyring(ring)
    settings = drive_settings(tmp_path, google)
    connect(settings, google)
    assert auth.connection(settings).storage == "keyring"
    with pytest.raises(ToolError, match="keyring did not give back the Google sign-in: it may be locked"):
        drive.drive_search(type("Ctx", (), {"settings": settings})(), name="x")
