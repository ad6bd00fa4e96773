"""Telegram front end: the owner's private chat with their Dispatch bot.

Long polling with python-telegram-bot's Application, PTB's AIORateLimiter for flood
limits, concurrent updates (a slow send after Approve must not hold up other
messages), and a watchdog that restarts polling when getUpdates has not completed
for a while (a half-dead connection). The handlers live in bot.telegram.handlers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from telegram import BotCommand, Update
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter, Application, CallbackQueryHandler, CommandHandler, MessageHandler, TypeHandler, filters,
)
from telegram.request import HTTPXRequest

from bot.telegram import handlers as h
from bot.telegram.channel import TelegramChannel

log = logging.getLogger("dispatch.telegram")
PLATFORM = h.PLATFORM
COMMANDS = h.COMMANDS


# The application --------------------------------------------------------------------


class StampedRequest(HTTPXRequest):
    """The getUpdates connection, noting when a poll last completed (for the watchdog)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_ok = time.monotonic()

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        result = await super().do_request(*args, **kwargs)
        self.last_ok = time.monotonic()
        return result


class TelegramFrontEnd:
    """Builds, starts, watches and stops the bot."""

    def __init__(self, core: "Core | None", *, settings: Any = None, poll_timeout: int = 30,
                 stall_after: float = 120.0, watch_every: float = 10.0) -> None:
        # Without a core (`dispatch run`): polling starts first (`connect`) while the core is
        # built, and updates wait in PTB's queue until `start(core)`. `Core` (agent.core) is
        # named in annotations only, so importing this module does not build up the core.
        self.core = core  # type: ignore[assignment]
        self.settings = settings if settings is not None else core.settings  # type: ignore[union-attr]
        self._connected = False
        self.poll_timeout = poll_timeout
        self.stall_after = stall_after
        self.watch_every = watch_every
        self.restarts = 0
        # One trust store for both connections (the calls and the long poll): httpx would load
        # the CA bundle once per client, ~35 ms and ~0.7 MB each.
        tls = {"verify": httpx.create_ssl_context()}
        self._calls = HTTPXRequest(connection_pool_size=256, httpx_kwargs=tls)  # PTB's own default size
        self._polling = StampedRequest(connection_pool_size=1, read_timeout=poll_timeout + 10, httpx_kwargs=tls)
        self.app = self._build()
        self.channel = TelegramChannel(self.app.bot, self._owner_chats)
        self._watchdog: asyncio.Task[None] | None = None

    def _owner_chats(self) -> list[str]:
        return self.core.api.owner_ids(PLATFORM)

    def _build(self) -> Application:
        settings = self.settings
        api = settings.telegram_api_url.rstrip("/")
        app = (
            Application.builder()
            .token(settings.telegram_token or "")
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .rate_limiter(AIORateLimiter(max_retries=5))
            .request(self._calls)
            .get_updates_request(self._polling)
            .concurrent_updates(True)  # a slow send after Approve must not hold up other messages
            .build()
        )
        app.add_handler(TypeHandler(Update, h.guard), group=-1)
        app.add_handler(h.PAIR)  # first: a stranger's /pair reaches this and nothing else
        app.add_handler(CommandHandler(["start", "help"], h.start))
        app.add_handler(CommandHandler("status", h.status))
        app.add_handler(CommandHandler("cancel", h.cancel))
        app.add_handler(CommandHandler("pending", h.pending))
        app.add_handler(CommandHandler("log", h.show_log))
        app.add_handler(CommandHandler("usage", h.usage))
        app.add_handler(CommandHandler("settings", h.settings_cmd))
        app.add_handler(CommandHandler("awake", h.awake))
        app.add_handler(CommandHandler("computer", h.computer))
        app.add_handler(CommandHandler("screenshot", h.screenshot))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, h.on_text))
        app.add_handler(MessageHandler(filters.Document.ALL | filters.PHOTO, h.on_file))
        app.add_handler(MessageHandler(filters.VOICE | filters.AUDIO | filters.VIDEO_NOTE, h.on_voice))
        app.add_handler(MessageHandler(~filters.TEXT & ~filters.COMMAND & ~filters.StatusUpdate.ALL, h.unsupported))
        app.add_handler(CallbackQueryHandler(h.on_card_button, pattern=h.CARD_BUTTON))
        app.add_handler(CallbackQueryHandler(h.on_policy_button, pattern=h.POLICY_BUTTON))
        app.add_handler(CallbackQueryHandler(h.on_awake_button, pattern=h.AWAKE_BUTTON))
        app.add_handler(CallbackQueryHandler(h.on_other_button))
        app.add_error_handler(h.on_error)
        return app

    async def connect(self) -> None:
        """Reach Telegram (retrying while the network is down; a refused token raises
        InvalidToken) and start polling. Updates wait in PTB's queue until `start`."""
        delay = 1.0
        while True:
            try:
                await self.app.initialize()
                break
            except InvalidToken:
                raise
            except NetworkError as exc:
                log.warning("can't reach Telegram (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
        await self._start_polling()
        self._connected = True

    async def start(self, core: "Core | None" = None) -> None:
        """Connect (unless `connect` did), hand updates to the core's API, register commands."""
        if core is not None:
            self.core = core
        if not self._connected:
            await self.connect()
        self.app.bot_data["api"] = self.core.api
        self.core.attach(self.channel)
        try:
            await self.app.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
        except TelegramError as exc:  # a nicety: the bot works without the menu
            log.warning("could not register the command menu: %s", exc)
        await self.app.start()  # from here the queued updates are handled
        self._watchdog = asyncio.create_task(self._watch(), name="telegram-watchdog")

    async def _start_polling(self) -> None:
        self._polling.last_ok = time.monotonic()
        await self.app.updater.start_polling(  # type: ignore[union-attr]
            poll_interval=0, timeout=self.poll_timeout, bootstrap_retries=-1,
            allowed_updates=["message", "callback_query"], drop_pending_updates=False,
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_every)
            updater = self.app.updater
            if updater is None or not updater.running:
                continue
            silent = time.monotonic() - self._polling.last_ok
            if silent > self.stall_after:
                self.restarts += 1
                log.warning("getUpdates has not completed for %.0f s; restarting polling", silent)
                try:
                    await asyncio.wait_for(updater.stop(), 15)
                except (asyncio.TimeoutError, TelegramError, RuntimeError) as exc:
                    log.warning("stopping the stalled poll: %s", exc)
                await self._start_polling()

    async def stop(self) -> None:
        if self._watchdog:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        if self.app.updater and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
