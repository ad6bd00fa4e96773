"""Phone in, phone out, through the real python-telegram-bot client and the fake Bot API:
a real voice note transcribed and run, a file from the phone read by a tool, a download
that fails with a 5xx retried, and one notification per request."""

from __future__ import annotations

import re
from typing import Any

import pytest
import pytest_asyncio

from agent import transcribe as tr
from tests.conftest import TG_OWNER, make_settings, serving, start_telegram_bot, telegram_values, until
from tests.fakes.transcribe_api import FakeTranscribe
from tests.test_transcribe import make_voice_note

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SENTENCE = "Please list the files in my documents folder."


@pytest_asyncio.fixture
async def stt() -> Any:
    async with serving(FakeTranscribe(key="sk-stt", text=SENTENCE)) as server:
        yield server


@pytest_asyncio.fixture
async def bot(tmp_path, fake, tg_fake, roots, stt, monkeypatch) -> Any:
    monkeypatch.setattr(tr, "RETRY_DELAYS", (0.01, 0.01))
    settings = make_settings(tmp_path, fake.url, roots, DISPATCH_TRANSCRIBE_URL=stt.url,
                             DISPATCH_TRANSCRIBE_KEY="sk-stt", **telegram_values(tg_fake))
    b = await start_telegram_bot(settings)
    yield b
    await b.stop()


def notifying(tg_fake) -> list[str]:
    return [c.params.get("text", "") for c in tg_fake.calls_to("sendMessage")
            if not c.params.get("disable_notification")]


async def test_a_real_voice_note_is_heard_then_run(bot, fake, tg_fake, stt, tmp_path):
    note = make_voice_note(tmp_path)
    fake.reply("Here are your files: none yet.")
    tg_fake.send_voice(note.read_bytes(), duration=4)
    await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "Here are your files: none yet.")
    upload = stt.uploads[-1]
    assert upload.is_ogg_opus  # the bytes Telegram had, as a valid OGG/Opus file
    heard = [c for c in tg_fake.calls_to("sendMessage") if "Heard:" in c.params.get("text", "")]
    assert heard and heard[0].params["text"].endswith(SENTENCE) and heard[0].params.get("disable_notification")
    request = fake.requests[-1]["messages"][-1]
    assert SENTENCE in str(request["content"])  # the transcript is the request


async def test_a_csv_from_the_phone_is_read_even_after_a_5xx(bot, fake, tg_fake):
    tg_fake.fail_next("download", status=502)  # the file server fails once: tried again

    def model(request: dict) -> dict:
        """First turn: read the file the task was handed; then answer."""
        if len(fake.requests) > 1:
            return {"text": "42 orders: north 12, south 30."}
        first = " ".join(b.get("text", "") for b in request["messages"][-1]["content"] if isinstance(b, dict))
        path = re.search(r"(/[^\n]*?orders Q3\.csv)", first).group(1)  # the saved path, as the task got it
        return {"tool_uses": [("read_text", {"path": path})]}

    fake.respond_with(model)
    tg_fake.send_document(b"region,orders\nnorth,12\nsouth,30\n", "orders Q3.csv", caption="summarise this")
    await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text", "").startswith("42 orders"))
    result = [b for b in fake.requests[-1]["messages"][-1]["content"] if b.get("type") == "tool_result"][0]
    assert "south" in str(result["content"]) and not result.get("is_error")  # the inbox is readable


async def test_a_draft_notifies_once_with_its_card(bot, fake, tg_fake, sent):
    fake.reply("Drafting.", tool_uses=[("send_note", {"to": "bob@example.com", "text": "Hi"})])
    fake.reply("The note is waiting for your approval.")
    tg_fake.send_message("send bob a note")
    await tg_fake.wait_for_call("sendMessage", where=lambda c: "waiting for your approval" in c.params.get("text", ""))
    loud = notifying(tg_fake)
    assert len(loud) == 1 and "Draft #1" in loud[0]  # the card; the answer after it came silently


async def test_one_notification_per_request(bot, fake, tg_fake):
    fake.reply("Working.", tool_uses=[("list_folder", {"path": "."})])
    fake.reply("Done: nothing there.")
    tg_fake.send_message("what is in my folder?")
    await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "Done: nothing there.")
    await until(lambda: tg_fake.calls_to("deleteMessage") or tg_fake.calls_to("editMessageText"), what="status closed")
    assert notifying(tg_fake) == ["Done: nothing there."]  # the status line came silently
