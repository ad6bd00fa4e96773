"""`dispatch run`: the core and every configured front end in one process.

Telegram starts polling before the core is even built: the core is built in a
worker thread while the event loop sends the first getUpdates, and what arrives
waits in python-telegram-bot's queue until the core is attached.
Front ends attach before the core starts, so what a restart interrupted is
reported where the owner will see it. Telegram runs when TELEGRAM_BOT_TOKEN is
set, Slack when SLACK_BOT_TOKEN is (a token Slack refuses stops the start with
a StartupError saying which); the terminal joins when there is one. SIGTERM/SIGINT stop everything in
order: the core first (a running task is interrupted and reported on the next
start), then the front ends.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from typing import TYPE_CHECKING, Any

from store.config import Settings

if TYPE_CHECKING:
    from agent.control import ControlServer
    from agent.core import Core


class StartupError(Exception):
    """Something the owner must fix; `str()` says what."""


async def run(settings: Settings, *, terminal: bool, telegram_options: dict[str, Any] | None = None,
              slack_options: dict[str, Any] | None = None) -> None:
    tg: Any = None
    if settings.telegram_token:  # polling starts first; what arrives waits while the core is built
        _import_telegram_lean()
        from telegram.error import InvalidToken

        from bot.telegram.app import TelegramFrontEnd

        tg = TelegramFrontEnd(None, settings=settings, **(telegram_options or {}))
        try:
            await tg.connect()
        except InvalidToken:
            await tg.app.shutdown()
            raise StartupError(
                "Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized). Copy the token again from "
                "@BotFather (/mybots -> your bot -> API Token).") from None
    try:
        # Built in a thread: the import and the build (~0.4 s: SQLAlchemy, the store, the
        # tools) would otherwise hold the event loop, and the first getUpdates that
        # `connect` scheduled would only go out once they were done.
        core = await asyncio.to_thread(_build_core, settings)
    except BaseException:
        if tg is not None:
            await tg.stop()
        raise
    control: ControlServer | None = None
    fronts: list[Any] = []
    try:
        if tg is not None:
            fronts.append(tg)
            await tg.start(core)
            _pairing_hint(core, settings)
        if settings.slack_token:
            from bot.slack.app import SlackAuthError, SlackFrontEnd

            sl = SlackFrontEnd(core, **(slack_options or {}))
            try:
                await sl.start()
            except SlackAuthError as exc:
                await sl.stop()
                raise StartupError(str(exc)) from None
            fronts.append(sl)
            _slack_pairing_hint(core, settings)
        if terminal:
            from bot import console

            console.attach(core)
        # Everything imported so far (SDK, pydantic, SQLAlchemy, PTB: ~200k objects) lives
        # as long as the process; freezing it keeps full GC pauses from ~130 ms to ~20 ms.
        gc.collect()
        gc.freeze()
        gc.enable()  # `dispatch run` turned it off for the imports (bot.ops.cli.cmd_run)
        await core.start()
        from agent.control import ControlServer

        control = ControlServer(core)  # `dispatch approve|ask|…` from other terminals reach this process
        await control.start()
        if core.awake.status().wanted and not core.awake.status().active:  # say so once, plainly
            print(core.awake.status().line(), file=sys.stderr, flush=True)
        # The model SDK is not warmed here: it is ~40 MB of an idle process's ~100. The first
        # model call imports it in a thread (agent.model.Model.warm_up).
        if terminal:
            from bot import console

            await console.chat(core)
        else:
            await _until_signal()
    finally:
        gc.enable()
        if control is not None:
            await control.stop()
        await core.stop()
        for front in reversed(fronts):
            await front.stop()
        await core.model.aclose()
        core.store.close()


# Optional extras that python-telegram-bot, httpx and httpcore load only because they
# happen to be installed (for other packages): Telegram Passport decryption (cryptography,
# ~7 MB), httpx's command-line client (rich, click, pygments, ~4 MB) and httpcore's trio
# support (~4 MB; Dispatch runs on asyncio). Dispatch uses none of them.
_NOT_FOR_TELEGRAM = ("cryptography", "httpx._main", "trio")


def _import_telegram_lean() -> None:
    """Import PTB as a plain `pip install python-telegram-bot` has it: these libraries catch
    the ImportError of these optional extras and go on without them. The extras stay
    importable for whoever needs them later (google-auth, an MCP plugin)."""
    if "telegram" in sys.modules:
        return
    hidden = [name for name in _NOT_FOR_TELEGRAM if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        import httpcore  # noqa: F401  (imported by httpx only when PTB makes its first client)
        import telegram.ext  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def _build_core(settings: Settings) -> Core:
    from agent.core import Core

    return Core(settings)


def _pairing_hint(core: Core, settings: Settings) -> None:
    if not core.api.owner_ids("telegram"):
        print("Telegram is connected, but no account is paired yet: run `dispatch pair` in another "
              "terminal and send the code to your bot.", file=sys.stderr, flush=True)


def _slack_pairing_hint(core: Core, settings: Settings) -> None:
    if not core.api.owner_ids("slack"):
        print("Slack is connected, but no Slack account is paired yet: run `dispatch pair` in another "
              "terminal and send `pair CODE` to the app in Slack.", file=sys.stderr, flush=True)


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C raises KeyboardInterrupt instead
            pass
    await stop.wait()
