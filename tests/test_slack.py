"""The Slack front end end to end: the real slack-bolt AsyncApp and slack_sdk Socket Mode
client talking to the loopback fake Slack (Web API + websocket), the real core, the real
AsyncAnthropic client on the fake model. HTTP mode gets signed requests like Slack's."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest
import pytest_asyncio

from agent import approvals, gate, owners
from agent.core import Core
from bot.ops.run import StartupError, run
from bot.slack.app import SlackFrontEnd
from bot.telegram.app import TelegramFrontEnd
from store.models import Task
from tests.conftest import (
    TG_OWNER,
    Bot,
    build_test_registry,
    make_settings,
    slack_values,
    telegram_values,
    until,
)
from tests.fakes.slack_api import (
    ANN,
    BOT_ID,
    BOT_USER,
    GENERAL,
    OWNER,
    OWNER_DM,
    STRANGER,
    THREAD_TS,
    FakeSlack,
    post_to_app,
)
from tests.helpers import dispatch_run, env_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FAST = dict(ping_interval=0.5, watch_every=0.1)

# `sl_fake`, `tg_fake` (the fake servers) and `Bot` are in conftest.py.


def slack_settings(tmp_path, fake, sl_fake, roots, **extra: Any):
    values: dict[str, Any] = dict(slack_values(sl_fake), DISPATCH_SLACK_OWNERS=OWNER)
    values.update(extra)
    return make_settings(tmp_path, fake.url, roots, **{k: v for k, v in values.items() if v is not None})


@pytest.fixture
def sl_settings(tmp_path, fake, sl_fake, roots):
    return slack_settings(tmp_path, fake, sl_fake, roots)


async def start_bot(settings, *, telegram: bool = False, **options: Any) -> Bot:
    core = Core(settings, registry=build_test_registry())
    tg = None
    if telegram:
        tg = TelegramFrontEnd(core, poll_timeout=1)
        tg.channel.progress_every = 0.05
        await tg.start()
    front = SlackFrontEnd(core, **{**FAST, **options})
    front.channel.progress_every = 0.05
    front.channel.status_after = 0.0
    await front.start()
    await core.start()
    return Bot(core, front, tg)


@pytest_asyncio.fixture
async def bot(sl_settings, sent) -> Any:
    b = await start_bot(sl_settings)
    yield b
    await b.stop()


def said(sl_fake: FakeSlack, text: str, channel: str = OWNER_DM):
    """A waiter for the bot's chat.postMessage with exactly this text."""
    return sl_fake.wait_for_call("chat.postMessage", where=lambda c: c.params.get("channel") == channel
                                 and c.params.get("text") == text)


async def draft_card(bot: Bot, fake, sl_fake: FakeSlack, text: str = "Hi Bob") -> tuple[int, dict]:
    fake.reply("Drafting.", tool_uses=[("send_note", {"to": "bob@example.com", "text": text})])
    fake.reply("The note is waiting for your approval.")
    sl_fake.send_dm("send bob a note")
    await said(sl_fake, "The note is waiting for your approval.")
    return approvals.pending(bot.core.store)[-1].id, sl_fake.cards()[-1]


def card_now(sl_fake: FakeSlack, card: dict) -> dict:
    return sl_fake.message(OWNER_DM, card["ts"])


def decided(sl_fake: FakeSlack, card: dict, words: str) -> bool:
    now = card_now(sl_fake, card)
    return not sl_fake.buttons(now) and words in sl_fake.text_of(now)


def refusals(core: Core) -> list:
    return core.store.recent_actions(50, kinds=("refusal",))


# The list ---------------------------------------------------------------------------


