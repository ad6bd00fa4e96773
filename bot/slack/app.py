"""Slack front end: the owner's DM with their Dispatch app (listeners in bot.slack.handlers).

slack-bolt's AsyncApp does the protocol work: request signatures (HTTP mode),
`auth.test`, ignoring the app's own events, acking. This module builds the app,
checks the tokens at start (a refusal is a SlackAuthError, which `dispatch run`
turns into a clear message), connects or serves, watches and stops.

Transport. Socket Mode by default (SLACK_APP_TOKEN): Dispatch dials out to Slack,
so a desktop behind a home router needs no public address. With only
SLACK_SIGNING_SECRET it serves the HTTP Events API on SLACK_HTTP_HOST:PORT/PATH
(behind a tunnel or reverse proxy) through bolt's aiohttp adapter; bolt checks
every request's signature and timestamp and answers 401 to a bad one.

The Web API client retries what is safe to repeat: 429s after Slack's Retry-After
(Slack did not take the request), and connection errors and 5xx only for calls
that create nothing (a second `chat.postMessage` after a 5xx could be a second
card, or a duplicated answer: `SafeToRepeat`).
Sends to anyone else go through the Slack connector (tools/slack.py), which
retries only 429s.

Staying up. slack_sdk's aiohttp Socket Mode client pings every `ping_interval`
(10 s), lets aiohttp's heartbeat close a socket that stops answering, treats 4
missed pongs as stale, and follows Slack's `disconnect` envelopes. On top of it
a watchdog looks at the last sign of life (a frame from Slack, or a pong): none
for `stall_after` (60 s) means the client itself is wedged — its monitor died,
or a reconnect hangs — so the whole client is closed (its HTTP session with it,
so no socket leaks) and a fresh one connects. A socket that answers pings but
has delivered no frame at all for `idle_refresh` (1 h) is replaced as well:
Slack can leave a connection open that no longer receives events, and a fresh
one costs one `apps.connections.open`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from agent.core import Core
from bot.slack.channel import SlackChannel
from bot.slack.cards import PLATFORM, on_card_button, on_edit_submit, on_other_button, on_policy_button
from bot.slack.handlers import guard, on_error, on_message

log = logging.getLogger("dispatch.slack")

AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
               "not_allowed_token_type", "missing_scope", "team_access_not_granted", "ekm_access_denied"}


class _QuietBolt(logging.Filter):
    """bolt warns that SLACK_BOT_TOKEN (read from the environment by AsyncApp itself) is
    unused when a client is given; it is the client's token, so that is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("As you gave `client` as well")


# Web API methods that create something: after a 5xx or a cut connection Slack may already
# have done it, so trying again could post twice (a second card whose buttons nobody
# updates, a duplicated answer). Only a 429 — Slack did not take it — is tried again.
CREATES = ("chat.postMessage", "chat.postEphemeral", "chat.scheduleMessage", "files.completeUploadExternal",
           "conversations.create", "views.open")


