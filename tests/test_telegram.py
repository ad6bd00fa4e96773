"""The Telegram front end end to end: the real python-telegram-bot Application polling
the loopback fake Bot API, the real core, the real AsyncAnthropic client on the fake model."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent import approvals, gate, owners
from bot.telegram import channel as tgchannel
from store.models import Task
from tests.conftest import (
    TG_OWNER,
    Bot,
    make_settings,
    start_telegram_bot,
    task_state,
    telegram_values,
    until,
)
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import dispatch_run, env_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
OWNER, STRANGER = TG_OWNER, 666

# `tg_fake` (the fake Bot API), `Bot` and `start_telegram_bot` are in conftest.py.


@pytest.fixture
def tg_settings(tmp_path, fake, tg_fake, roots):
    return make_settings(tmp_path, fake.url, roots, **telegram_values(tg_fake))


@pytest_asyncio.fixture
async def bot(tg_settings, sent) -> Any:
    b = await start_telegram_bot(tg_settings)
    yield b
    await b.stop()


def card_ids(tg_fake: FakeTelegram) -> list[int]:
    return [mid for (chat, mid), m in tg_fake.messages.items() if "Draft #" in m.get("text", "")]


async def draft_card(bot: Bot, fake, tg_fake: FakeTelegram, text: str = "Hi Bob") -> tuple[int, int]:
    fake.reply("Drafting.", tool_uses=[("send_note", {"to": "bob@example.com", "text": text})])
    fake.reply("The note is waiting for your approval.")
    tg_fake.send_message("send bob a note")
    await tg_fake.wait_for_call("sendMessage", where=lambda c: "waiting for your approval" in c.params.get("text", ""))
    draft = approvals.pending(bot.core.store)[-1]
    return draft.id, card_ids(tg_fake)[-1]


async def test_commands_are_registered(bot, tg_fake):
    call = await tg_fake.wait_for_call("setMyCommands")
    names = [c["command"] for c in call.params["commands"]]
    assert names == ["status", "pending", "cancel", "log", "usage", "settings", "awake", "computer", "screenshot",
                     "help", "pair"]


async def test_message_to_card_to_approve_sends_once_and_edits_the_card(bot, fake, tg_fake, sent):
    draft_id, card = await draft_card(bot, fake, tg_fake)
    msg = tg_fake.messages[(OWNER, card)]
    assert "To: bob@example.com" in msg["text"] and "Hi Bob" in msg["text"]
    buttons = [b["callback_data"] for row in msg["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == [f"a:{draft_id}", f"r:{draft_id}", f"e:{draft_id}"]
    assert sent == []
    # Progress: typing and a status message while the task ran.
    assert tg_fake.calls_to("sendChatAction")

    query = tg_fake.press_button(card, f"a:{draft_id}")
    await until(lambda: "sent" in tg_fake.messages[(OWNER, card)]["text"].split("\n")[-1], what="card edited")
    assert sent == [{"to": "bob@example.com", "text": "Hi Bob"}]
    assert "reply_markup" not in tg_fake.messages[(OWNER, card)]  # buttons gone
    assert tg_fake.answers[query]["text"].startswith("Approved")
    # The decision is in the thread for the next turn.
    assert approvals.get(bot.core.store, draft_id).decided_by == f"telegram:{OWNER}"


async def test_a_double_press_sends_once(bot, fake, tg_fake, sent):
    draft_id, card = await draft_card(bot, fake, tg_fake)
    q1 = tg_fake.press_button(card, f"a:{draft_id}")
    q2 = tg_fake.press_button(card, f"a:{draft_id}", strict=False)
    await until(lambda: q1 in tg_fake.answers and q2 in tg_fake.answers, what="both answered")
    await until(lambda: approvals.get(bot.core.store, draft_id).state == "sent")
    await asyncio.sleep(0.1)
    assert len(sent) == 1
    texts = sorted(tg_fake.answers[q]["text"] for q in (q1, q2))
    assert any("already decided" in t for t in texts) or texts.count("Approved — sending…") == 2
    # Only one of the two presses won the conditional update.
    assert len(bot.core.store.recent_actions(50, kinds=("send",))) == 1


async def test_a_stranger_gets_one_polite_refusal_and_nothing_else(bot, fake, tg_fake, sent):
    tg_fake.send_message("hello?", user_id=STRANGER, first_name="Eve", username="eve")
    await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params["chat_id"] == STRANGER)
    tg_fake.send_message("give me the files", user_id=STRANGER)
    tg_fake.send_message("please", user_id=STRANGER)
    await until(lambda: len([a for a in bot.core.store.recent_actions(20, kinds=("refusal",))]) == 3)
    to_stranger = [c for c in tg_fake.calls_to("sendMessage") if c.params["chat_id"] == STRANGER]
    assert len(to_stranger) == 1 and "private assistant" in to_stranger[0].params["text"]
    assert len(fake.requests) == 0  # the model never saw a word of it
    with bot.core.store.session() as s:
        assert s.query(Task).count() == 0


async def test_a_strangers_press_is_refused(bot, fake, tg_fake, sent):
    draft_id, card = await draft_card(bot, fake, tg_fake)
    q = tg_fake.press_button(card, f"a:{draft_id}", user_id=STRANGER, chat_id=OWNER)
    await until(lambda: q in tg_fake.answers)
    assert tg_fake.answers[q]["text"] == "This button is not for you."
    await asyncio.sleep(0.1)
    assert sent == [] and approvals.get(bot.core.store, draft_id).state == "pending"
    assert bot.core.store.recent_actions(1, kinds=("refusal",))[0].detail["user"] == str(STRANGER)


async def test_groups_and_channels_are_ignored(bot, fake, tg_fake):
    tg_fake.send_message("do something", chat_id=-100123, chat_type="group")
    tg_fake.send_message("hi")  # a private message after it is still handled
    fake.reply("Hello.")
    await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "Hello.")
    assert not [c for c in tg_fake.calls_to("sendMessage") if c.params["chat_id"] == -100123]


@pytest.mark.parametrize("data, alert", [
    ("a:999", "There is no draft #999."),
    ("zz", "That button is not valid."),
    ("a:1;DROP TABLE", "That button is not valid."),
    ("x:1", "That button is not valid."),
])
async def test_forged_and_malformed_callback_data(bot, fake, tg_fake, sent, data, alert):
    draft_id, card = await draft_card(bot, fake, tg_fake)
    q = tg_fake.press_button(card, data, strict=False)
    await until(lambda: q in tg_fake.answers)
    assert tg_fake.answers[q]["text"] == alert and tg_fake.answers[q].get("show_alert")
    assert sent == [] and approvals.get(bot.core.store, draft_id).state == "pending"


async def test_a_card_from_before_a_restart_still_works(tg_settings, fake, tg_fake, sent):
    first = await start_telegram_bot(tg_settings)
    draft_id, card = await draft_card(first, fake, tg_fake)
    await first.stop()
    second = await start_telegram_bot(tg_settings)
    try:
        tg_fake.press_button(card, f"a:{draft_id}")
        await until(lambda: approvals.get(second.core.store, draft_id).state == "sent")
        await until(lambda: "reply_markup" not in tg_fake.messages[(OWNER, card)])
        assert sent == [{"to": "bob@example.com", "text": "Hi Bob"}]
    finally:
        await second.stop()


async def test_a_press_on_a_decided_card_gets_an_alert(bot, fake, tg_fake, sent):
    draft_id, card = await draft_card(bot, fake, tg_fake)
    await bot.core.reject(draft_id, "console:sam")
    q = tg_fake.press_button(card, f"a:{draft_id}", strict=False)
    await until(lambda: q in tg_fake.answers)
    assert "already decided" in tg_fake.answers[q]["text"] and sent == []


async def test_reject_then_reply_with_a_reason_revises_the_draft(bot, fake, tg_fake, sent):
    draft_id, card = await draft_card(bot, fake, tg_fake)
    tg_fake.press_button(card, f"r:{draft_id}")
    prompt = await tg_fake.wait_for_call("sendMessage", where=lambda c: "rejected" in c.params.get("text", ""))
    assert approvals.get(bot.core.store, draft_id).state == "rejected"
    await until(lambda: "reply_markup" not in tg_fake.messages[(OWNER, card)], what="the card redrawn")
    fake.reply(tool_uses=[("send_note", {"to": "bob@example.com", "text": "Dear Bob"})])
    fake.reply("Revised.")
    tg_fake.send_message("make it formal", reply_to_message_id=prompt.result["message_id"])
    await until(lambda: len(approvals.pending(bot.core.store)) == 1, what="revised draft")
    assert approvals.get(bot.core.store, draft_id).reason == "make it formal"
    asked = [r for r in fake.requests if "make it formal" in str(r["messages"][-1])]
    assert asked and "[Dispatch] The owner rejected draft" in str(asked[0]["messages"][-1])
    assert sent == []


async def test_edit_takes_the_reply_as_the_new_text(bot, fake, tg_fake, sent):
    draft_id, card = await draft_card(bot, fake, tg_fake)
    tg_fake.press_button(card, f"e:{draft_id}")
    prompt = await tg_fake.wait_for_call("sendMessage", where=lambda c: "new text" in c.params.get("text", ""))
    tg_fake.send_message("Hi Bob, 3pm works.", reply_to_message_id=prompt.result["message_id"])
    await until(lambda: len(card_ids(tg_fake)) == 2, what="revision card")
    new = approvals.pending(bot.core.store)[0]
    assert new.revision_of == draft_id and json.loads(new.args_json)["text"] == "Hi Bob, 3pm works."
    await until(lambda: "replaced by an edited revision" in tg_fake.messages[(OWNER, card)]["text"],
                what="the old card redrawn (in the background)")
    tg_fake.press_button(card_ids(tg_fake)[-1], f"a:{new.id}")
    await until(lambda: len(sent) == 1)
    assert sent == [{"to": "bob@example.com", "text": "Hi Bob, 3pm works."}]


async def test_a_429_on_the_card_edit_is_waited_out_not_replaced(bot, fake, tg_fake, sent):
    draft_id, card = await draft_card(bot, fake, tg_fake)
    messages_before = len(tg_fake.calls_to("sendMessage"))
    tg_fake.fail_next("editMessageText", status=429, retry_after=1)
    tg_fake.press_button(card, f"a:{draft_id}")
    await until(lambda: "reply_markup" not in tg_fake.messages[(OWNER, card)], timeout=8, what="card edited")
    edits = [c for c in tg_fake.calls_to("editMessageText") if c.params.get("message_id") == card]
    assert [c.status for c in edits][:2] == [429, 200]
    assert edits[1].at - edits[0].at >= 0.9  # waited the retry_after
    assert len(tg_fake.calls_to("sendMessage")) == messages_before  # no new message instead


async def test_progress_is_one_status_message_edited_in_place(bot, fake, tg_fake, roots):
    for i in range(3):
        (roots / f"f{i}.txt").write_text(str(i))
        fake.reply(tool_uses=[("read_text", {"path": str(roots / f"f{i}.txt")})], delay=0.1)
    fake.reply("Read three files.")
    tg_fake.send_message("read them")
    await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "Read three files.")
    status = [c for c in tg_fake.calls_to("sendMessage") if c.params["text"].startswith("⏳")]
    assert len(status) == 1
    assert status[0].params.get("disable_notification") is True  # the answer is what notifies
    mid = status[0].result["message_id"]
    edits = [c.params["text"] for c in tg_fake.calls_to("editMessageText") if c.params["message_id"] == mid]
    assert edits and edits[-1].startswith("⏳ Step ") and edits[-1].endswith(" s")  # the step and the time so far
    await until(lambda: (OWNER, mid) not in tg_fake.messages, what="the status line removed at the end")


async def test_a_long_reply_is_split_on_paragraphs(bot, fake, tg_fake):
    paragraphs = [f"Paragraph {i}: " + "word " * 150 for i in range(20)]
    fake.reply("\n\n".join(paragraphs))
    tg_fake.send_message("write a lot")
    await tg_fake.wait_for_call("sendMessage", where=lambda c: "Paragraph 19" in c.params.get("text", ""))
    parts = [c.params["text"] for c in tg_fake.calls_to("sendMessage") if "Paragraph" in c.params.get("text", "")]
    assert len(parts) > 1 and all(len(p) <= 4096 for p in parts)
    joined = "\n\n".join(parts)
    assert [p.strip() for p in joined.split("\n\n")] == [p.strip() for p in paragraphs]


async def test_html_refused_by_telegram_falls_back_to_plain_text(bot, fake, tg_fake):
    tg_fake.reject_html("<b>")
    fake.reply("The total is **42**.")
    tg_fake.send_message("total?")
    ok = await tg_fake.wait_for_call("sendMessage", where=lambda c: c.status == 200 and "42" in c.params["text"])
    assert ok.params["text"] == "The total is **42**." and "parse_mode" not in ok.params
    failed = [c for c in tg_fake.calls_to("sendMessage") if c.status == 400]
    assert failed and failed[0].params["text"] == "The total is <b>42</b>."


async def test_an_oversized_upload_gets_a_clear_reply(bot, fake, tg_fake):
    tg_fake.send_document(b"%PDF-1.4 small", "board-pack.pdf", file_size=30 * 1024 * 1024)
    reply = await tg_fake.wait_for_call("sendMessage")
    assert "30 MB" in reply.params["text"] and "20 MB" in reply.params["text"]
    assert not tg_fake.calls_to("getFile") and len(fake.requests) == 0


async def test_a_document_is_saved_to_the_inbox_and_handed_to_the_task(bot, fake, tg_fake, tg_settings):
    fake.reply("Got the CSV: 2 rows.")
    tg_fake.send_document(b"week,signups\n45,120\n", "../../tracker.csv", caption="summarise this")
    await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "Got the CSV: 2 rows.")
    saved = list((tg_settings.home / "inbox").rglob("*.csv"))
    assert len(saved) == 1 and saved[0].read_bytes() == b"week,signups\n45,120\n"
    assert saved[0].parent.parent == tg_settings.home / "inbox"  # the name could not escape
    first = fake.requests[0]["messages"][-1]["content"][0]["text"]
    assert first.startswith("summarise this") and str(saved[0]) in first


async def test_unsupported_kinds_get_a_clear_reply(bot, fake, tg_fake):
    tg_fake.send_voice()  # no transcription configured: say how to turn voice on, start nothing
    reply = await tg_fake.wait_for_call("sendMessage")
    assert "DISPATCH_TRANSCRIBE_URL" in reply.params["text"]
    tg_fake.send_sticker()
    reply = await tg_fake.wait_for_call("sendMessage", count=2)
    assert "sticker" in reply.params["text"] and "voice note, a document or a photo" in reply.params["text"]
    assert fake.requests == []


async def test_pairing_makes_the_first_user_with_the_code_the_owner(tmp_path, fake, tg_fake, roots, sent):
    settings = make_settings(tmp_path, fake.url, roots, **telegram_values(tg_fake, owner=None))
    b = await start_telegram_bot(settings)
    try:
        code, _ = owners.new_pairing_code(b.core.store)
        tg_fake.send_message("/pair WRONG-CODE", user_id=42)
        await tg_fake.wait_for_call("sendMessage", where=lambda c: "wrong or has expired" in c.params["text"])
        tg_fake.send_message(f"/pair {code.lower()}", user_id=42)
        await tg_fake.wait_for_call("sendMessage", where=lambda c: "Paired" in c.params["text"])
        tg_fake.send_message(f"/pair {code}", user_id=STRANGER)  # used up
        await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params["chat_id"] == STRANGER)
        assert [o.user_id for o in owners.owners(b.core.store, "telegram")] == ["42"]
        fake.reply("At your service.")
        tg_fake.send_message("hello", user_id=42)
        await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "At your service.")
        tg_fake.send_message("hello", user_id=STRANGER)
        await until(lambda: len(b.core.store.recent_actions(50, kinds=("refusal",))) >= 3)
        assert len(fake.requests) == 1
    finally:
        await b.stop()


async def test_settings_toggles_a_connector_policy(bot, fake, tg_fake):
    tg_fake.send_message("/settings")
    call = await tg_fake.wait_for_call("sendMessage", where=lambda c: "Tap a connector" in c.params["text"])
    mid = call.result["message_id"]
    tg_fake.press_button(mid, "p:notes:ask")
    await until(lambda: gate.current_policies(bot.core.store, {}).get("notes") == "ask")
    await until(lambda: "notes: ask" in [b["text"] for row in tg_fake.messages[(OWNER, mid)]["reply_markup"]
                                         ["inline_keyboard"] for b in row], what="the redrawn keyboard")
    # A replayed press sets the value it carries again; it does not switch further.
    tg_fake.press_button(mid, "p:notes:ask", strict=False)
    await asyncio.sleep(0.2)
    assert gate.current_policies(bot.core.store, {}).get("notes") == "ask"
    tg_fake.press_button(mid, "p:notes:off")
    await until(lambda: gate.current_policies(bot.core.store, {}).get("notes") == "off")
    # The store changes before the keyboard is redrawn: wait for the redraw.
    await until(lambda: "notes: off" in [b["text"] for row in tg_fake.messages[(OWNER, mid)]["reply_markup"]
                                         ["inline_keyboard"] for b in row], what="the redrawn keyboard")


async def test_status_pending_and_log_commands(bot, fake, tg_fake, sent):
    draft_id, _ = await draft_card(bot, fake, tg_fake)
    tg_fake.send_message("/status")
    reply = await tg_fake.wait_for_call("sendMessage", where=lambda c: "Waiting for approval" in c.params["text"])
    assert f"#{draft_id}" in reply.params["text"]
    tg_fake.send_message("/pending")
    await until(lambda: len(card_ids(tg_fake)) == 2, what="fresh card")
    tg_fake.send_message("/log")
    log_reply = await tg_fake.wait_for_call("sendMessage", where=lambda c: "draft #" in c.params["text"])
    assert "send_note" in log_reply.params["text"] or f"draft #{draft_id}" in log_reply.params["text"]


async def test_the_watchdog_restarts_a_stalled_poll(tg_settings, fake, tg_fake, sent):
    b = await start_telegram_bot(tg_settings, stall_after=0.6, watch_every=0.1)
    try:
        await tg_fake.wait_for_call("getUpdates", count=2)
        tg_fake.stall_get_updates(30)
        await until(lambda: b.front.restarts >= 1, timeout=10, what="watchdog restart")
        fake.reply("Still here.")
        tg_fake.send_message("are you there?")
        await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "Still here.", timeout=10)
    finally:
        await b.stop()


async def test_a_big_file_goes_out_as_a_path_not_an_upload(bot, tmp_path):
    big = tmp_path / "video.mov"
    with open(big, "wb") as fh:
        fh.truncate(51 * 1024 * 1024)
    result = await bot.front.channel.send_file(f"telegram:{OWNER}", big)
    assert "50 MB" in result and str(big) in result


async def test_files_are_sent_as_documents(bot, tg_fake, tmp_path):
    report = tmp_path / "recap.csv"
    report.write_text("a,b\n1,2\n")
    result = await bot.front.channel.send_file(f"telegram:{OWNER}", report, "Weekly recap")
    assert result.startswith("sent recap.csv")
    upload = tg_fake.uploads[-1]
    assert upload.file_name == "recap.csv" and upload.content == b"a,b\n1,2\n" and upload.caption == "Weekly recap"


def test_channel_throttle_default_is_two_seconds():
    assert tgchannel.PROGRESS_EVERY_S == 2.0


async def test_dispatch_run_serves_telegram_without_a_terminal_and_stops_on_sigterm(tmp_path, fake, tg_fake, roots):
    env = env_for(tmp_path, ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=fake.url,
                  TELEGRAM_BOT_TOKEN=tg_fake.token, TELEGRAM_API_URL=tg_fake.url,
                  DISPATCH_TELEGRAM_OWNERS=str(OWNER), DISPATCH_ROOTS=str(roots), DISPATCH_TIMEZONE="UTC")
    async with dispatch_run(tmp_path, env) as proc:
        await until(lambda: tg_fake.calls_to("getUpdates"), timeout=30, what="polling")
        fake.reply("Hello from the desktop.")
        tg_fake.send_message("hi")
        await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "Hello from the desktop.",
                                    timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    err = (await proc.stderr.read()).decode()
    assert "Traceback" not in err and "sk-ant-test" not in err and tg_fake.token not in err
    log_text = (tmp_path / "home" / "dispatch.log").read_text()
    assert tg_fake.token not in log_text and "sk-ant-test" not in log_text


async def test_a_refused_bot_token_is_a_clear_message(tmp_path, fake, tg_fake):
    env = env_for(tmp_path, ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=fake.url,
                  TELEGRAM_BOT_TOKEN="999:WRONG", TELEGRAM_API_URL=tg_fake.url)
    async with dispatch_run(tmp_path, env) as proc:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "Telegram refused TELEGRAM_BOT_TOKEN" in err.decode() and "Traceback" not in err.decode()
    assert "999:WRONG" not in err.decode()


async def test_a_console_task_interrupted_by_a_restart_is_reported_on_telegram(tg_settings, fake, tg_fake, sent):
    """Dispatch ran in a terminal, stopped mid-task, and now runs as a service with
    Telegram only: the interruption still reaches the owner, in their private chat."""
    from agent.channel import Inbound
    from tests.conftest import close_core, make_core

    core, _ = await make_core(tg_settings)
    fake.hang(5.0)
    task = await core.submit(Inbound("long job", "console:local"))
    await until(lambda: len(fake.requests) == 1)
    await close_core(core)
    b = await start_telegram_bot(tg_settings)
    try:
        note = await tg_fake.wait_for_call("sendMessage", where=lambda c: "interrupted" in c.params.get("text", ""))
        assert note.params["chat_id"] == OWNER and f"Task #{task.id}" in note.params["text"]
    finally:
        await b.stop()


def test_tables_become_monospaced_source_even_inside_quotes_and_lists():
    from bot.telegram.format import to_telegram

    html = to_telegram("> note\n>\n> | a | b |\n> |---|---|\n> | 1 | 2 |\n\n| top | t |\n|---|---|\n| 5 | 6 |")[0].html
    assert html.count("<pre>") == 2
    assert "ab12" not in html and "| 1 | 2 |" in html and "| 5 | 6 |</pre>" in html