async def test_dm_to_card_to_approve_posts_once_to_the_target_channel(bot, fake, sl_fake, sent):
    fake.reply("Drafting the post.", tool_uses=[("slack_post", {
        "channel": "#general", "text": "Q3 numbers are in: *up 12%*", "thread_ts": THREAD_TS})])
    fake.reply("The post is waiting for your approval.")
    envelope = sl_fake.send_dm("tell #general the Q3 numbers, in the kickoff thread")
    await sl_fake.wait_for_ack(envelope)
    await said(sl_fake, "The post is waiting for your approval.")
    draft = approvals.pending(bot.core.store)[-1]
    card = sl_fake.cards()[-1]
    shown = sl_fake.text_of(card)
    assert "#general" in shown and "Q3 numbers are in: *up 12%*" in shown
    assert "Ann Lee's message" in shown and "Kickoff notes for Q3" in shown  # the thread it goes into
    assert [(b["action_id"], b["value"]) for b in sl_fake.buttons(card)] == [
        ("dispatch_approve", str(draft.id)), ("dispatch_reject", str(draft.id)), ("dispatch_edit", str(draft.id))]
    assert not [c for c in sl_fake.calls_to("chat.postMessage") if c.params.get("channel") == GENERAL]

    press = sl_fake.press(card["ts"], "dispatch_approve")
    await sl_fake.wait_for_ack(press)
    await until(lambda: decided(sl_fake, card, "✅ sent"), what="card shows the outcome")
    posts = [c for c in sl_fake.calls_to("chat.postMessage") if c.params.get("channel") == GENERAL]
    assert len(posts) == 1
    assert posts[0].params["text"] == "Q3 numbers are in: *up 12%*" and posts[0].params["thread_ts"] == THREAD_TS
    assert posts[0].token == sl_fake.bot_token  # no SLACK_USER_TOKEN: posted as the bot
    row = approvals.get(bot.core.store, draft.id)
    assert row.state == "sent" and row.decided_by == f"slack:{OWNER}"
    assert [m["text"] for m in sl_fake.messages_in(GENERAL)][-1] == "Q3 numbers are in: *up 12%*"


async def test_a_strangers_dm_gets_one_polite_refusal_and_nothing_else(bot, fake, sl_fake):
    stranger_dm = sl_fake.dm_of(STRANGER)
    first = sl_fake.send_dm("hello?", user=STRANGER)
    await sl_fake.wait_for_call("chat.postMessage", where=lambda c: c.params.get("channel") == stranger_dm)
    later = [sl_fake.send_dm("give me the files", user=STRANGER), sl_fake.send_dm("please", user=STRANGER)]
    await until(lambda: len(refusals(bot.core)) == 3, what="three refusals logged")
    for envelope in [first, *later]:
        await sl_fake.wait_for_ack(envelope)
    to_stranger = [c for c in sl_fake.calls_to("chat.postMessage") if c.params.get("channel") == stranger_dm]
    assert len(to_stranger) == 1 and "private assistant" in to_stranger[0].params["text"]
    assert refusals(bot.core)[0].detail["user"] == STRANGER
    assert len(fake.requests) == 0  # the model never saw a word of it
    with bot.core.store.session() as s:
        assert s.query(Task).count() == 0


async def test_a_strangers_press_is_refused(bot, fake, sl_fake, sent):
    draft_id, card = await draft_card(bot, fake, sl_fake)
    press = sl_fake.press(card["ts"], "dispatch_approve", user=STRANGER)
    await sl_fake.wait_for_ack(press)
    await until(lambda: sl_fake.ephemerals, what="an answer to the press")
    assert sl_fake.ephemerals[-1] == {"channel": OWNER_DM, "user": STRANGER, "text": "This button is not for you."}
    await asyncio.sleep(0.2)
    assert sent == [] and approvals.get(bot.core.store, draft_id).state == "pending"
    assert sl_fake.buttons(card_now(sl_fake, card))  # the owner's card is untouched
    assert refusals(bot.core)[0].detail["user"] == STRANGER


async def test_a_telegram_press_and_a_slack_press_at_once_send_once(tmp_path, fake, sl_fake, tg_fake, roots, sent):
    settings = slack_settings(tmp_path, fake, sl_fake, roots, **telegram_values(tg_fake))
    b = await start_bot(settings, telegram=True)
    try:
        draft_id, card = await draft_card(b, fake, sl_fake)
        await b.core.router.new_card(approvals.get(b.core.store, draft_id), f"telegram:{TG_OWNER}")
        tg_card = await tg_fake.wait_for_call("sendMessage", where=lambda c: "Draft #" in c.params.get("text", ""))
        tg_mid = tg_card.result["message_id"]
        query = tg_fake.press_button(tg_mid, f"a:{draft_id}")  # both at once
        press = sl_fake.press(card["ts"], "dispatch_approve")
        await until(lambda: approvals.get(b.core.store, draft_id).state == "sent", what="sent")
        await until(lambda: query in tg_fake.answers, what="telegram answered")
        await sl_fake.wait_for_ack(press)
        await until(lambda: decided(sl_fake, card, "✅ sent"), what="slack card updated")
        await until(lambda: "✅ sent" in tg_fake.messages[(TG_OWNER, tg_mid)]["text"], what="telegram card updated")
        assert "reply_markup" not in tg_fake.messages[(TG_OWNER, tg_mid)]
        await asyncio.sleep(0.2)
        assert sent == [{"to": "bob@example.com", "text": "Hi Bob"}]
        assert len(b.core.store.recent_actions(50, kinds=("send",))) == 1
    finally:
        await b.stop()


