"""`dispatch doctor` against the loopback fakes: the Bot API's getMe, Slack's
auth.test, a one-token model call; a wrong token is reported with what to fix, and
no secret ever appears in the report."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from bot.ops import doctor
from bot.ops.cli import main
from tests.conftest import make_settings, telegram_values

KEY = "sk-ant-test-secret-key"
# `tg_fake` (the fake Bot API) is in conftest.py.


@pytest_asyncio.fixture
async def slack_fake() -> Any:
    """Just enough of Slack's Web API: auth.test for one good token."""
    async def auth_test(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") == "Bearer xoxb-good":
            return web.json_response({"ok": True, "url": "https://acme.slack.com/", "team": "Acme",
                                      "user": "dispatch", "team_id": "T1", "user_id": "U1"})
        return web.json_response({"ok": False, "error": "invalid_auth"})

    app = web.Application()
    app.router.add_post("/api/auth.test", auth_test)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/"
    await runner.cleanup()


@pytest.fixture(autouse=True)
def headless(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("WAKEPY_FAKE_SUCCESS", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no service installed
    monkeypatch.chdir(tmp_path)


def by_name(checks: list[tuple[str, bool, str]]) -> dict[str, tuple[bool, str]]:
    return {name: (ok, msg) for name, ok, msg in checks}


async def test_everything_checks_out(tmp_path, fake, tg_fake, roots):
    settings = make_settings(tmp_path, fake.url, roots, **telegram_values(tg_fake, owner=1001))
    fake.reply("p")
    checks = by_name(await doctor.run_checks(settings))
    assert checks["Settings"][0] and checks["Data folder"][0]
    assert checks["Model"] == (True, f"claude-sonnet-4-6 answered at {fake.url}")
    assert fake.requests[-1]["max_tokens"] == 1  # one token, not a real turn
    assert checks["Telegram"] == (True, "token works: @dispatch_test_bot (Dispatch)")
    assert tg_fake.calls_to("getMe")
    assert checks["Telegram owner"] == (True, "Dispatch answers 1001")
    assert checks["Email"][0] and "not set up" in checks["Email"][1]
    assert checks["Display"] == (True, "none (only needed for computer control, which is off)")
    assert checks["Keep-awake"] == (True, "works here (method: WakepyFakeSuccess) (simulated by WAKEPY_FAKE_SUCCESS)")
    assert checks["Service"][0] and "not installed" in checks["Service"][1]
    fake.reply("p")
    text, ok = doctor.report(await doctor.run_checks(settings))
    assert ok and text.endswith("Everything checked out.")


async def test_a_wrong_telegram_token_says_what_to_fix(tmp_path, fake, tg_fake, roots):
    settings = make_settings(tmp_path, fake.url, roots, TELEGRAM_BOT_TOKEN="123456:WRONG-token",
                             TELEGRAM_API_URL=tg_fake.url)
    fake.reply("p")
    checks = by_name(await doctor.run_checks(settings))
    ok, message = checks["Telegram"]
    assert not ok
    assert message.startswith("Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized)")
    assert "@BotFather" in message and "WRONG-token" not in message


async def test_a_refused_key_and_an_unknown_model(tmp_path, fake, roots):
    settings = make_settings(tmp_path, fake.url, roots)
    fake.error(401)
    assert await doctor.check_model(settings) == (
        "Model", False, f"{fake.url}: The model service refused the API key (401). Check ANTHROPIC_API_KEY.")
    fake.error(404)
    ok, message = (await doctor.check_model(settings))[1:]
    assert not ok and "DISPATCH_MODEL" in message
    assert KEY not in message


async def test_no_owner_paired_yet(tmp_path, fake, tg_fake, roots):
    settings = make_settings(tmp_path, fake.url, roots, **telegram_values(tg_fake, owner=None))
    checks = by_name(await doctor.check_telegram(settings))
    assert checks["Telegram owner"] == (False, "no account is paired, so Dispatch answers nobody there: run "
                                               "`dispatch pair` and send the code to the bot.")


async def test_slack_auth_test(tmp_path, fake, roots, slack_fake):
    good = make_settings(tmp_path, fake.url, roots, SLACK_BOT_TOKEN="xoxb-good", SLACK_APP_TOKEN="xapp-1",
                         SLACK_API_URL=slack_fake, DISPATCH_SLACK_OWNERS="U012AB3CD")
    checks = by_name(await doctor.check_slack(good))
    if not checks:
        pytest.skip("this Dispatch has no Slack settings")
    assert checks["Slack"] == (True, "token works: dispatch in Acme")
    bad = make_settings(tmp_path, fake.url, roots, SLACK_BOT_TOKEN="xoxb-bad", SLACK_APP_TOKEN="xapp-1",
                        SLACK_API_URL=slack_fake)
    ok, message = by_name(await doctor.check_slack(bad))["Slack"]
    assert not ok and message.startswith("Slack refused SLACK_BOT_TOKEN (invalid_auth: the token is wrong)")


async def test_computer_control_on_without_a_display_is_a_problem(tmp_path, fake, roots):
    settings = make_settings(tmp_path, fake.url, roots, DISPATCH_POLICY="computer=auto")
    ok, message = (await doctor.check_display(settings))[1:]
    assert not ok and message.startswith("computer control is on, but: There is no display")


async def test_keep_awake_that_cannot_work_is_a_problem(tmp_path, fake, roots, monkeypatch):
    monkeypatch.delenv("WAKEPY_FAKE_SUCCESS")
    monkeypatch.setenv("WAKEPY_FORCE_FAILURE", "1")
    settings = make_settings(tmp_path, fake.url, roots)
    ok, message = (await doctor.check_keep_awake(settings))[1:]
    assert not ok and message.startswith("cannot keep this computer awake.")
    off = make_settings(tmp_path, fake.url, roots, DISPATCH_KEEP_AWAKE="false")
    assert (await doctor.check_keep_awake(off))[1]


async def test_the_command_prints_the_fixes_and_fails(tmp_path, fake, tg_fake, roots, monkeypatch, capsys):
    for name, value in dict(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=fake.url, DISPATCH_HOME=str(tmp_path / "h"),
                            TELEGRAM_BOT_TOKEN="123456:WRONG-token", TELEGRAM_API_URL=tg_fake.url,
                            DISPATCH_MODEL_RETRIES="0", DISPATCH_ROOTS=str(roots)).items():
        monkeypatch.setenv(name, value)
    fake.reply("p")
    code = await asyncio.to_thread(main, ["doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert "✓ Model: claude-sonnet-4-6 answered" in out
    assert "✗ Telegram: Telegram refused TELEGRAM_BOT_TOKEN" in out
    assert "1 thing(s) to fix:\n  1. Telegram: Telegram refused" in out
    assert KEY not in out and "WRONG-token" not in out
