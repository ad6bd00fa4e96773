"""Google Drive through the real Core: the gate makes every upload a draft, the
approval machinery uploads it exactly once, and the seed's own job end to end — the
campaign tracker, a Google Sheet, becomes the recap deck in the owner's local
template, sent to their chat with the off-pace rows flagged. The real anthropic
client against the scripted fake model; the real Drive client against the fake Drive."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest_asyncio

from agent import approvals
from agent.channel import Inbound
from tests.conftest import close_core, make_core, task_state, until
from tests.drive_helpers import (  # noqa: F401  (fixtures)
    SHEET, XLSX, connect, drive_settings, google, no_os_keyring, tracker_xlsx, waits)
from tests.office_files import make_template, slide_texts


@pytest_asyncio.fixture
async def dcore(tmp_path: Path, fake, google) -> Any:
    roots = tmp_path / "files"
    roots.mkdir()
    settings = drive_settings(tmp_path, google, model_url=fake.url, roots=roots)
    connect(settings, google)
    core, channel = await make_core(settings)
    core.channel = channel  # type: ignore[attr-defined]
    yield core
    await close_core(core)


async def run(core: Any, text: str) -> int:
    task = await core.submit(Inbound(text, "console:local"))
    await until(lambda: task_state(core.store, task.id) not in ("queued", "running"), timeout=30, what="the task")
    assert task_state(core.store, task.id) == "done"
    return task.id


def results(fake: Any, request: int) -> list[dict[str, Any]]:
    return fake.requests[request]["messages"][-1]["content"]


def a_deck(core: Any, name: str = "Weekly recap.pptx", data: bytes = b"PK\x03\x04 deck \r\n\x00\xff" * 100) -> Path:
    path = core.settings.outbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def draft_upload(core: Any, fake: Any, args: dict[str, Any]) -> Any:
    fake.reply(tool_uses=[("drive_upload", args)])
    fake.reply("The upload is waiting for your approval.")
    await run(core, "put the recap in the Recaps folder")
    rows = approvals.pending(core.store)
    assert len(rows) == 1 and rows[0].tool == "drive_upload" and rows[0].connector == "google_drive"
    return rows[0]


async def test_an_upload_is_a_draft_until_approved_then_goes_up_exactly_once(dcore, fake, google) -> None:
    recaps = google.add_folder("Recaps")
    deck = a_deck(dcore)
    row = await draft_upload(dcore, fake, {"path": str(deck), "folder": "Recaps"})
    assert google.uploads == [] and not google.calls("/upload/")
    assert results(fake, 1)[0]["content"].startswith(f"Draft #{row.id} is waiting for the owner's approval")
    assert row.preview == (f"Upload to Google Drive\nFile: {deck} (1.4 KB)\nTo folder: My Drive/Recaps\n"
                           "As: Weekly recap.pptx\nEveryone the folder is shared with will be able to see it.")
    stored = json.loads(row.args_json)
    assert stored["folder_id"] == recaps.id and stored["target_id"] == "" and stored["size"] == 1400

    decisions = await asyncio.gather(*(dcore.approve(row.id, f"device{i}") for i in range(4)))
    assert sum(d.won for d in decisions) == 1
    final = approvals.get(dcore.store, row.id)
    assert final.state == "sent" and final.outcome.startswith("Uploaded Weekly recap.pptx to My Drive/Recaps as a new file: https://drive.google.com/file/d/")
    assert len(google.uploads) == 1 and google.uploads[0]["content"] == deck.read_bytes()
    assert google.uploads[0]["parent"] == recaps.id and google.uploads[0]["name"] == "Weekly recap.pptx"
    again = await dcore.approve(row.id, "console:sam")
    assert not again.won and len(google.uploads) == 1
    assert [p for m, p, _ in google.requests if p.startswith("/upload/")] == ["/upload/drive/v3/files"]


async def test_a_file_over_5_mb_goes_up_as_a_resumable_upload(dcore, fake, google) -> None:
    google.add_folder("Recaps")
    big = a_deck(dcore, "Board deck.pptx", bytes(range(256)) * (6 * 4096))  # 6 MB
    row = await draft_upload(dcore, fake, {"path": str(big), "folder": "Recaps"})
    assert "(6.0 MB)" in row.preview
    assert (await dcore.approve(row.id, "console:sam")).won
    assert approvals.get(dcore.store, row.id).state == "sent"
    assert len(google.uploads) == 1 and google.uploads[0]["content"] == big.read_bytes()
    sent = [(m, p["uploadType"][0]) for m, path, p in google.requests if path.startswith("/upload/")]
    assert sent[0] == ("POST", "resumable") and [m for m, _ in sent[1:]] == ["PUT"]


async def test_a_taken_name_gets_a_new_one_and_replace_adds_a_revision(dcore, fake, google) -> None:
    recaps = google.add_folder("Recaps")
    existing = google.add("Weekly recap.pptx", "application/octet-stream", parent=recaps.id, content=b"old deck")
    deck = a_deck(dcore)
    beside = await draft_upload(dcore, fake, {"path": str(deck), "folder": recaps.id})
    assert "As: Weekly recap (2).pptx" in beside.preview and "is already there" in beside.preview
    assert (await dcore.approve(beside.id, "console:sam")).won
    assert google.uploads[-1]["name"] == "Weekly recap (2).pptx" and existing.content == b"old deck"

    revision = await draft_upload(dcore, fake, {"path": str(deck), "folder": "Recaps", "replace": True})
    assert "Replaces the existing Weekly recap.pptx there as a new revision" in revision.preview
    assert (await dcore.approve(revision.id, "console:sam")).won
    assert approvals.get(dcore.store, revision.id).state == "sent", approvals.get(dcore.store, revision.id).outcome
    assert existing.content == deck.read_bytes() and existing.revisions == [b"old deck"] and existing.version == 2
    assert google.uploads[-1]["revision"] and google.calls(f"/upload/drive/v3/files/{existing.id}", "PATCH")
    assert "as a new revision of the existing file" in approvals.get(dcore.store, revision.id).outcome


async def test_a_connection_lost_after_the_upload_is_unknown_and_never_resent(dcore, fake, google) -> None:
    google.add_folder("Recaps")
    row = await draft_upload(dcore, fake, {"path": str(a_deck(dcore)), "folder": "Recaps"})
    google.drop_next_upload = True
    await dcore.approve(row.id, "console:sam")
    final = approvals.get(dcore.store, row.id)
    assert final.state == "unknown" and "may or may not have been stored. Look in Drive" in final.outcome
    assert len(google.uploads) == 1 and len(google.calls("/upload/")) == 1


async def test_a_server_error_on_upload_is_unknown_a_rate_limit_is_retried(dcore, fake, google, waits) -> None:
    google.add_folder("Recaps")
    first = await draft_upload(dcore, fake, {"path": str(a_deck(dcore)), "folder": "Recaps"})
    google.fail("/upload/", 500, "backendError", domain="global")
    await dcore.approve(first.id, "console:sam")
    assert approvals.get(dcore.store, first.id).state == "unknown" and google.uploads == []
    second = await draft_upload(dcore, fake, {"path": str(a_deck(dcore, "b.pptx")), "folder": "Recaps"})
    google.fail("/upload/", 403, "userRateLimitExceeded", times=2)
    await dcore.approve(second.id, "console:sam")
    assert approvals.get(dcore.store, second.id).state == "sent" and len(google.uploads) == 1
    assert len(waits) == 2 and len(google.calls("/upload/")) == 4


async def test_an_expired_token_at_upload_is_refreshed_and_the_file_goes_up_once(dcore, fake, google) -> None:
    google.add_folder("Recaps")
    row = await draft_upload(dcore, fake, {"path": str(a_deck(dcore)), "folder": "Recaps"})
    google.expire_access_tokens()  # the owner approves hours later
    await dcore.approve(row.id, "console:sam")
    assert approvals.get(dcore.store, row.id).state == "sent" and len(google.uploads) == 1
    calls = [(m, p) for m, p, _ in google.requests if p.startswith("/upload/") or p == "/token"]
    # Refused with 401 (nothing stored), the token refreshed, then sent once.
    assert calls == [("POST", "/upload/drive/v3/files"), ("POST", "/token"), ("POST", "/upload/drive/v3/files")]


async def test_a_file_changed_after_the_draft_is_not_uploaded(dcore, fake, google) -> None:
    google.add_folder("Recaps")
    deck = a_deck(dcore)
    row = await draft_upload(dcore, fake, {"path": str(deck), "folder": "Recaps"})
    deck.write_bytes(b"something else entirely")
    await dcore.approve(row.id, "console:sam")
    final = approvals.get(dcore.store, row.id)
    assert final.state == "failed" and "changed after the draft was approved" in final.outcome
    assert google.uploads == []


async def test_read_only_drive_refuses_an_upload_before_any_card(tmp_path, fake, google) -> None:
    roots = tmp_path / "files"
    roots.mkdir()
    settings = drive_settings(tmp_path, google, model_url=fake.url, roots=roots)
    connect(settings, google, write=False)
    core, channel = await make_core(settings)
    try:
        deck = a_deck(core)
        fake.reply(tool_uses=[("drive_upload", {"path": str(deck)})])
        fake.reply("Drive is read-only.")
        await run(core, "upload the recap")
        result = results(fake, 1)[0]
        assert result["is_error"] and "connect google --write" in result["content"]
        assert approvals.pending(core.store) == [] and channel.cards == [] and google.uploads == []
    finally:
        await close_core(core)


async def test_drive_tools_are_offered_only_once_connected(tmp_path, fake, google) -> None:
    settings = drive_settings(tmp_path, google, model_url=fake.url)
    core, _ = await make_core(settings)
    try:
        fake.reply("Hello.")
        await run(core, "hi")
        assert not [t for t in fake.requests[0]["tools"] if t["name"].startswith("drive_")]
        connect(settings, google)
        # Connected, Drive's tools are found on demand (find_tools), so the first request stays light.
        fake.reply(tool_uses=[("find_tools", {"query": "google drive"})])
        fake.reply("Hello again.")
        await run(core, "hi")
        assert not [t for t in fake.requests[1]["tools"] if t["name"].startswith("drive_")]
        offered = sorted(t["name"] for t in fake.requests[2]["tools"] if t["name"].startswith("drive_"))
        assert offered == ["drive_download", "drive_read", "drive_search", "drive_upload"]
    finally:
        await close_core(core)


async def test_the_campaign_tracker_in_drive_becomes_the_recap_deck_on_the_phone(dcore, fake, google) -> None:
    """The seed: "pull last week's numbers from the campaign tracker in Google Drive, build the
    recap deck in our template, and flag anything off pace"."""
    marketing = google.add_folder("Marketing")
    sheet = google.add("Campaign tracker", SHEET, parent=marketing.id, exports={XLSX: tracker_xlsx()})
    roots = dcore.settings.roots[0]
    (roots / "Templates").mkdir()
    template = make_template(roots / "Templates" / "Recap template.pptx")
    deck = dcore.settings.outbox / "Weekly recap.pptx"

    fake.reply("Looking for the tracker in Drive.", tool_uses=[("drive_search", {"name": "campaign tracker"})])
    fake.reply(tool_uses=[("drive_read", {"file": sheet.id})])
    fake.reply(tool_uses=[("make_deck", {"name": "Weekly recap", "template": str(template), "slides": [
        {"title": "Weekly recap", "subtitle": "Week 24"},
        {"title": "Off pace", "bullets": ["Retargeting: 41 of 80 signups (51.25% of target)"],
         "notes": "Under 80% of target is off pace (Notes tab)."},
        {"title": "Pace by campaign", "table": [["Campaign", "Signups", "Target", "Pace"],
                                                 ["Spring launch", 180, 200, "90%"],
                                                 ["Retargeting \u26a0", 41, 80, "51.25%"],
                                                 ["Newsletter", 66, 60, "110%"]]},
    ]})])
    fake.reply(tool_uses=[("send_file", {"path": str(deck), "caption": "Weekly recap, week 24 (1 campaign off pace)"})])
    fake.reply("Sent: the week 24 recap. Retargeting is off pace at 51.25% of its signup target.")
    await run(dcore, "Pull last week's numbers from the campaign tracker in Google Drive, build the recap deck "
                     "in our template, and flag anything off pace")

    found = results(fake, 1)[0]["content"]
    assert f"    path: My Drive/Marketing/Campaign tracker\n    id: {sheet.id}" in found
    read = results(fake, 2)[0]["content"]
    assert read.startswith("Drive file 'Campaign tracker' (Google Sheet, ") and "not by the owner" in read
    assert "| Retargeting | 24 | 820 | 41 | 80 | 51.25% |" in read and "## Sheet: Notes" in read
    assert "Off pace means under 80% of target." in read
    made = results(fake, 3)[0]
    assert not made["is_error"] and made["content"].startswith(f"Saved {deck}")
    sent = results(fake, 4)[0]
    assert not sent["is_error"] and sent["content"].endswith(": sent")
    assert dcore.channel.files == [deck] and dcore.channel.texts[-1].startswith("Sent: the week 24 recap.")
    slides = slide_texts(deck)
    assert [s["layout"] for s in slides] == ["Acme Cover", "Acme Content", "Acme Title Only"]
    assert slides[1]["title"] == "Off pace" and "Retargeting" in slides[1]["placeholders"][1]
    assert google.uploads == [] and approvals.pending(dcore.store) == []  # nothing left the desktop