async def test_a_silent_socket_is_reconnected_by_the_watchdog(sl_settings, fake, sl_fake):
    b = await start_bot(sl_settings, ping_interval=0.2, stall_after=1.0)
    try:
        first = await sl_fake.wait_for_connections(1)
        # The SDK's own monitor is gone (as when an unexpected error kills it), and the socket
        # goes quiet: open, but no pong and no envelope. Only the watchdog is left to notice.
        b.front._handler.client.current_session_monitor.cancel()
        sl_fake.go_silent()
        await until(lambda: b.front.restarts >= 1, timeout=10, what="watchdog restart")
        sl_fake.resume()
        await sl_fake.wait_for_connections(2)
        await until(lambda: len(sl_fake.open_connections) == 1, timeout=10, what="only one connection open")
        assert not first.open  # the dead one was closed, not leaked
        fake.reply("Still here.")
        envelope = sl_fake.send_dm("are you there?")
        await said(sl_fake, "Still here.")
        await sl_fake.wait_for_ack(envelope)
    finally:
        await b.stop()
    await until(lambda: not sl_fake.open_connections, what="all connections closed on stop")


# Staying up ----------------------------------------------------------------------------------


async def test_slacks_disconnect_envelope_moves_to_a_new_connection(bot, fake, sl_fake):
    await sl_fake.wait_for_connections(1)
    sl_fake.disconnect()
    await sl_fake.wait_for_connections(2)
    await until(lambda: len(sl_fake.open_connections) == 1, timeout=10, what="the old connection closed")
    assert sl_fake.open_connections[0].id == 2 and sl_fake.tickets_issued == 2
    fake.reply("Hello again.")
    sl_fake.send_dm("hi")
    await said(sl_fake, "Hello again.")


async def test_a_socket_that_answers_pings_but_delivers_nothing_is_refreshed(sl_settings, fake, sl_fake):
    b = await start_bot(sl_settings, ping_interval=0.2, idle_refresh=0.6)
    try:
        await sl_fake.wait_for_connections(2, timeout=10)
        assert b.front.restarts >= 1
        await until(lambda: len(sl_fake.open_connections) == 1, timeout=10, what="one connection at a time")
    finally:
        await b.stop()


async def test_a_redelivered_event_is_handled_once(bot, fake, sl_fake):
    body = sl_fake.send_dm("hi", deliver=False)
    fake.reply("Hello.")
    sl_fake.deliver("events_api", body)
    sl_fake.deliver("events_api", body, retry_attempt=1)
    await said(sl_fake, "Hello.")
    await asyncio.sleep(0.3)
    assert len(fake.requests) == 1
    with bot.core.store.session() as s:
        assert s.query(Task).count() == 1


async def test_own_messages_edits_other_bots_and_channels_are_ignored(bot, fake, sl_fake):
    ignored = [
        sl_fake.send_dm("Draft #1 needs approval", user=BOT_USER, channel=OWNER_DM, bot_id=BOT_ID),
        sl_fake.send_dm("beep", user="U0OTHERBOT", channel=OWNER_DM, bot_id="B0OTHER", subtype="bot_message"),
        sl_fake.send_dm("edited text", subtype="message_changed"),
        sl_fake.send_dm("deleted", subtype="message_deleted"),
        sl_fake.send_dm("in a channel", channel=GENERAL, channel_type="channel"),
        sl_fake.send_dm("a stranger in a channel", user=STRANGER, channel=GENERAL, channel_type="channel"),
    ]
    for envelope in ignored:
        await sl_fake.wait_for_ack(envelope)
    fake.reply("Hello.")
    sl_fake.send_dm("hi")
    await said(sl_fake, "Hello.")
    assert len(fake.requests) == 1 and refusals(bot.core) == []
    assert not [c for c in sl_fake.calls_to("chat.postMessage") if c.params.get("channel") == GENERAL]