class SafeToRepeat(AsyncRetryHandler):
    """A retry handler that only repeats requests that are safe to repeat."""

    def __init__(self, inner: AsyncRetryHandler) -> None:
        super().__init__(max_retry_count=inner.max_retry_count, interval_calculator=inner.interval_calculator)
        self.inner = inner

    async def _can_retry_async(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if str(request.url).rstrip("/").endswith(CREATES):
            return False
        return await self.inner._can_retry_async(state=state, request=request, response=response, error=error)


class SlackAuthError(Exception):
    """Slack refused a token; `str()` says which and what to do (never the token)."""


class SlackFrontEnd:
    """Builds, starts, watches and stops the Slack app."""

    def __init__(self, core: Core, *, ping_interval: float = 10.0, stall_after: float = 60.0,
                 idle_refresh: float = 3600.0, watch_every: float = 5.0, connect_timeout: float = 30.0,
                 http_port: int | None = None) -> None:
        settings = core.settings
        if not settings.slack_token or settings.slack_mode is None:
            raise ValueError("Slack needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN or SLACK_SIGNING_SECRET")
        self.core = core
        self.mode = settings.slack_mode
        self.ping_interval = ping_interval
        self.stall_after = max(stall_after, 3 * ping_interval)  # the SDK gets the first go at healing
        self.idle_refresh = idle_refresh
        self.watch_every = watch_every
        self.connect_timeout = connect_timeout
        self.http_port = settings.slack_http_port if http_port is None else http_port
        self.http_url = ""
        self.restarts = 0
        self.bot_user_id = ""
        self.pair_tries: dict[str, int] = {}
        self.client = AsyncWebClient(
            token=settings.slack_token, base_url=settings.slack_api_url, timeout=20,
            logger=logging.getLogger("dispatch.slack.web"),
            retry_handlers=[SafeToRepeat(AsyncConnectionErrorRetryHandler(max_retry_count=2)),
                            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
                            SafeToRepeat(AsyncServerErrorRetryHandler(max_retry_count=2))],
        )
        self.channel = SlackChannel(self.client)
        self.app = self._build()
        self._handler: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._last_frame = time.monotonic()

    def _build(self) -> AsyncApp:
        bolt_log = logging.getLogger("dispatch.slack.bolt")
        if not any(isinstance(f, _QuietBolt) for f in bolt_log.filters):
            bolt_log.addFilter(_QuietBolt())
        app = AsyncApp(client=self.client, signing_secret=self.core.settings.slack_secret or "", name="dispatch",
                       logger=bolt_log)
        app.use(self._attach)
        app.use(guard)
        app.event("message")(on_message)
        app.action(re.compile(r"^dispatch_(approve|reject|edit|full)$"))(on_card_button)
        app.action("dispatch_policy")(on_policy_button)
        app.action(re.compile(r".*"))(on_other_button)
        app.view("dispatch_edit")(on_edit_submit)
        app.error(on_error)
        return app

    async def _attach(self, context: Any, next: Callable[[], Awaitable[Any]]) -> Any:
        context["core"], context["front"] = self.core, self
        return await next()

    # Start and stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the tokens (a refusal is a SlackAuthError), then connect or serve."""
        auth = await self._call_retrying(self.client.auth_test, "SLACK_BOT_TOKEN",
                                         "Copy the Bot User OAuth Token (xoxb-…) again from your app's "
                                         "OAuth & Permissions page, and install the app to your workspace.")
        self.bot_user_id = str(auth.get("user_id") or "")
        opened: Any = None
        if self.mode == "socket":
            opened = await self._call_retrying(
                lambda: self.client.apps_connections_open(app_token=self.core.settings.slack_app),
                "SLACK_APP_TOKEN", "Create an app-level token with the connections:write scope (Basic "
                "Information → App-Level Tokens) and turn Socket Mode on.")
        await self.find_owner_dm()
        self.core.attach(self.channel)  # before the core starts: what a restart interrupted is told here
        if opened is not None:
            self._handler = self._new_handler()
            self._handler.client.wss_uri = str(opened["url"])  # that URL is good for one connection: use it
            await self._connect()
            self._watchdog = asyncio.create_task(self._watch(), name="slack-watchdog")
        else:
            await self._serve_http()
        log.info("Slack front end running (%s mode) as %s", self.mode, self.bot_user_id)

    async def _call_retrying(self, call: Callable[[], Awaitable[Any]], token_name: str, fix: str) -> Any:
        delay = 1.0
        while True:
            try:
                return await call()
            except SlackApiError as exc:
                error = str(exc.response.get("error") or exc.response.status_code)
                if error in AUTH_ERRORS or exc.response.status_code in (401, 403):
                    raise SlackAuthError(f"Slack refused {token_name} ({error}). {fix}") from None
                raise SlackAuthError(f"Slack answered {error} when checking {token_name}. {fix}") from None
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.warning("can't reach Slack (%s); retrying in %.0f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)

    async def stop(self) -> None:
        if self._watchdog:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        if self._handler is not None:
            await self._dispose(self._handler)
            self._handler = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # HTTP mode -------------------------------------------------------------------------------

    async def _serve_http(self) -> None:
        settings = self.core.settings
        web_app = web.Application(client_max_size=2 * 1024 * 1024)
        web_app.router.add_post(settings.slack_http_path, self._http)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, settings.slack_http_host, self.http_port).start()
        host, port = self._runner.addresses[0][:2]
        self.http_url = f"http://{host}:{port}{settings.slack_http_path}"

    async def _http(self, request: web.Request) -> web.StreamResponse:
        """bolt's own aiohttp adapter: signature check, url_verification, dispatch."""
        return await to_aiohttp_response(await self.app.async_dispatch(await to_bolt_request(request)))

    # Socket Mode and its watchdog ------------------------------------------------------------

    def _new_handler(self) -> AsyncSocketModeHandler:
        handler = AsyncSocketModeHandler(self.app, app_token=self.core.settings.slack_app, web_client=self.client,
                                         ping_interval=self.ping_interval,
                                         logger=logging.getLogger("dispatch.slack.socket"))
        handler.client.on_message_listeners.append(self._on_frame)
        return handler

    async def _on_frame(self, message: Any) -> None:
        self._last_frame = time.monotonic()

    async def _connect(self) -> None:
        self._last_frame = time.monotonic()  # the clock for "nothing since" starts now
        assert self._handler is not None
        try:
            await asyncio.wait_for(self._handler.connect_async(), self.connect_timeout)
        except TimeoutError:
            log.warning("Slack Socket Mode did not connect within %.0f s; the watchdog will try again",
                        self.connect_timeout)

    def silence(self) -> tuple[float, float]:
        """Seconds since the last sign of life (a frame or a pong), and since the last frame."""
        frame = time.monotonic() - self._last_frame
        pong = self._handler.client.last_ping_pong_time if self._handler else None
        pong_age = time.time() - pong if pong else float("inf")
        return min(frame, pong_age), frame

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_every)
            try:
                quiet, no_frame = self.silence()
                if quiet > self.stall_after:
                    await self.restart(f"no pong and nothing received for {quiet:.0f} s")
                elif no_frame > self.idle_refresh:
                    await self.restart(f"nothing received for {no_frame:.0f} s though pings are answered")
            except asyncio.CancelledError:
                raise
            except Exception:  # the watchdog itself must never die
                log.exception("Slack watchdog check failed")

    async def restart(self, reason: str) -> None:
        """Throw the Socket Mode client away (closing every connection it holds) and connect
        a new one."""
        self.restarts += 1
        log.warning("Slack socket looks dead (%s); reconnecting with a new client", reason)
        old, self._handler = self._handler, self._new_handler()
        if old is not None:
            await self._dispose(old)
        await self._connect()

    async def _dispose(self, handler: AsyncSocketModeHandler) -> None:
        client = handler.client
        try:
            await asyncio.wait_for(client.close(), 3)
        except Exception as exc:  # a dead socket may not even close politely
            log.debug("closing the old Socket Mode client: %r", exc)
        finally:
            client.closed = True
            for fut in (client.message_processor, client.current_session_monitor, client.message_receiver):
                if fut is not None:
                    fut.cancel()
            if not client.aiohttp_client_session.closed:
                await client.aiohttp_client_session.close()  # closes the websocket's connection too

    # Helpers for listeners -------------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        """True for an event already handled (Slack redelivers when an ack got lost)."""
        if not event_id:
            return False
        if event_id in self._seen:
            return True
        self._seen[event_id] = None
        while len(self._seen) > 2000:
            self._seen.popitem(last=False)
        return False

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run something slow after the ack; errors are logged, never raised."""
        async def quietly() -> None:
            try:
                await coro
            except Exception:
                log.exception("background Slack call failed")

        task = asyncio.create_task(quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def find_owner_dm(self) -> None:
        """Open the DM with the (first) owner, so that what comes from an app that is not
        running reaches them here (Channel.default_origin). Best effort."""
        ids = self.core.api.owner_ids(PLATFORM)
        if not ids or self.channel.owner_dm:
            return
        try:
            self.channel.owner_dm = str((await self.client.conversations_open(users=ids[0]))["channel"]["id"])
        except (SlackApiError, KeyError, TypeError) as exc:
            log.info("could not open the owner's DM yet: %s", exc)
