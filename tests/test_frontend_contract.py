"""The front-end contract: the same scenarios against every front end, through the real
python-telegram-bot and slack-bolt clients and the loopback fakes (and the terminal).

An adapter says how a person does a thing on that app (send a message, press a
button, read what the presser was told, read a card); the scenarios are written
once. The next front end passes the same suite by adding an adapter.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio

from agent import approvals, gate
from bot.slack.app import SlackFrontEnd
from tests.conftest import TG_OWNER, Bot, build_test_registry, make_settings, slack_values, start_telegram_bot, \
    telegram_values, until
from tests.fakes import slack_api
from tests.helpers import DISPATCH, env_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
STRANGER_TG, STRANGER_SL = 666, slack_api.STRANGER
LETTER = {"approve": "a", "reject": "r", "edit": "e"}


class TelegramAdapter:
    name = "telegram"

    def __init__(self, tg_fake: Any) -> None:
        self.fake = tg_fake

    def settings(self) -> dict[str, Any]:
        return telegram_values(self.fake)

    async def start(self, settings: Any) -> Bot:
        return await start_telegram_bot(settings)

    def say(self, text: str) -> None:
        self.fake.send_message(text)

    def cards(self) -> list[int]:
        return [mid for (chat, mid), m in self.fake.messages.items() if chat == TG_OWNER and
                m.get("text", "").startswith("Draft #")]

    def card_text(self, card: int) -> str:
        return self.fake.messages[(TG_OWNER, card)]["text"]

    def buttons(self, card: int) -> list[str]:
        markup = self.fake.messages[(TG_OWNER, card)].get("reply_markup") or {}
        return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]

    def press(self, card: int, action: str, n: int, *, stranger: bool = False) -> Any:
        return self.fake.press_button(card, f"{LETTER[action]}:{n}", strict=False, chat_id=TG_OWNER,
                                      user_id=STRANGER_TG if stranger else TG_OWNER)

    async def told(self, token: Any) -> str:
        await until(lambda: token in self.fake.answers, what="the press answered")
        return self.fake.answers[token].get("text", "")

    def slow_card_edits(self, seconds: int) -> None:
        self.fake.fail_next("editMessageText", status=429, retry_after=seconds)

    async def settings_press(self, connector: str) -> None:
        self.fake.send_message("/settings")
        call = await self.fake.wait_for_call("sendMessage", where=lambda c: "Tap a connector" in c.params["text"])
        mid = call.result["message_id"]
        data = next(d for d in self.buttons(mid) if d.startswith(f"p:{connector}:"))
        q = self.fake.press_button(mid, data)
        await until(lambda: q in self.fake.answers)


class SlackAdapter:
    name = "slack"

    def __init__(self, sl_fake: Any) -> None:
        self.fake = sl_fake

    def settings(self) -> dict[str, Any]:
        return dict(slack_values(self.fake), DISPATCH_SLACK_OWNERS=slack_api.OWNER)

    async def start(self, settings: Any) -> Bot:
        from agent.core import Core

        core = Core(settings, registry=build_test_registry())
        front = SlackFrontEnd(core, ping_interval=0.5, watch_every=0.1)
        front.channel.progress_every = 0.05
        front.channel.status_after = 0.0
        await front.start()
        await core.start()
        return Bot(core, front)

    def say(self, text: str) -> None:
        self.fake.send_dm(text)

    def cards(self) -> list[str]:
        return [c["ts"] for c in self.fake.cards()]

    def card_text(self, card: str) -> str:
        return self.fake.text_of(self.fake.message(slack_api.OWNER_DM, card))

    def buttons(self, card: str) -> list[str]:
        return [f"{b['action_id']}={b.get('value')}" for b in
                self.fake.buttons(self.fake.message(slack_api.OWNER_DM, card))]

    def press(self, card: str, action: str, n: int, *, stranger: bool = False) -> Any:
        user = STRANGER_SL if stranger else slack_api.OWNER
        before = len(self.fake.calls_to("chat.postEphemeral"))
        self.fake.press(card, f"dispatch_{action}", str(n), strict=False, user=user)
        return (user, before)

    async def told(self, token: Any) -> str:
        user, before = token
        calls = await self.fake.wait_for_call("chat.postEphemeral", count=before + 1,
                                              where=lambda c: c.params.get("user") == user)
        return calls.params.get("text", "")

    def slow_card_edits(self, seconds: int) -> None:
        self.fake.fail_next("chat.update", status=429, retry_after=seconds)

    async def settings_press(self, connector: str) -> None:
        self.fake.send_dm("settings")
        call = await self.fake.wait_for_call("chat.postMessage", where=lambda c: bool(c.params.get("blocks"))
                                             and "Switch" in str(c.params.get("blocks")))
        ts = call.result["ts"]
        blocks = self.fake.message(slack_api.OWNER_DM, ts)["blocks"]
        value = next(b["accessory"]["value"] for b in blocks if b.get("accessory", {}).get("action_id") ==
                     "dispatch_policy" and b["accessory"]["value"].startswith(f"{connector}="))
        before = len(self.fake.calls_to("chat.update"))
        self.fake.press(ts, "dispatch_policy", value)
        await self.fake.wait_for_call("chat.update", count=before + 1)


@pytest.fixture(params=["telegram", "slack"])
def adapter(request: Any, tg_fake: Any, sl_fake: Any) -> Any:
    return TelegramAdapter(tg_fake) if request.param == "telegram" else SlackAdapter(sl_fake)


@pytest_asyncio.fixture
async def app(adapter: Any, tmp_path: Any, fake: Any, roots: Any, sent: Any) -> Any:
    b = await adapter.start(make_settings(tmp_path, fake.url, roots, **adapter.settings()))
    yield b
    await b.stop()


async def a_draft(adapter: Any, fake: Any, core: Any, text: str = "Hi Bob") -> tuple[int, Any]:
    before = len(adapter.cards())
    fake.reply("Drafting.", tool_uses=[("send_note", {"to": "bob@example.com", "text": text})])
    fake.reply("The note is waiting for your approval.")
    adapter.say(f"send bob a note: {text}")
    await until(lambda: len(adapter.cards()) > before, what="a card")
    await until(lambda: core.running_id is None and not core.status().queued, what="the task done")
    return approvals.pending(core.store)[-1].id, adapter.cards()[-1]


def decided(adapter: Any, card: Any, words: str) -> bool:
    return words in adapter.card_text(card) and not [b for b in adapter.buttons(card) if "approve" in b
                                                      or b.startswith("a:")]


# The scenarios ------------------------------------------------------------------------------


async def test_double_press_the_loser_is_told_already_decided(adapter, app, fake, sent):
    n, card = await a_draft(adapter, fake, app.core)
    first, second = adapter.press(card, "approve", n), adapter.press(card, "approve", n)
    await until(lambda: approvals.get(app.core.store, n).state == "sent")
    assert (await adapter.told(second)).startswith(f"Draft #{n} was already decided: ")
    if adapter.name == "telegram":  # (Slack answers a winning press with the redrawn card, not a note)
        assert await adapter.told(first) == "Approved — sending…"
    assert len(sent) == 1
    await until(lambda: decided(adapter, card, "sent"), what="the card redrawn")


async def test_a_press_on_a_decided_card_changes_nothing(adapter, app, fake, sent):
    n, card = await a_draft(adapter, fake, app.core)
    await adapter.told(adapter.press(card, "approve", n)) if adapter.name == "telegram" else \
        adapter.press(card, "approve", n)
    await until(lambda: decided(adapter, card, "sent"))
    said = await adapter.told(adapter.press(card, "reject", n))
    assert said == f"Draft #{n} was already decided: ✅ sent."
    assert approvals.get(app.core.store, n).state == "sent" and len(sent) == 1


async def test_a_press_naming_another_draft_touches_neither(adapter, app, fake, sent):
    first, card1 = await a_draft(adapter, fake, app.core, "one")
    second, card2 = await a_draft(adapter, fake, app.core, "two")
    before1, before2 = adapter.card_text(card1), adapter.card_text(card2)
    said = await adapter.told(adapter.press(card1, "approve", second))  # draft #2's data on #1's card
    assert said == "That button does not belong to this card."
    await asyncio.sleep(0.3)
    assert [approvals.get(app.core.store, i).state for i in (first, second)] == ["pending", "pending"]
    assert adapter.card_text(card1) == before1 and adapter.card_text(card2) == before2
    assert adapter.buttons(card1) and sent == []


async def test_a_strangers_press_is_refused(adapter, app, fake, sent):
    n, card = await a_draft(adapter, fake, app.core)
    assert await adapter.told(adapter.press(card, "approve", n, stranger=True)) == "This button is not for you."
    await asyncio.sleep(0.2)
    assert approvals.get(app.core.store, n).state == "pending" and sent == []


async def test_approve_while_card_edits_are_rate_limited_sends_at_once(adapter, app, fake, sent):
    n, card = await a_draft(adapter, fake, app.core)
    adapter.slow_card_edits(4)  # the card edit waits 4 s for Retry-After; the send must not
    adapter.press(card, "approve", n)
    await until(lambda: sent, timeout=2.0, what="the send, without waiting for the card edit")
    assert "sent" not in adapter.card_text(card).splitlines()[-1]  # the edit is still waiting out its 429
    await until(lambda: decided(adapter, card, "sent"), timeout=10, what="the card edit after Retry-After")


async def test_computer_switch_sets_the_same_policy_everywhere(adapter, app):
    await adapter.settings_press("computer")
    policies = gate.current_policies(app.core.store, {})
    assert policies["computer"] == "auto"  # control has no "ask": one tap turns it on, on every app


async def test_cancel_then_a_new_request_is_a_turn_of_its_own(adapter, app, fake):
    fake.reply("slow", delay=5)
    adapter.say("slow task 1701")
    await until(lambda: app.core.running_id is not None, what="the slow task running")
    adapter.say("cancel" if adapter.name == "slack" else "/cancel")
    await until(lambda: app.core.running_id is None, what="cancelled")
    fake.reply("pong")
    adapter.say("ping 1702")
    await until(lambda: fake.requests and "ping 1702" in str(fake.requests[-1]["messages"][-1]),
                what="the next request")
    messages = fake.requests[-1]["messages"]
    last = messages[-1]
    assert last["role"] == "user" and "1701" not in str(last["content"]) and "ping 1702" in str(last["content"])
    earlier = " ".join(str(m["content"]) for m in messages[:-1])
    assert "slow task 1701" in earlier and "cancelled task" in earlier  # marked, not redone


async def test_a_decision_in_another_process_redraws_every_card(adapter, app, fake, tmp_path):
    app.core.api.set_policy("memory", "ask")
    fake.reply("Saving.", tool_uses=[("remember", {"note": "Numbers live in ~/Finance"})])
    fake.reply("Waiting for your approval.")
    adapter.say("remember where the numbers are")
    await until(lambda: adapter.cards(), what="a card")
    n, card = approvals.pending(app.core.store)[-1].id, adapter.cards()[-1]
    env = env_for(tmp_path, ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=fake.url)
    proc = await asyncio.create_subprocess_exec(*DISPATCH, "approve", str(n), cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "approved and saved" in out.decode()
    await until(lambda: decided(adapter, card, "saved"), timeout=4, what="the card redrawn by the sweep")


async def test_terminal_double_approve_and_already_decided(core, fake, sent):
    from bot.console import handle_line

    said: list[str] = []
    fake.reply("Drafting.", tool_uses=[("send_note", {"to": "bob@example.com", "text": "Hi"})])
    fake.reply("Waiting.")
    await core.api.submit("send bob a note", "console:local")
    await until(lambda: approvals.pending(core.store), what="a draft")
    n = approvals.pending(core.store)[0].id
    await asyncio.gather(handle_line(core, f"/approve {n}", said.append),
                         handle_line(core, f"/approve {n}", said.append))
    assert len(sent) == 1
    assert sorted(said)[0] == "Approved — sending…" and "already decided" in sorted(said)[1]


# The terminal: the same scenarios where a terminal has them (its "buttons" are typed commands) ------


@pytest_asyncio.fixture
async def console_core(settings, sent) -> Any:
    import io

    from agent.core import Core
    from bot.console import ConsoleChannel
    from tests.conftest import close_core

    core = Core(settings, registry=build_test_registry())
    out = io.StringIO()
    core.attach(ConsoleChannel(out))
    await core.start()
    core.out = out  # type: ignore[attr-defined]
    yield core
    await close_core(core)


async def test_terminal_cancel_then_a_new_request_is_a_turn_of_its_own(console_core, fake):
    from bot.console import handle_line

    said: list[str] = []
    fake.reply("slow", delay=5)
    await handle_line(console_core, "slow task 1701", said.append)
    await until(lambda: console_core.running_id is not None, what="running")
    await handle_line(console_core, "/cancel", said.append)
    fake.reply("pong")
    await handle_line(console_core, "ping 1702", said.append)
    await until(lambda: fake.requests and "ping 1702" in str(fake.requests[-1]["messages"][-1]), what="next request")
    assert "1701" not in str(fake.requests[-1]["messages"][-1]["content"])
    assert said[0].startswith("Cancelled task #")


async def test_terminal_card_shows_a_decision_taken_by_another_process(console_core, fake):
    console_core.api.set_policy("memory", "ask")
    fake.reply("Saving.", tool_uses=[("remember", {"note": "Numbers live in ~/Finance"})])
    fake.reply("Waiting.")
    await console_core.api.submit("remember where the numbers are", "console:local")
    await until(lambda: approvals.pending(console_core.store), what="a draft")
    n = approvals.pending(console_core.store)[0].id
    assert "needs your approval" in console_core.out.getvalue()
    approvals.reject(console_core.store, n, "cli:sam")  # as `dispatch reject N` does on the store
    await until(lambda: "discarded — not saved" in console_core.out.getvalue(), what="the card's outcome printed")


async def test_terminal_computer_switch_sets_the_same_policy(console_core):
    from bot.console import handle_line

    await handle_line(console_core, "/computer on", lambda _: None)
    assert gate.current_policies(console_core.store, {})["computer"] == "auto"