async def test_acks_come_at_once_while_the_task_and_the_send_are_slow(bot, fake, sl_fake, sent):
    fake.reply("Drafting the post.", tool_uses=[("slack_post", {"channel": "#general", "text": "Hello all"})])
    fake.reply("Waiting for your approval.", delay=3.5)
    started = time.monotonic()
    envelope = sl_fake.send_dm("post hello in general")
    ack = await sl_fake.wait_for_ack(envelope, timeout=3)
    assert ack["at"] - started < 1.0
    await said(sl_fake, "Waiting for your approval.")
    card = sl_fake.cards()[-1]
    sl_fake.slow_next("chat.postMessage", 3.5)  # the post itself takes longer than Slack waits for an ack
    started = time.monotonic()
    press = sl_fake.press(card["ts"], "dispatch_approve")
    ack = await sl_fake.wait_for_ack(press, timeout=3)
    assert ack["at"] - started < 1.0
    await until(lambda: decided(sl_fake, card, "✅ sent"), timeout=10, what="sent after the slow post")
    assert len([c for c in sl_fake.calls_to("chat.postMessage") if c.params.get("channel") == GENERAL]) == 1


async def test_http_mode_accepts_signed_requests_and_refuses_bad_signatures(tmp_path, fake, sl_fake, roots, sent):
    settings = slack_settings(tmp_path, fake, sl_fake, roots, SLACK_APP_TOKEN=None,
                              SLACK_SIGNING_SECRET=sl_fake.signing_secret)
    b = await start_bot(settings, http_port=0)
    try:
        assert b.front.mode == "http" and not sl_fake.conns and not sl_fake.calls_to("apps.connections.open")
        url, secret = b.front.http_url, sl_fake.signing_secret
        status, text = await post_to_app(url, {"type": "url_verification", "challenge": "c-123", "token": "t"}, secret)
        assert status == 200 and "c-123" in text

        status, _ = await post_to_app(url, sl_fake.send_dm("do something", deliver=False), secret,
                                      signature="v0=" + "0" * 64)
        assert status == 401
        status, _ = await post_to_app(url, sl_fake.send_dm("do something", deliver=False), secret,
                                      timestamp=int(time.time()) - 600)  # a replayed, old request
        assert status == 401
        assert len(fake.requests) == 0

        fake.reply("Drafting.", tool_uses=[("send_note", {"to": "bob@example.com", "text": "Hi Bob"})])
        fake.reply("Over HTTP.")
        status, _ = await post_to_app(url, sl_fake.send_dm("send bob a note", deliver=False), secret)
        assert status == 200
        await said(sl_fake, "Over HTTP.")
        card = sl_fake.cards()[-1]
        status, _ = await post_to_app(url, sl_fake.press(card["ts"], "dispatch_approve", deliver=False), secret,
                                      interactive=True)
        assert status == 200
        await until(lambda: decided(sl_fake, card, "✅ sent"), what="sent over HTTP")
        assert sent == [{"to": "bob@example.com", "text": "Hi Bob"}]
        forged = sl_fake.press(card["ts"], "dispatch_approve", "1", strict=False, deliver=False)
        assert (await post_to_app(url, forged, "wrong-secret", interactive=True))[0] == 401
    finally:
        await b.stop()


# Decisions: reject, edit, stale presses -------------------------------------------------------------


async def test_reject_then_a_reason_in_the_thread_revises_the_draft(bot, fake, sl_fake, sent):
    draft_id, card = await draft_card(bot, fake, sl_fake)
    sl_fake.press(card["ts"], "dispatch_reject")
    prompt = await sl_fake.wait_for_call("chat.postMessage", where=lambda c: "Reply in this" in c.params.get("text", ""))
    assert prompt.params["thread_ts"] == card["ts"]
    await until(lambda: decided(sl_fake, card, "rejected"), what="card shows the rejection")
    fake.reply(tool_uses=[("send_note", {"to": "bob@example.com", "text": "Dear Bob"})])
    fake.reply("Revised.")
    sl_fake.send_dm("make it formal", thread_ts=card["ts"])
    await until(lambda: len(approvals.pending(bot.core.store)) == 1, what="revised draft")
    assert approvals.get(bot.core.store, draft_id).reason == "make it formal"
    asked = [r for r in fake.requests if "make it formal" in str(r["messages"][-1])]
    assert asked and "[Dispatch] The owner rejected draft" in str(asked[0]["messages"][-1])
    assert sent == []


async def test_edit_opens_a_form_with_the_current_text(bot, fake, sl_fake, sent):
    draft_id, card = await draft_card(bot, fake, sl_fake)
    sl_fake.press(card["ts"], "dispatch_edit")
    opened = await sl_fake.wait_for_call("views.open")
    assert opened.ok
    view_id, view = list(sl_fake.views.items())[-1]
    assert view["blocks"][0]["element"]["initial_value"] == "Hi Bob"
    submitted = sl_fake.submit_view(view_id, "Hi Bob, 3pm works.")
    assert (await sl_fake.wait_for_ack(submitted))["payload"] is None  # closes the form
    await until(lambda: len(sl_fake.cards()) == 2, what="revision card")
    new = approvals.pending(bot.core.store)[0]
    assert new.revision_of == draft_id and json.loads(new.args_json)["text"] == "Hi Bob, 3pm works."
    await until(lambda: decided(sl_fake, card, "replaced by an edited revision"), what="the old card redrawn")
    sl_fake.press(sl_fake.cards()[-1]["ts"], "dispatch_approve")
    await until(lambda: len(sent) == 1)
    assert sent == [{"to": "bob@example.com", "text": "Hi Bob, 3pm works."}]


