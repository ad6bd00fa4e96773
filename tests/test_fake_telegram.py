"""The fake Telegram server must be faithful to the real python-telegram-bot, or every bot
test built on it lies. Everything here drives it with the real PTB 22.8 over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import io
import time
import warnings
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest
from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import (BadRequest, EndPointNotFound, InvalidToken, NetworkError, RetryAfter,
                            TelegramError)
from telegram.ext import (Application, CallbackQueryHandler, CommandHandler, ContextTypes,
                          MessageHandler, filters)

from tests.conftest import until
from tests.fakes.telegram_api import FakeTelegram, parse_html

TOKEN = "123456:TEST-TOKEN"
# PTB 22 warns on every read of an int duration (retry_after, voice.duration), even inside PTB.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
OWNER = 1001


@pytest.fixture
def tg(tg_fake: FakeTelegram) -> FakeTelegram:
    """The fake Bot API from conftest.py, which answers TOKEN."""
    assert tg_fake.token == TOKEN
    return tg_fake


@contextlib.asynccontextmanager
async def running(tg: FakeTelegram, *handlers: Any) -> AsyncIterator[Application]:
    app = (Application.builder().token(TOKEN).base_url(tg.base_url)
           .base_file_url(tg.base_file_url).build())
    for h in handlers:
        app.add_handler(h)
    errors: list[BaseException] = []

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        errors.append(context.error)  # type: ignore[arg-type]

    app.add_error_handler(on_error)
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert not errors, f"handler errors: {errors!r}"


@contextlib.asynccontextmanager
async def bot_for(tg: FakeTelegram, token: str = TOKEN) -> AsyncIterator[Bot]:
    async with Bot(token, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        yield bot


# -- the happy paths, through a real Application ------------------------------------------


async def test_message_reply_roundtrip(tg: FakeTelegram) -> None:
    seen: list[Update] = []

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(update)
        await update.effective_message.reply_text(f"you said: {update.effective_message.text}")

    async with running(tg, MessageHandler(filters.TEXT & ~filters.COMMAND, echo)):
        sent = tg.send_message("hello bot")
        call = await tg.wait_for_call("sendMessage")

    assert [c.method for c in tg.calls[:2]] == ["getMe", "deleteWebhook"]
    assert call.status == 200 and call.params["chat_id"] == OWNER  # decoded from the form's "1001"
    assert call.params["text"] == "you said: hello bot"
    assert seen[0].effective_user.id == OWNER and seen[0].effective_user.first_name == "Sam"
    assert seen[0].effective_chat.type == "private"
    assert tg.sent_texts(OWNER) == ["you said: hello bot"]
    (chat, mid), msg = next(iter(tg.messages.items()))
    assert chat == OWNER and mid == sent["message_id"] + 1  # one id sequence per chat
    assert msg["from"]["username"] == "dispatch_test_bot"


async def test_command_entity_and_set_my_commands(tg: FakeTelegram) -> None:
    args: list[list[str]] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args.append(list(context.args or []))
        await context.bot.set_my_commands([BotCommand("start", "Start"), BotCommand("tasks", "List tasks")])

    async with running(tg, CommandHandler("start", start)):
        msg = tg.send_message("/start now")
        await tg.wait_for_call("setMyCommands")
        async with bot_for(tg) as bot:
            commands = await bot.get_my_commands()

    assert msg["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    assert args == [["now"]]
    assert tg.calls_to("setMyCommands")[0].params["commands"][1] == {"command": "tasks", "description": "List tasks"}
    assert [c.command for c in commands] == ["start", "tasks"]
    async with bot_for(tg) as bot:
        with pytest.raises(BadRequest, match="(?i)bot_command_invalid"):
            await bot.set_my_commands([BotCommand("Bad-Name", "nope")])


async def test_button_press_answer_and_edit(tg: FakeTelegram) -> None:
    presses: list[str] = []

    async def card(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        kb = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="ok:7"),
                                    InlineKeyboardButton("Deny", callback_data="no:7")]])
        await update.effective_message.reply_text("<b>Send email?</b>", parse_mode=ParseMode.HTML,
                                                  reply_markup=kb)

    async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        presses.append(query.data)
        assert query.message.text == "Send email?"  # the message the bot sent, as Telegram shows it
        await query.answer("Approved")
        await query.edit_message_text(f"Approved ({query.data})")

    async with running(tg, MessageHandler(filters.TEXT, card), CallbackQueryHandler(button)):
        tg.send_message("send the email")
        sent = await tg.wait_for_call("sendMessage")
        mid = sent.result["message_id"]
        assert sent.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "ok:7"
        assert tg.messages[(OWNER, mid)]["entities"] == [{"offset": 0, "length": 11, "type": "bold"}]
        query_id = tg.press_button(mid, "ok:7")
        await tg.wait_for_call("editMessageText")

    assert presses == ["ok:7"]
    assert tg.answers[query_id]["text"] == "Approved"
    state = tg.messages[(OWNER, mid)]
    assert state["text"] == "Approved (ok:7)" and "edit_date" in state
    assert "reply_markup" not in state  # an edit that does not repeat the keyboard drops it
    with pytest.raises(AssertionError, match="no button"):
        tg.press_button(mid, "no:7")  # the keyboard is gone


async def test_user_document_download(tg: FakeTelegram, tmp_path: Path) -> None:
    content = b"%PDF-1.4 quarterly report\n" * 100
    got: list[bytes] = []

    async def on_doc(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        doc = update.effective_message.document
        assert doc.file_name == "report.pdf" and doc.mime_type == "application/pdf"
        assert doc.file_size == len(content)
        path = tmp_path / doc.file_name
        await (await context.bot.get_file(doc.file_id)).download_to_drive(path)
        got.append(path.read_bytes())
        await update.effective_message.reply_text("saved")

    async with running(tg, MessageHandler(filters.Document.ALL, on_doc)):
        tg.send_document(content, "report.pdf", mime_type="application/pdf", caption="for you")
        await tg.wait_for_call("sendMessage")

    assert got == [content]
    assert tg.downloads and tg.downloads[0].startswith("documents/")


async def test_photo_voice_sticker_arrive_as_ptb_objects(tg: FakeTelegram) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), "red").save(buf, "JPEG")
    seen: list[Any] = []

    async def anything(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(update.effective_message)

    async with running(tg, MessageHandler(filters.ALL, anything)):
        tg.send_photo(buf.getvalue(), caption="look")
        tg.send_voice()
        tg.send_sticker()
        await until(lambda: len(seen) == 3)
        async with bot_for(tg) as bot:
            photo = await (await bot.get_file(seen[0].photo[-1].file_id)).download_as_bytearray()

    assert [p.width for p in seen[0].photo] == [90, 320, 800, 1600]
    assert seen[0].caption == "look" and bytes(photo) == buf.getvalue()
    assert seen[1].voice.mime_type == "audio/ogg" and seen[1].voice.duration == 3
    assert seen[2].sticker.emoji == "👍"


async def test_update_delivered_once_and_confirmed(tg: FakeTelegram) -> None:
    count = 0

    async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        nonlocal count
        count += 1

    async with running(tg, MessageHandler(filters.TEXT, handler)):
        tg.send_message("once")
        await until(lambda: count == 1)
        n = len(tg.calls_to("getUpdates"))
        tg.send_message("twice")  # wakes the pending poll, then the next poll confirms both
        await until(lambda: count == 2)
        await tg.wait_for_call("getUpdates", count=n + 2)
        assert tg.pending_updates == 0
        polls = tg.calls_to("getUpdates")
        assert polls[-1].params["offset"] == 3 and polls[-1].params["timeout"] == 1
    assert count == 2


async def test_drop_pending_updates_on_start(tg: FakeTelegram) -> None:
    seen: list[str] = []

    async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(update.effective_message.text)

    tg.send_message("sent while the bot was down")
    app = (Application.builder().token(TOKEN).base_url(tg.base_url)
           .base_file_url(tg.base_file_url).build())
    app.add_handler(MessageHandler(filters.TEXT, handler))
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=1, drop_pending_updates=True)
        tg.send_message("fresh")
        await until(lambda: seen)
        await app.updater.stop()
        await app.stop()
    assert seen == ["fresh"]
    assert tg.calls_to("deleteWebhook")[0].params == {"drop_pending_updates": True}
    assert tg.calls_to("getUpdates")[-1].params == {"timeout": 0, "offset": 3}  # PTB's cleanup


async def test_long_poll_waits_for_its_timeout_then_answers_empty(tg: FakeTelegram) -> None:
    async with httpx.AsyncClient() as http:
        t0 = time.monotonic()
        r = await http.post(f"{tg.base_url}{TOKEN}/getUpdates", data={"timeout": "0.4"})
        waited = time.monotonic() - t0
        assert r.json() == {"ok": True, "result": []} and 0.35 < waited < 2

        async def inject_later() -> None:
            await asyncio.sleep(0.2)
            tg.send_message("hi")

        task = asyncio.create_task(inject_later())
        t0 = time.monotonic()
        r = await http.post(f"{tg.base_url}{TOKEN}/getUpdates", json={"timeout": 5, "offset": -1})
        await task
        assert time.monotonic() - t0 < 2
        assert r.json()["result"][0]["message"]["text"] == "hi"


async def test_second_poll_terminates_the_first_with_conflict(tg: FakeTelegram) -> None:
    async with httpx.AsyncClient() as http:
        first = asyncio.create_task(http.post(f"{tg.base_url}{TOKEN}/getUpdates", data={"timeout": 5}))
        await until(lambda: tg.calls_to("getUpdates"))
        second = await http.post(f"{tg.base_url}{TOKEN}/getUpdates", data={"timeout": 0})
        r = await first
    assert second.json()["ok"] is True
    assert r.status_code == 409 and "terminated by other getUpdates" in r.json()["description"]


async def test_stalled_get_updates_hangs_past_its_timeout(tg: FakeTelegram) -> None:
    tg.stall_get_updates(2.0)
    async with httpx.AsyncClient() as http:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{tg.base_url}{TOKEN}/getUpdates", data={"timeout": "0"}, timeout=0.6)
        assert time.monotonic() - t0 >= 0.55
        await until(lambda: tg.calls_to("getUpdates")[0].status == 499, timeout=2.5)
        # the stall was used up: the next poll answers at once
        t0 = time.monotonic()
        r = await http.post(f"{tg.base_url}{TOKEN}/getUpdates", data={"timeout": "0"}, timeout=0.6)
        assert r.json()["result"] == [] and time.monotonic() - t0 < 0.5


async def test_polling_recovers_after_a_stall(tg: FakeTelegram) -> None:
    tg.stall_get_updates(1.0)

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text("pong")

    t0 = time.monotonic()
    async with running(tg, MessageHandler(filters.TEXT, echo)):
        tg.send_message("ping")
        await tg.wait_for_call("sendMessage")
        assert time.monotonic() - t0 >= 0.95  # the first poll sat out its stall


async def test_stop_is_prompt_with_a_poll_pending() -> None:
    tg = FakeTelegram(TOKEN)
    await tg.start()
    tg.stall_get_updates(30)
    async with httpx.AsyncClient() as http:
        stalled = asyncio.create_task(http.post(f"{tg.base_url}{TOKEN}/getUpdates", data={"timeout": 0}))
        waiting = asyncio.create_task(http.post(f"{tg.base_url}{TOKEN}/getUpdates", data={"timeout": 30}))
        await until(lambda: len(tg.calls_to("getUpdates")) == 2)
        t0 = time.monotonic()
        await tg.stop()
        assert time.monotonic() - t0 < 1.0
        for task in (stalled, waiting):
            with contextlib.suppress(httpx.HTTPError):
                await asyncio.wait_for(task, 2)


# -- failures, through a bare Bot -------------------------------------------------------


async def test_429_raises_retry_after(tg: FakeTelegram) -> None:
    tg.fail_next("sendMessage", status=429, retry_after=1)
    async with bot_for(tg) as bot:
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(OWNER, "hi")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PTB 22 deprecation: int now, timedelta later
            assert info.value.retry_after in (1, dtm.timedelta(seconds=1))
        assert (await bot.send_message(OWNER, "hi")).text == "hi"  # only the next call failed
    assert [c.status for c in tg.calls_to("sendMessage")] == [429, 200]
    assert tg.calls_to("sendMessage")[0].description == "Too Many Requests: retry after 1"


async def test_502_from_a_proxy_is_a_network_error(tg: FakeTelegram) -> None:
    tg.fail_next("sendMessage", status=502, times=2)
    async with bot_for(tg) as bot:
        for _ in range(2):
            with pytest.raises(NetworkError, match="Bad Gateway") as info:
                await bot.send_message(OWNER, "hi")
            assert not isinstance(info.value, BadRequest)
        await bot.send_message(OWNER, "hi")
    assert [c.status for c in tg.calls_to("sendMessage")] == [502, 502, 200]


async def test_reject_html_then_plain_fallback(tg: FakeTelegram) -> None:
    tg.reject_html("<think>")
    async with bot_for(tg) as bot:
        with pytest.raises(BadRequest, match="(?i)can't parse entities") as info:
            await bot.send_message(OWNER, "ok <think>", parse_mode=ParseMode.HTML)
        # PTB strips "Bad Request: " and str.capitalize()s the rest, lower-casing it
        assert info.value.message == 'Can\'t parse entities: unsupported start tag "think" at byte offset 3'
        await bot.send_message(OWNER, "ok <think>")  # plain text is not parsed
    assert tg.sent_texts() == ["ok <think>"]


async def test_html_is_parsed_and_validated_like_telegram(tg: FakeTelegram) -> None:
    async with bot_for(tg) as bot:
        msg = await bot.send_message(OWNER, "<b>Done</b> &lt;3 <a href='https://x.y/?a=1&amp;b=2'>link</a>",
                                     parse_mode=ParseMode.HTML)
        assert msg.text == "Done <3 link"
        assert [(e.type, e.offset, e.length) for e in msg.entities] == [("bold", 0, 4), ("text_link", 8, 4)]
        assert msg.entities[1].url == "https://x.y/?a=1&b=2"
        with pytest.raises(BadRequest, match='(?i)unsupported start tag "" at byte offset 2'):
            await bot.send_message(OWNER, "a < b", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match='start tag "b"'):
            await bot.send_message(OWNER, "<b>open", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(OWNER, "<b></b>", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(OWNER, "x" * 4097)
    assert tg.sent_texts(raw=True)[0].startswith("<b>Done</b>")
    # offsets are UTF-16 code units, as in the real API
    assert parse_html("😀 <i>x</i>") == ("😀 x", [{"offset": 3, "length": 1, "type": "italic"}])


async def test_edit_not_modified_and_markup_edits(tg: FakeTelegram) -> None:
    kb = InlineKeyboardMarkup([[InlineKeyboardButton("Stop", callback_data="stop")]])
    async with bot_for(tg) as bot:
        msg = await bot.send_message(OWNER, "working…", reply_markup=kb)
        assert msg.reply_markup == kb
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text("working…", OWNER, msg.message_id, reply_markup=kb)
        await bot.edit_message_reply_markup(OWNER, msg.message_id, reply_markup=None)
        assert "reply_markup" not in tg.messages[(OWNER, msg.message_id)]
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_reply_markup(OWNER, msg.message_id, reply_markup=None)
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("x", OWNER, 999)
        user_msg = tg.send_message("mine")
        with pytest.raises(BadRequest, match="Message can't be edited"):
            await bot.edit_message_text("x", OWNER, user_msg["message_id"])
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query("no-such-query")
        assert await bot.send_chat_action(OWNER, "typing")


async def test_big_file_and_bad_file_id(tg: FakeTelegram) -> None:
    small = tg.send_document(b"x" * 10, "big.bin", file_size=25 * 1024 * 1024)
    async with bot_for(tg) as bot:
        with pytest.raises(BadRequest, match="File is too big"):
            await bot.get_file(small["document"]["file_id"])
        with pytest.raises(BadRequest, match="Invalid file_id"):
            await bot.get_file("nope")


async def test_bot_uploads_document_and_photo(tg: FakeTelegram, tmp_path: Path) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "blue").save(buf, "PNG")
    async with bot_for(tg) as bot:
        msg = await bot.send_document(OWNER, b"col1,col2\n1,2\n", filename="out.csv",
                                      caption="<i>results</i>", parse_mode=ParseMode.HTML)
        assert msg.document.file_name == "out.csv" and msg.caption == "results"
        again = await bot.send_document(OWNER, msg.document.file_id)  # re-send by file_id
        path = await (await bot.get_file(again.document.file_id)).download_to_drive(tmp_path / "o.csv")
        photo = await bot.send_photo(OWNER, buf.getvalue(), caption="chart")
        with pytest.raises(BadRequest, match="File must be non-empty"):
            await bot.send_document(OWNER, b"", filename="empty.txt")
    call = tg.calls_to("sendDocument")[0]
    assert call.files == {"document": b"col1,col2\n1,2\n"} and call.filenames == {"document": "out.csv"}
    assert path.read_bytes() == b"col1,col2\n1,2\n"
    # PTB names nameless bytes after their guessed mime type ("application.octet-stream")
    photo_name = tg.calls_to("sendPhoto")[0].filenames["photo"]
    assert [(u.kind, u.file_name) for u in tg.uploads] == [
        ("document", "out.csv"), ("document", "out.csv"), ("photo", photo_name)]
    assert (photo.photo[-1].width, photo.photo[-1].height) == (64, 48)
    assert tg.uploads[-1].content == buf.getvalue() and tg.uploads[-1].caption == "chart"


async def test_wrong_token_and_unknown_method(tg: FakeTelegram) -> None:
    async with bot_for(tg) as bot:
        with pytest.raises(EndPointNotFound):
            await bot.do_api_request("noSuchMethod")
    with pytest.raises(InvalidToken):
        async with bot_for(tg, "999:WRONG") as bot:
            pass
    assert tg.calls[-1].status == 401 and tg.calls[-1].description == "Unauthorized"


async def test_wait_for_call_timeout_names_what_was_called(tg: FakeTelegram) -> None:
    async with bot_for(tg):
        pass
    with pytest.raises(AssertionError, match=r"Recorded calls: getMe") as info:
        await tg.wait_for_call("sendMessage", timeout=0.05)
    assert "sendMessage" in str(info.value)


async def test_generic_errors_carry_descriptions(tg: FakeTelegram) -> None:
    tg.fail_next("sendMessage", status=403, description="Forbidden: bot was blocked by the user")
    tg.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    async with bot_for(tg) as bot:
        with pytest.raises(TelegramError, match="bot was blocked"):
            await bot.send_message(OWNER, "x")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(OWNER, "x")
