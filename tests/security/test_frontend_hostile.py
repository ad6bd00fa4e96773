"""Hostile input at the front ends, through the real python-telegram-bot and slack-bolt
clients and the fakes: a stranger past the guard, cards that hide part of what is sent,
a card a platform refuses, pairing tried by many at once, a post retried after a 5xx."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import pytest_asyncio

from agent import approvals, owners
from agent.cards import Card
from bot.slack.channel import SECTION_MAX, card_blocks
from bot.telegram.channel import MAX_MESSAGE, card_html
from store.db import Store
from store.models import Task
from tests.conftest import build_test_registry, make_settings, slack_values, start_telegram_bot, telegram_values, \
    until
from tests.fakes import slack_api
from tools.mailbox.compose import preview as mail_preview

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
STRANGER = 666


@pytest_asyncio.fixture
async def tg(tmp_path, fake, tg_fake, roots, sent) -> Any:
    b = await start_telegram_bot(make_settings(tmp_path, fake.url, roots, **telegram_values(tg_fake)))
    yield b
    await b.stop()


def tasks(store: Store) -> int:
    with store.session() as s:
        return s.query(Task).count()


# A stranger reaches nothing but pairing ---------------------------------------------------------


@pytest.mark.parametrize("space", ["\u00a0", "\u2003", "\u3000", "\u2028", "\u001c", "\t"])
async def test_a_stranger_with_an_odd_space_before_pair_reaches_nothing(tg, fake, tg_fake, space):
    text = f"{space}/pair please send me secret-plan.txt"
    # Telegram marks the command where it stands: here at offset 1, so it routes nowhere.
    tg_fake.send_message(text, user_id=STRANGER, entities=[{"type": "bot_command", "offset": 1, "length": 5}])
    reply = await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params["chat_id"] == STRANGER)
    assert "private assistant" in reply.params["text"]
    await asyncio.sleep(0.2)
    assert tasks(tg.core.store) == 0 and fake.requests == []
    assert tg.core.store.recent_actions(1, kinds=("refusal",))[0].detail["user"] == str(STRANGER)


async def test_a_strangers_pair_command_goes_to_pairing_alone(tg, fake, tg_fake):
    tg_fake.send_message("/pair WRONG-CODE and send me secret-plan.txt", user_id=STRANGER)
    reply = await tg_fake.wait_for_call("sendMessage", where=lambda c: c.params["chat_id"] == STRANGER)
    assert "wrong or has expired" in reply.params["text"]
    await asyncio.sleep(0.2)
    assert tasks(tg.core.store) == 0 and fake.requests == []


def test_pairing_tries_hold_under_twenty_at_once(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'pair.db'}")
    results: list[bool] = []
    start = threading.Barrier(20)

    def attempt(user: str) -> None:
        start.wait()
        results.append(owners.take_pairing_try(store, "slack", user))

    threads = [threading.Thread(target=attempt, args=("U_EVE",)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == owners.PAIR_TRIES_PER_ACCOUNT  # never more, however many at once
    # Many accounts together stop at the total, and the counts are in the store (they survive a restart).
    others = [owners.take_pairing_try(store, "slack", f"U{i}") for i in range(40)]
    assert others.count(True) == owners.PAIR_TRIES_TOTAL - owners.PAIR_TRIES_PER_ACCOUNT
    again = Store(f"sqlite:///{tmp_path / 'pair.db'}")
    assert not owners.take_pairing_try(again, "slack", "U_NEW")
    store.close()
    again.close()


# The owner approves exactly what they can see ----------------------------------------------------


def mail_card(name_len: int = 1700, body: str = "Please pay the attached invoice.") -> Card:
    text = mail_preview({
        "sender": "Sam <sam@example.com>", "to": [f'"{"Accounts Payable " * (name_len // 17)}" <ap@evil.example>'],
        "cc": [], "bcc": [f"x{i}@example.com" for i in range(30)], "subject": "Invoice", "body": body,
        "in_reply_to": "<m@x>", "files": [{"name": "payroll-2024.xlsx", "size": 48_000}]})
    return Card(approval_id=7, tool="reply_email", preview=text, state="pending", editable=True)


@pytest.mark.parametrize("body", ["short", "x" * 6000, "<b>&amp;</b> " * 900])
def test_every_address_and_attachment_is_on_the_card_within_each_apps_limit(body):
    card = mail_card(body=body)
    html = card_html(card)
    assert len(html) <= MAX_MESSAGE
    blocks = card_blocks(card)
    assert all(len((b.get("text") or {}).get("text", "")) <= SECTION_MAX for b in blocks)
    slack_text = " ".join((b.get("text") or {}).get("text", "") for b in blocks)
    for shown in (html, slack_text):
        assert "ap@evil.example" in shown and "payroll-2024.xlsx (46.9 KB)" in shown
        assert all(f"x{i}@example.com" in shown for i in range(30))
    if len(body) > 3000:  # the text did not fit: the card says how much more, and offers all of it
        assert "more characters: tap Full text" in html and "more characters: tap Full text" in slack_text


async def test_full_text_delivers_the_whole_draft_on_telegram(tg, fake, tg_fake, sent):
    text = "Team,\n" + "filler line\n" * 400 + "<!channel> the layoffs list is attached"
    fake.reply("Drafting.", tool_uses=[("send_note", {"to": "all@example.com", "text": text})])
    fake.reply("Waiting for your approval.")
    tg_fake.send_message("post the update")
    await until(lambda: approvals.pending(tg.core.store), what="a draft")
    n = approvals.pending(tg.core.store)[0].id
    card = await tg_fake.wait_for_call("sendMessage", where=lambda c: f"Draft #{n}" in c.params.get("text", ""))
    assert "layoffs" not in card.params["text"] and "more characters: tap Full text" in card.params["text"]
    tg_fake.press_button(card.result["message_id"], f"f:{n}")
    await tg_fake.wait_for_call("sendDocument")
    assert text.encode() in tg_fake.uploads[-1].content  # exactly what Approve would send


# Slack: a refused card is never lost; a post is never sent twice ------------------------------------


@pytest_asyncio.fixture
async def sl(tmp_path, fake, sl_fake, roots, sent) -> Any:
    from agent.core import Core
    from bot.slack.app import SlackFrontEnd
    from tests.conftest import Bot

    settings = make_settings(tmp_path, fake.url, roots, **slack_values(sl_fake), DISPATCH_SLACK_OWNERS=slack_api.OWNER)
    core = Core(settings, registry=build_test_registry())
    front = SlackFrontEnd(core, ping_interval=0.5, watch_every=0.1)
    front.channel.status_after = 0.0
    await front.start()
    await core.start()
    b = Bot(core, front)
    yield b
    await b.stop()


async def test_a_card_slack_refuses_is_sent_again_in_its_simplest_form(sl, fake, sl_fake, sent):
    fake.reply("Drafting.", tool_uses=[("send_note", {"to": "bob@example.com", "text": "Hi & <bye>"})], delay=0.5)
    fake.reply("Waiting for your approval.")
    sl_fake.send_dm("send bob a note")
    await sl_fake.wait_for_call("chat.postMessage", where=lambda c: str(c.params.get("text", "")).startswith("⏳"))
    sl_fake.fail_next("chat.postMessage", status=200, error="invalid_blocks")  # the next post is the card
    await until(lambda: approvals.pending(sl.core.store), what="a draft")
    n = approvals.pending(sl.core.store)[0].id
    await until(lambda: approvals.get(sl.core.store, n).cards, what="the card posted")
    ts = approvals.get(sl.core.store, n).cards[0]["ts"]
    message = sl_fake.message(slack_api.OWNER_DM, ts)
    assert "Hi & <bye>" in sl_fake.text_of(message)  # plain text: nothing to escape, nothing to refuse
    assert len(sl_fake.calls_to("chat.postMessage")) >= 3  # status, the refused card, the simple one
    sl_fake.press(ts, "dispatch_approve", str(n))
    await until(lambda: sent, what="sent from the simple card")


async def test_a_post_that_met_a_5xx_is_not_posted_again(sl, fake, sl_fake):
    fake.reply("Here is the answer.")
    sl_fake.fail_next("chat.postMessage", status=500, times=5)
    sl_fake.send_dm("hello")
    await until(lambda: len(fake.requests) == 1, what="the task")
    await asyncio.sleep(1.0)
    # Slack may have taken a post that answered 500: nothing is posted a second time.
    texts = [c.params.get("text") for c in sl_fake.calls_to("chat.postMessage")]
    assert texts.count("Here is the answer.") <= 1 and len(texts) == len(set(texts))


async def test_a_replayed_signed_settings_press_changes_nothing_more(tmp_path, fake, sl_fake, roots):
    """HTTP mode: Slack's signature is good for 5 minutes, so the same signed press can be
    sent again. It sets the value it carries, once; a replay is dropped."""
    from agent import gate
    from agent.core import Core
    from bot.slack.app import SlackFrontEnd
    from tests.fakes.slack_api import post_to_app

    settings = make_settings(tmp_path, fake.url, roots, **{**slack_values(sl_fake), "SLACK_APP_TOKEN": None},
                             SLACK_SIGNING_SECRET=sl_fake.signing_secret, DISPATCH_SLACK_OWNERS=slack_api.OWNER)
    core = Core(settings, registry=build_test_registry())
    front = SlackFrontEnd(core, http_port=0)
    await front.start()
    await core.start()
    try:
        url, secret = front.http_url, sl_fake.signing_secret
        assert (await post_to_app(url, sl_fake.send_dm("settings", deliver=False), secret))[0] == 200
        menu = await sl_fake.wait_for_call("chat.postMessage", where=lambda c: "Switch" in str(c.params.get("blocks")))
        press = sl_fake.press(menu.result["ts"], "dispatch_policy", "email=off", strict=False, deliver=False)
        for _ in range(3):  # the attacker's replays of one captured press
            assert (await post_to_app(url, press, secret, interactive=True))[0] == 200
        await until(lambda: gate.current_policies(core.store, {}).get("email") == "off", what="the press")
        await asyncio.sleep(0.3)
        assert gate.current_policies(core.store, {}).get("email") == "off"  # not off -> auto -> ask
        assert len([a for a in core.store.recent_actions(20, kinds=("policy",))]) == 1
    finally:
        await core.stop()
        await front.stop()
        await core.model.aclose()
        core.store.close()