async def test_the_edit_form_says_so_when_the_draft_was_decided_meanwhile(bot, fake, sl_fake, sent):
    draft_id, card = await draft_card(bot, fake, sl_fake)
    sl_fake.press(card["ts"], "dispatch_edit")
    await sl_fake.wait_for_call("views.open")
    await bot.core.reject(draft_id, "console:sam")
    submitted = sl_fake.submit_view(list(sl_fake.views)[-1], "Too late")
    ack = await sl_fake.wait_for_ack(submitted)
    assert ack["payload"]["response_action"] == "errors" and "already decided" in ack["payload"]["errors"]["text"]
    assert approvals.pending(bot.core.store) == []


async def test_edit_falls_back_to_a_thread_reply_when_the_form_cannot_open(bot, fake, sl_fake, sent):
    draft_id, card = await draft_card(bot, fake, sl_fake)
    sl_fake.fail_next("views.open", status=200, error="expired_trigger_id")
    sl_fake.press(card["ts"], "dispatch_edit")
    prompt = await sl_fake.wait_for_call("chat.postMessage", where=lambda c: "new text" in c.params.get("text", ""))
    assert prompt.params["thread_ts"] == card["ts"]
    sl_fake.send_dm("Hi Bob, see you at 3.", thread_ts=card["ts"])
    await until(lambda: len(sl_fake.cards()) == 2, what="revision card")
    new = approvals.pending(bot.core.store)[0]
    assert new.revision_of == draft_id and json.loads(new.args_json)["text"] == "Hi Bob, see you at 3."


async def test_a_press_on_a_decided_card_says_so_and_redraws_it(bot, fake, sl_fake, sent):
    draft_id, card = await draft_card(bot, fake, sl_fake)
    await bot.core.reject(draft_id, "console:sam")
    sl_fake.press(card["ts"], "dispatch_approve", str(draft_id), strict=False)  # an old copy of the card
    await until(lambda: sl_fake.ephemerals, what="an answer")
    assert "already decided" in sl_fake.ephemerals[-1]["text"] and sent == []
    await until(lambda: decided(sl_fake, card, "rejected"), what="the card redrawn")


@pytest.mark.parametrize("action, value, answer", [
    ("dispatch_approve", "999", "There is no draft #999."),
    ("dispatch_approve", "1;DROP TABLE", "That button is not valid."),
    ("dispatch_launch", "1", "That button is not valid."),
])
async def test_forged_and_malformed_button_values(bot, fake, sl_fake, sent, action, value, answer):
    draft_id, card = await draft_card(bot, fake, sl_fake)
    sl_fake.press(card["ts"], action, value, strict=False)
    await until(lambda: sl_fake.ephemerals, what="an answer")
    assert sl_fake.ephemerals[-1]["text"] == answer
    assert sent == [] and approvals.get(bot.core.store, draft_id).state == "pending"


async def test_a_card_from_before_a_restart_still_works(sl_settings, fake, sl_fake, sent):
    first = await start_bot(sl_settings)
    draft_id, card = await draft_card(first, fake, sl_fake)
    await first.stop()
    second = await start_bot(sl_settings)
    try:
        sl_fake.press(card["ts"], "dispatch_approve")
        await until(lambda: decided(sl_fake, card, "✅ sent"), what="sent after a restart")
        assert sent == [{"to": "bob@example.com", "text": "Hi Bob"}]
    finally:
        await second.stop()


# Out: text, progress, files -----------------------------------------------------------------------


