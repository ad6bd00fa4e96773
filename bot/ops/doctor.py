"""`dispatch doctor`: check everything Dispatch depends on and say exactly what to fix.

Each check is a function returning (name, ok, message) — or a list of them — and
never raises: a check that cannot run says why. A message for a failed check
names the setting or command that fixes it. What is optional and not set up
(Slack, mail, computer control) is ok and says how to set it up. Tokens are
tried for real: Telegram `getMe`, Slack `auth.test`, a one-token call to the
model through ANTHROPIC_BASE_URL, a login to the mail servers. Secrets never
appear in the output.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

from store.config import Settings

Check = tuple[str, bool, str]
TIMEOUT_S = 20.0


def check_settings(settings: Settings) -> list[Check]:
    problems = settings.problems()
    if not problems:
        where = Path.cwd() / ".env"
        source = f"{where} and the environment" if where.is_file() else f"the environment (no .env in {Path.cwd()})"
        return [("Settings", True, f"read from {source}; model {settings.model}")]
    return [("Settings", False, p) for p in problems]


def check_folders(settings: Settings) -> Check:
    roots = settings.roots
    if not roots:
        return ("Folders", False, "none shared: the agent can't see any of your files, so \u201cfind the Acme brief\u201d "
                "finds nothing. Put DISPATCH_ROOTS=~/Documents" + os.pathsep + "~/Desktop in .env, or run "
                "`dispatch init`.")
    return ("Folders", True, ", ".join(str(p) for p in roots))


def check_store(settings: Settings) -> Check:
    try:
        from store.db import Store

        store = Store(settings.db_url)
        try:
            with store.engine.connect() as conn:
                import sqlalchemy as sa

                jobs = conn.execute(sa.text("SELECT COUNT(*) FROM apscheduler_jobs")).scalar_one()
        finally:
            store.close()
    except Exception as exc:
        return ("Data folder", False, f"can't open the database in {settings.home} ({type(exc).__name__}: {exc}). "
                "Check that the folder is writable, or set DISPATCH_HOME to one that is.")
    return ("Data folder", True, f"{settings.home} (database ok; {jobs} scheduled task(s))")


async def check_model(settings: Settings) -> Check:
    key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""
    if not key:
        return ("Model", False, "skipped: ANTHROPIC_API_KEY is not set (console.anthropic.com -> API keys).")
    import anthropic

    from agent.model import explain

    where = settings.anthropic_base_url or "api.anthropic.com"
    client = anthropic.AsyncAnthropic(api_key=key, base_url=settings.anthropic_base_url, max_retries=0,
                                      timeout=TIMEOUT_S)
    try:
        await client.messages.create(model=settings.model, max_tokens=1,
                                     messages=[{"role": "user", "content": "ping"}])
    except anthropic.APIError as exc:
        return ("Model", False, f"{where}: {explain(exc, settings)}")
    finally:
        await client.close()
    return ("Model", True, f"{settings.model} answered at {where}")


async def check_telegram(settings: Settings) -> list[Check]:
    token = settings.telegram_token
    if not token:
        return [("Telegram", True, "not set up (optional): set TELEGRAM_BOT_TOKEN to reach Dispatch from your phone "
                 "(README, \u201cTelegram\u201d)")]
    import httpx

    api = settings.telegram_api_url.rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
            res = await http.get(f"{api}/bot{token}/getMe")
    except httpx.HTTPError as exc:
        return [("Telegram", False, f"could not reach {api} ({type(exc).__name__}). Is this computer online? "
                 "(TELEGRAM_API_URL is only for a self-hosted Bot API server.)")]
    if res.status_code in (401, 404):
        return [("Telegram", False, f"Telegram refused TELEGRAM_BOT_TOKEN ({res.status_code} "
                 f"{'Unauthorized' if res.status_code == 401 else 'Not Found'}): the token is wrong or was revoked. "
                 "Copy it again from @BotFather (/mybots -> your bot -> API Token) into .env.")]
    try:
        body = res.json()
    except ValueError:
        body = {}
    if res.status_code != 200 or not body.get("ok"):
        return [("Telegram", False, f"{api} answered {res.status_code}: {str(body.get('description', ''))[:200]}")]
    bot = body["result"]
    out: list[Check] = [("Telegram", True, f"token works: @{bot.get('username')} ({bot.get('first_name', '')})")]
    out.append(_owner_check(settings, "telegram", settings.telegram_owners))
    return out


def _owner_check(settings: Settings, platform: str, allowlist: frozenset[str]) -> Check:
    try:
        from agent import owners
        from store.db import Store

        store = Store(settings.db_url)
        try:
            paired = owners.owners(store, platform)
        finally:
            store.close()
    except Exception as exc:
        return (f"{platform.title()} owner", False, f"could not read the owners ({type(exc).__name__}).")
    if allowlist or paired:
        who = ", ".join(sorted(allowlist | {o.user_id for o in paired}))
        return (f"{platform.title()} owner", True, f"Dispatch answers {who}")
    return (f"{platform.title()} owner", False, "no account is paired, so Dispatch answers nobody there: run "
            "`dispatch pair` and send the code to the bot.")


async def check_slack(settings: Settings) -> list[Check]:
    token = getattr(settings, "slack_token", None)
    if not token:
        if not hasattr(settings, "slack_bot_token"):
            return []
        return [("Slack", True, "not set up (optional): set SLACK_BOT_TOKEN and SLACK_APP_TOKEN (README, \u201cSlack\u201d)")]
    import httpx

    api = str(getattr(settings, "slack_api_url", "https://slack.com/api/")).rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
            res = await http.post(f"{api}/auth.test", headers={"Authorization": f"Bearer {token}"})
        body = res.json()
    except (httpx.HTTPError, ValueError) as exc:
        return [("Slack", False, f"could not reach {api} ({type(exc).__name__}). Is this computer online?")]
    if not body.get("ok"):
        err = body.get("error", f"HTTP {res.status_code}")
        fix = {"invalid_auth": "the token is wrong", "token_revoked": "the token was revoked",
               "not_authed": "no token was sent", "account_inactive": "the app or workspace is inactive"}
        return [("Slack", False, f"Slack refused SLACK_BOT_TOKEN ({err}: {fix.get(err, 'see the Slack API docs')}). "
                 "Copy the Bot User OAuth Token (xoxb-...) again from your app's OAuth & Permissions page.")]
    return [("Slack", True, f"token works: {body.get('user', '?')} in {body.get('team', '?')}"),
            _owner_check(settings, "slack", getattr(settings, "slack_owners", frozenset()))]


async def check_mail(settings: Settings) -> list[Check]:
    try:
        from tools.mailbox.account import check_mail_login
    except ImportError:
        return [("Email", True, "this Dispatch has no mail connector yet")]
    try:
        return list(await asyncio.to_thread(check_mail_login, settings))
    except Exception as exc:
        return [("Email", False, f"the mail check failed ({type(exc).__name__}: {exc})")]


async def check_display(settings: Settings) -> Check:
    from tools.desktop import screen

    computer_on = _computer_on(settings)
    problem = screen.display_problem()
    if problem:
        if computer_on:
            return ("Display", False, f"computer control is on, but: {problem}")
        return ("Display", True, "none (only needed for computer control, which is off)")
    try:
        g = await asyncio.to_thread(screen.geometry, settings)
        await asyncio.to_thread(_import_pyautogui)
    except Exception as exc:
        return ("Display", not computer_on, f"{os.environ.get('DISPLAY', 'the screen')} is not usable: {exc}")
    state = "on" if computer_on else "off (/computer on to allow it)"
    return ("Display", True, f"{g.width}x{g.height}, shown to the model as {g.shown_width}x{g.shown_height}; "
            f"computer control is {state}")


def _import_pyautogui() -> None:
    from tools.computer import load_gui

    load_gui()


def _computer_on(settings: Settings) -> bool:
    try:
        from agent import gate
        from store.db import Store
        from tools import computer
        from tools.registry import build_tool

        store = Store(settings.db_url)
        try:
            return gate.decide(build_tool(computer.computer),
                               gate.current_policies(store, settings.policy_overrides)) != "off"
        finally:
            store.close()
    except Exception:
        return False


async def check_keep_awake(settings: Settings) -> Check:
    from agent.awake import KeepAwake
    from store.db import Store

    store = Store(settings.db_url)
    awake = KeepAwake(settings, store)
    try:
        if not awake.wanted():
            return ("Keep-awake", True, "off: the computer may sleep, and Dispatch can't be reached while it does "
                    "(/awake on or DISPATCH_KEEP_AWAKE=true)")
        status = await awake.start()
    finally:
        await awake.stop()
        store.close()
    if status.active:
        note = " (simulated by WAKEPY_FAKE_SUCCESS)" if status.simulated else ""
        return ("Keep-awake", True, f"works here (method: {status.method}){note}")
    return ("Keep-awake", False, f"cannot keep this computer awake. {status.reason}")


async def check_service(settings: Settings) -> Check:
    from bot.ops import service

    running, lines = await asyncio.to_thread(service.status, settings)
    if not service.unit_path().exists():
        return ("Service", True, "not installed (optional): `dispatch service install` starts Dispatch at login "
                "and restarts it after a crash")
    return ("Service", True, " ".join(lines[1:]) or lines[0])


async def check_google(settings: Settings) -> Check:
    from bot.ops.connect_google import check

    return await asyncio.to_thread(check, settings)


async def check_voice(settings: Settings) -> Check:
    from agent.transcribe import check

    ok, message = await check(settings)
    return ("Voice notes", ok, message)


async def check_plugins(settings: Settings) -> list[Check]:
    """Each configured MCP server is started, listed and stopped."""
    from tools.mcp import check_server
    from tools.plugins import config

    specs, problems = config.load(settings.mcp_config)
    out: list[Check] = [("Plugins", False, f"{p} (fix it in {settings.mcp_config}, or `dispatch mcp remove`)")
                        for p in problems]
    if not specs and not problems:
        return [("Plugins", True, "none configured (optional): `dispatch mcp add NAME -- COMMAND` (README, "
                 "“Plugins (MCP)”)")]
    results = await asyncio.gather(*(check_server(settings, name, timeout=TIMEOUT_S) for name in sorted(specs)))
    for name, (ok, summary, _) in zip(sorted(specs), results):
        out.append((f"Plugin {name}", ok, summary if ok else f"{summary} Try `dispatch mcp test {name}`; its "
                    f"messages are in {settings.home / 'logs' / f'mcp-{name}.log'}."))
    return out


def check_file_index(settings: Settings) -> Check:
    from tools.filesystem.indexer import doctor_check  # whether the index follows file events

    return doctor_check(settings)


async def run_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = check_settings(settings)
    checks.append(check_folders(settings))
    checks.append(await asyncio.to_thread(check_store, settings))
    checks.append(await asyncio.to_thread(check_file_index, settings))
    steps: list[Callable[[Settings], Awaitable[Any]]] = [
        check_model, check_telegram, check_slack, check_mail, check_google, check_voice, check_display,
        check_keep_awake, check_service, check_plugins]
    for step in steps:
        try:
            result = await step(settings)
        except Exception as exc:  # a check must never take the doctor down
            result = (step.__name__.removeprefix("check_").replace("_", " ").title(), False,
                      f"the check itself failed ({type(exc).__name__}: {exc})")
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def report(checks: list[Check]) -> tuple[str, bool]:
    lines = ["Dispatch doctor", ""]
    lines += [f"  {'✓' if ok else '✗'} {name}: {message}" for name, ok, message in checks]
    failed = [(name, message) for name, ok, message in checks if not ok]
    if failed:
        lines += ["", f"{len(failed)} thing(s) to fix:"]
        lines += [f"  {i}. {name}: {message}" for i, (name, message) in enumerate(failed, 1)]
    else:
        lines += ["", "Everything checked out."]
    return "\n".join(lines), not failed
