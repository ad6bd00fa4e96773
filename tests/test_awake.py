"""Keep-awake tells the truth: active with the method wakepy used where it works
(wakepy's own fake-success switch stands in for a desktop here), and plainly not
active — with why and what to do — where nothing can keep the machine awake."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import pytest_asyncio
import wakepy

from agent.awake import FAKE_METHOD, KeepAwake
from store.db import Store
from tests.conftest import TG_OWNER, make_settings, start_telegram_bot, telegram_values, until
from tests.fakes.telegram_api import FakeTelegram

OWNER = TG_OWNER


@pytest.fixture
def store(settings: Any) -> Any:
    s = Store(settings.db_url)
    yield s
    s.close()


async def test_fake_success_is_reported_active_with_the_method(settings, store, monkeypatch):
    monkeypatch.setenv("WAKEPY_FAKE_SUCCESS", "1")
    awake = KeepAwake(settings, store)
    try:
        status = await awake.start()
        assert status.wanted and status.active and status.method == FAKE_METHOD
        assert wakepy.modecount() == 1  # the mode is really held...
        assert f"active (method: {FAKE_METHOD})" in status.text()
        assert "simulated" in status.text()  # ...and it says it is only simulated
        off = await awake.set(False)
        assert not off.wanted and not off.active and wakepy.modecount() == 0  # released
        assert "Keep-awake is off" in off.text()
        assert (await awake.set(True)).active
    finally:
        await awake.stop()
    assert wakepy.modecount() == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the headless case is a Linux one")
async def test_headless_linux_is_reported_as_not_kept_awake(settings, store, monkeypatch):
    monkeypatch.delenv("WAKEPY_FAKE_SUCCESS", raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)  # no session bus, as on a headless box
    awake = KeepAwake(settings, store)
    try:
        status = await awake.start()
        text = status.text()
        assert status.wanted and not status.active and not status.method
        assert "NOT active: nothing is keeping this computer awake" in text
        assert "kept from sleeping" not in text  # never claims otherwise
        assert "DBUS_SESSION_BUS_ADDRESS" in text and "systemctl mask sleep.target" in text  # why, and the fix
        assert wakepy.modecount() == 0  # a failed attempt holds nothing
        assert awake._retry is not None and not awake._retry.done()  # tried again later
    finally:
        await awake.stop()


async def test_config_default_and_the_chat_choice_wins(tmp_path, fake, roots, monkeypatch):
    monkeypatch.setenv("WAKEPY_FAKE_SUCCESS", "1")
    settings = make_settings(tmp_path, fake.url, roots, DISPATCH_KEEP_AWAKE="false")
    store = Store(settings.db_url)
    awake = KeepAwake(settings, store)
    try:
        assert not (await awake.start()).active and wakepy.modecount() == 0
        assert (await awake.set(True)).active
        assert store.recent_actions(1, kinds=("policy",))[0].summary == "keep-awake set to on"
        assert KeepAwake(settings, store).wanted()  # stored: survives a restart
    finally:
        await awake.stop()
        store.close()


# From the phone (`tg_fake`, the fake Bot API, is in conftest.py) ---------------------


@pytest_asyncio.fixture
async def bot(tmp_path, fake, tg_fake, roots, monkeypatch) -> Any:
    monkeypatch.setenv("WAKEPY_FAKE_SUCCESS", "1")
    b = await start_telegram_bot(make_settings(tmp_path, fake.url, roots, **telegram_values(tg_fake)))
    yield b.core
    await b.stop()


async def reply_to(tg_fake: FakeTelegram, text: str) -> str:
    before = len(tg_fake.calls_to("sendMessage"))
    tg_fake.send_message(text)
    await tg_fake.wait_for_call("sendMessage", count=before + 1)
    return tg_fake.calls_to("sendMessage")[-1].params["text"]


async def test_awake_from_telegram(bot, tg_fake):
    assert "active (method: WakepyFakeSuccess)" in await reply_to(tg_fake, "/awake")
    assert "Keep-awake is off" in await reply_to(tg_fake, "/awake off")
    assert not bot.awake.status().active and wakepy.modecount() == 0
    assert "active (method: WakepyFakeSuccess)" in await reply_to(tg_fake, "/awake on")
    assert "Usage: /awake on | off" in await reply_to(tg_fake, "/awake maybe")


async def test_keep_awake_button_in_settings(bot, tg_fake):
    tg_fake.send_message("/settings")
    call = await tg_fake.wait_for_call("sendMessage", where=lambda c: "Tap a connector" in c.params.get("text", ""))
    msg = tg_fake.messages[(OWNER, call.result["message_id"])]
    labels = [b["text"] for row in msg["reply_markup"]["inline_keyboard"] for b in row]
    assert "keep-awake: on, active" in labels
    q = tg_fake.press_button(call.result["message_id"], "k:awake:off")
    await until(lambda: q in tg_fake.answers)
    assert tg_fake.answers[q]["text"] == "keep-awake: off"
    await until(lambda: "keep-awake: off" in [b["text"] for row in tg_fake.messages[(OWNER, call.result["message_id"])]
                                              ["reply_markup"]["inline_keyboard"] for b in row])
    assert not bot.awake.wanted()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the headless case is a Linux one")
async def test_where_it_cannot_work_one_short_line_and_one_log_line(settings, store, monkeypatch, caplog):
    import asyncio

    from agent import awake as awake_module

    monkeypatch.delenv("WAKEPY_FAKE_SUCCESS", raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setattr(awake_module, "RETRY_S", 0.01)
    calls = 0
    real = awake_module._activate

    def counting(self: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(self)

    monkeypatch.setattr(awake_module, "_activate", counting)
    caplog.set_level("INFO", logger="dispatch.awake")
    awake = KeepAwake(settings, store)
    try:
        status = await awake.start()
        line = status.line()
        assert "\n" not in line and len(line) <= 110 and "dispatch doctor" in line
        await until(lambda: calls >= 4, what="several retries")
        await asyncio.sleep(0.05)
    finally:
        await awake.stop()
    warnings = [r for r in caplog.records if r.name == "dispatch.awake" and "not active" in r.getMessage()]
    assert len(warnings) == 1  # the same reason is logged once, however often it is retried