async def test_markdown_becomes_mrkdwn_and_long_replies_are_split(bot, fake, sl_fake):
    fake.reply("The total is **42** — see [the sheet](https://example.com/s) <!channel>.")
    sl_fake.send_dm("total?")
    await said(sl_fake, "The total is *42* — see <https://example.com/s|the sheet> &lt;!channel&gt;.")
    paragraphs = [f"Paragraph {i}: " + "word " * 150 for i in range(20)]
    fake.reply("\n\n".join(paragraphs))
    sl_fake.send_dm("write a lot")
    await sl_fake.wait_for_call("chat.postMessage", where=lambda c: "Paragraph 19" in c.params.get("text", ""))
    parts = [c.params["text"] for c in sl_fake.calls_to("chat.postMessage") if "Paragraph" in c.params.get("text", "")]
    assert len(parts) > 1 and all(len(p) <= 4000 for p in parts)
    assert [p.strip() for p in "\n\n".join(parts).split("\n\n")] == [p.strip() for p in paragraphs]


async def test_progress_is_one_status_message_updated_in_place(bot, fake, sl_fake, roots):
    for i in range(3):
        (roots / f"f{i}.txt").write_text(str(i))
        fake.reply(tool_uses=[("read_text", {"path": str(roots / f"f{i}.txt")})], delay=0.1)
    fake.reply("Read three files.")
    sl_fake.send_dm("read them")
    await said(sl_fake, "Read three files.")
    status = [c for c in sl_fake.calls_to("chat.postMessage") if c.params.get("text", "").startswith("⏳")]
    assert len(status) == 1
    ts = status[0].result["ts"]
    await until(lambda: sl_fake.message(OWNER_DM, ts)["text"].startswith("✓ Done"), what="status closed")
    assert len([c for c in sl_fake.calls_to("chat.update") if c.params.get("ts") == ts]) >= 2


async def test_a_429_on_the_card_update_is_waited_out_not_replaced(bot, fake, sl_fake, sent):
    draft_id, card = await draft_card(bot, fake, sl_fake)
    messages_before = len(sl_fake.calls_to("chat.postMessage"))
    sl_fake.fail_next("chat.update", status=429, retry_after=1)
    sl_fake.press(card["ts"], "dispatch_approve")
    await until(lambda: decided(sl_fake, card, "✅ sent"), timeout=8, what="card updated")
    updates = [c for c in sl_fake.calls_to("chat.update") if c.params.get("ts") == card["ts"]]
    assert [c.status for c in updates][:2] == [429, 200]
    assert updates[1].at - updates[0].at >= 0.9  # waited the Retry-After
    assert len(sl_fake.calls_to("chat.postMessage")) == messages_before  # no new message instead


async def test_a_file_sent_in_slack_is_saved_and_handed_to_the_task(bot, fake, sl_fake, sl_settings):
    fake.reply("Got the CSV: 2 rows.")
    upload = sl_fake.add_file("../../tracker.csv", b"week,signups\n45,120\n", mimetype="text/csv")
    sl_fake.send_dm("summarise this", files=[upload])
    await said(sl_fake, "Got the CSV: 2 rows.")
    saved = list((sl_settings.home / "inbox").rglob("*.csv"))
    assert len(saved) == 1 and saved[0].read_bytes() == b"week,signups\n45,120\n"
    assert saved[0].parent.parent == sl_settings.home / "inbox"  # the name could not escape
    first = fake.requests[0]["messages"][-1]["content"][0]["text"]
    assert first.startswith("summarise this") and str(saved[0]) in first


async def test_the_bot_token_goes_only_to_slack_for_a_download(bot, fake, sl_fake):
    upload = sl_fake.add_file("notes.txt", b"secret")
    upload["url_private_download"] = upload["url_private"] = "http://127.0.0.2:9/files/notes.txt"
    sl_fake.send_dm("read this", files=[upload])
    await said(sl_fake, "I can't download notes.txt from Slack.")
    assert len(fake.requests) == 0


async def test_files_go_out_with_files_upload_v2(bot, sl_fake, tmp_path):
    report = tmp_path / "recap.csv"
    report.write_text("a,b\n1,2\n")
    result = await bot.front.channel.send_file(f"slack:{OWNER_DM}", report, "Weekly recap")
    assert result.startswith("sent recap.csv")
    upload = sl_fake.uploads[-1]
    assert (upload.channel, upload.filename, upload.content, upload.initial_comment) == (
        OWNER_DM, "recap.csv", b"a,b\n1,2\n", "Weekly recap")


# Commands, pairing, one thread ----------------------------------------------------------------------


async def test_commands_as_dm_text(bot, fake, sl_fake, sent):
    draft_id, _ = await draft_card(bot, fake, sl_fake)
    sl_fake.send_dm("status")
    reply = await sl_fake.wait_for_call("chat.postMessage", where=lambda c: "Waiting for approval" in c.params["text"])
    assert f"#{draft_id}" in reply.params["text"]
    sl_fake.send_dm("Pending")
    await until(lambda: len(sl_fake.cards()) == 2, what="a fresh card")
    sl_fake.send_dm("log")
    await sl_fake.wait_for_call("chat.postMessage", where=lambda c: c.params["text"].startswith("```"))
    sl_fake.send_dm("usage")
    await sl_fake.wait_for_call("chat.postMessage", where=lambda c: "Last 7 days" in c.params["text"])
    sl_fake.send_dm("cancel")
    await said(sl_fake, "Nothing is running.")
    sl_fake.send_dm("help")
    await sl_fake.wait_for_call("chat.postMessage", where=lambda c: "`pair CODE`" in c.params["text"])
    assert len(fake.requests) == 2  # none of the commands reached the model
    fake.reply("Moving it.")
    sl_fake.send_dm("cancel my 3pm with Ann")  # a command word starting a sentence is a task
    await said(sl_fake, "Moving it.")


async def test_settings_toggles_a_connector_policy(bot, fake, sl_fake):
    sl_fake.send_dm("settings")
    call = await sl_fake.wait_for_call("chat.postMessage", where=lambda c: bool(c.params.get("blocks")))
    ts = call.result["ts"]
    sl_fake.press(ts, "dispatch_policy", "notes=ask")
    await until(lambda: gate.current_policies(bot.core.store, {}).get("notes") == "ask")
    await until(lambda: "notes: ask" in sl_fake.text_of(sl_fake.message(OWNER_DM, ts)), what="message redrawn")
    # A replayed press (HTTP mode allows replays within 5 minutes) sets the same value again.
    sl_fake.press(ts, "dispatch_policy", "notes=ask", strict=False)
    await asyncio.sleep(0.2)
    assert gate.current_policies(bot.core.store, {}).get("notes") == "ask"
    sl_fake.press(ts, "dispatch_policy", "notes=off")
    await until(lambda: gate.current_policies(bot.core.store, {}).get("notes") == "off")
    await until(lambda: "notes: off" in sl_fake.text_of(sl_fake.message(OWNER_DM, ts)), what="message redrawn")


async def test_pairing_makes_the_first_user_with_the_code_the_owner(tmp_path, fake, sl_fake, roots, sent):
    settings = slack_settings(tmp_path, fake, sl_fake, roots, DISPATCH_SLACK_OWNERS=None)
    b = await start_bot(settings)
    try:
        ann_dm, stranger_dm = sl_fake.dm_of(ANN), sl_fake.dm_of(STRANGER)
        code, _ = owners.new_pairing_code(b.core.store)
        sl_fake.send_dm("pair WRONG-CODE", user=ANN)
        await sl_fake.wait_for_call("chat.postMessage", where=lambda c: "wrong or has expired" in c.params["text"])
        sl_fake.send_dm(f"pair {code.lower()}", user=ANN)
        await sl_fake.wait_for_call("chat.postMessage", where=lambda c: c.params["text"].startswith("Paired"))
        sl_fake.send_dm(f"/pair {code}", user=STRANGER)  # used up
        await sl_fake.wait_for_call("chat.postMessage", where=lambda c: c.params["channel"] == stranger_dm)
        assert [(o.user_id, o.display_name) for o in owners.owners(b.core.store, "slack")] == [(ANN, "Ann Lee")]
        fake.reply("At your service.")
        sl_fake.send_dm("hello", user=ANN)
        await said(sl_fake, "At your service.", ann_dm)
        sl_fake.send_dm("pair programming tips, please", user=ANN)  # the owner's sentence is a task
        fake.reply("Here are some tips.")
        await said(sl_fake, "Here are some tips.", ann_dm)
        sl_fake.send_dm("hello", user=STRANGER)
        await sl_fake.wait_for_call("chat.postMessage", where=lambda c: "private assistant" in c.params["text"])
        assert len(fake.requests) == 2
    finally:
        await b.stop()


async def test_one_thread_across_telegram_and_slack(tmp_path, fake, sl_fake, tg_fake, roots):
    settings = slack_settings(tmp_path, fake, sl_fake, roots, **telegram_values(tg_fake))
    b = await start_bot(settings, telegram=True)
    try:
        fake.reply("Noted: the Acme budget is 40k.")
        tg_fake.send_message("remember the Acme budget is 40k")
        await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "Noted: the Acme budget is 40k.")
        fake.reply("You told me 40k.")
        sl_fake.send_dm("what was the Acme budget?")
        await said(sl_fake, "You told me 40k.")
        assert "remember the Acme budget is 40k" in json.dumps(fake.requests[-1]["messages"])
        assert not [c for c in tg_fake.calls_to("sendMessage") if c.params.get("text") == "You told me 40k."]
        fake.reply("Back to Telegram.")
        tg_fake.send_message("and on Telegram?")
        await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params.get("text") == "Back to Telegram.")
        assert "what was the Acme budget?" in json.dumps(fake.requests[-1]["messages"])
    finally:
        await b.stop()


async def test_what_comes_from_an_app_that_is_not_running_reaches_the_owners_slack_dm(bot, sl_fake):
    assert bot.front.channel.default_origin() == f"slack:{OWNER_DM}"  # opened at start
    await bot.core.router.text(f"telegram:{TG_OWNER}", "Task #3 was interrupted when Dispatch stopped.")
    await said(sl_fake, "Task #3 was interrupted when Dispatch stopped.")


# Start-up -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    (dict(SLACK_BOT_TOKEN="xoxb-wrong"), "Slack refused SLACK_BOT_TOKEN (invalid_auth)"),
    (dict(SLACK_APP_TOKEN="xapp-wrong"), "Slack refused SLACK_APP_TOKEN (invalid_auth)"),
])
async def test_a_refused_token_is_a_clear_startup_error(tmp_path, fake, sl_fake, roots, override, message):
    settings = slack_settings(tmp_path, fake, sl_fake, roots, **override)
    with pytest.raises(StartupError) as exc:
        await run(settings, terminal=False, slack_options=FAST)
    assert message in str(exc.value)
    assert "wrong" not in str(exc.value) and sl_fake.bot_token not in str(exc.value)
    assert not sl_fake.open_connections


def test_slack_settings_problems(tmp_path):
    def problems(**values: Any) -> list[str]:
        return [p for p in make_settings(tmp_path, "http://127.0.0.1:1", None, **values).problems() if "SLACK" in p]

    assert problems() == []
    assert problems(SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1") == []
    assert problems(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s") == []
    assert "SLACK_APP_TOKEN (Socket Mode" in problems(SLACK_BOT_TOKEN="xoxb-1")[0]
    assert "start with xoxb-" in problems(SLACK_BOT_TOKEN="xapp-1", SLACK_APP_TOKEN="xapp-2")[0]
    assert "start with xapp-" in problems(SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xoxb-2")[0]
    assert "SLACK_BOT_TOKEN is not" in problems(SLACK_USER_TOKEN="xoxp-1")[0]
    assert "member ids" in problems(SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1",
                                    DISPATCH_SLACK_OWNERS="U012AB3CD,sam")[0]


async def test_dispatch_run_serves_slack_without_a_terminal_and_stops_on_sigterm(tmp_path, fake, sl_fake, roots):
    env = env_for(tmp_path, ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=fake.url,
                  SLACK_BOT_TOKEN=sl_fake.bot_token, SLACK_APP_TOKEN=sl_fake.app_token,
                  SLACK_API_URL=sl_fake.api_url, DISPATCH_SLACK_OWNERS=OWNER, DISPATCH_ROOTS=str(roots),
                  DISPATCH_TIMEZONE="UTC")
    env = {k: v for k, v in env.items() if not k.startswith("TELEGRAM_")}
    async with dispatch_run(tmp_path, env) as proc:
        await sl_fake.wait_for_connections(1, timeout=30)
        fake.reply("Hello from the desktop.")
        sl_fake.send_dm("hi")
        await sl_fake.wait_for_call("chat.postMessage", where=lambda c: c.params.get("text") == "Hello from the desktop.",
                                    timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    err = (await proc.stderr.read()).decode()
    assert "Traceback" not in err
    log_text = (tmp_path / "home" / "dispatch.log").read_text()
    assert "ERROR" not in log_text and "WARNING dispatch.slack" not in log_text
    for secret in ("sk-ant-test", sl_fake.bot_token, sl_fake.app_token):
        assert secret not in err and secret not in log_text
    await until(lambda: not sl_fake.open_connections, what="the socket closed on exit")


async def test_a_quick_answer_notifies_once_with_no_status_line(sl_settings, fake, sl_fake, sent):
    b = await start_bot(sl_settings)
    b.front.channel.status_after = 5.0  # as shipped: every Slack message notifies the phone
    try:
        fake.reply("Quick answer.")
        sl_fake.send_dm("what time is it in Tokyo?")
        await said(sl_fake, "Quick answer.")
        await asyncio.sleep(0.2)
        assert [c.params.get("text") for c in sl_fake.calls_to("chat.postMessage")] == ["Quick answer."]
    finally:
        await b.stop()
