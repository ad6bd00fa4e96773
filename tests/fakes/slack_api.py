"""A scripted fake of Slack: the Web API and the Socket Mode websocket, on 127.0.0.1.

It speaks real HTTP and real websockets, so the real slack_sdk (its request encoding,
retry handlers, files_upload_v2's three steps, the aiohttp Socket Mode client with its
pings and reconnects) and the real slack-bolt AsyncApp are exercised instead of mocks.
Point them at it with ``AsyncWebClient(token, base_url=fake.api_url)``;
``apps.connections.open`` answers ``ws://127.0.0.1:PORT/link/?ticket=N`` (one use).

The workspace: the owner (U0OWNER, "Sam Lee"), a colleague (U0ANN), a stranger
(U0STRANGER) and the bot (U0BOT / B0BOT); a DM with the bot for each person
(D0OWNER, D0STRANGER, ...); #general (bot is a member, with a seeded thread),
#random (public, bot not a member) and #secret (private, the owner only).

Tests play the phone: ``send_dm`` / ``press`` / ``submit_view`` wrap an event or an
interaction in a Socket Mode envelope and deliver it to the newest open connection
(or return the body, for HTTP mode: ``post_to_app`` signs it like Slack does).
Envelopes must be acked; ``acks`` records when and with what. Like Slack it
redelivers an unacked event when its connection goes away (retry_attempt + 1).

What the bot did is in ``calls`` (every Web API request, decoded) and in the
channel histories (``messages_in``: current state after chat.update), ``ephemerals``,
``uploads`` and ``views``. Failures are scripted: ``fail_next`` (429 with
Retry-After, a Slack error, a 5xx), ``drop_next`` (take the request, then cut the
connection without answering), ``slow_next``, ``go_silent`` (stop answering pings and stop
delivering), ``disconnect`` (a "disconnect" envelope, as Slack sends before it
recycles a connection) and ``drop_socket``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp
from aiohttp import WSMsgType, web

TEAM, APP_ID = "T0TEAM", "A0APP"
OWNER, ANN, STRANGER = "U0OWNER", "U0ANN", "U0STRANGER"
BOT_USER, BOT_ID = "U0BOT", "B0BOT"
OWNER_DM = "D0OWNER"
GENERAL, RANDOM, SECRET = "C0GENERAL", "C0RANDOM", "G0SECRET"
THREAD_TS = "1714567890.000100"  # Ann's kickoff message in #general, with one reply
TRIGGER_TTL = 3.0  # Slack's trigger_id is good for 3 seconds
MAX_TEXT = 40_000
_BLOCK_TYPES = {"section", "actions", "context", "divider", "header", "image", "input", "rich_text",
                "markdown", "file", "video"}


@dataclass
class Call:
    """One Web API request as the fake received it."""

    method: str
    params: dict[str, Any]  # query, form and JSON merged; JSON-looking form fields decoded
    token: str
    at: float = 0.0
    status: int | None = None  # HTTP status answered; None while in flight
    ok: bool | None = None
    error: str | None = None
    result: dict[str, Any] | None = None


@dataclass
class Upload:
    file_id: str
    channel: str
    filename: str
    title: str
    content: bytes
    initial_comment: str | None
    thread_ts: str | None


@dataclass
class Conn:
    """One Socket Mode websocket connection."""

    id: int
    ws: web.WebSocketResponse
    opened: float
    closed: float | None = None
    pings: int = 0
    sent: list[dict] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.closed is None and not self.ws.closed


class _SlackError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack signs an HTTP request with (v0 HMAC-SHA256 of v0:ts:body)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


async def post_to_app(url: str, body: dict[str, Any], secret: str, *, interactive: bool = False,
                      signature: str | None = None, timestamp: int | None = None) -> tuple[int, str]:
    """POST an event (JSON) or an interaction (form `payload=`) to an HTTP-mode app, signed
    like Slack signs it (or with a given, e.g. wrong, signature)."""
    if interactive:
        raw = urlencode({"payload": json.dumps(body)}).encode()
        ctype = "application/x-www-form-urlencoded"
    else:
        raw, ctype = json.dumps(body).encode(), "application/json"
    headers = {"Content-Type": ctype, **sign(raw, secret, timestamp)}
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    async with aiohttp.ClientSession() as session, session.post(url, data=raw, headers=headers) as resp:
        return resp.status, await resp.text()


class FakeSlack:
    def __init__(self, *, bot_token: str = "xoxb-test-bot-token", app_token: str = "xapp-1-test-app-token",
                 user_token: str = "xoxp-test-user-token", signing_secret: str = "test-signing-secret") -> None:
        self.bot_token, self.app_token, self.user_token = bot_token, app_token, user_token
        self.signing_secret = signing_secret
        self.url = self.api_url = ""
        self.calls: list[Call] = []
        self.uploads: list[Upload] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.conns: list[Conn] = []
        self.envelopes: dict[str, dict[str, Any]] = {}  # envelope_id -> envelope as sent
        self.acks: dict[str, dict[str, Any]] = {}  # envelope_id -> {"at": t, "payload": ...}
        self.tickets_issued = 0
        self.silent = False
        self.users: dict[str, dict[str, Any]] = {
            OWNER: {"id": OWNER, "name": "sam", "real_name": "Sam Lee", "is_bot": False},
            ANN: {"id": ANN, "name": "ann", "real_name": "Ann Lee", "is_bot": False},
            STRANGER: {"id": STRANGER, "name": "eve", "real_name": "Eve Mallory", "is_bot": False},
            BOT_USER: {"id": BOT_USER, "name": "dispatch", "real_name": "Dispatch", "is_bot": True},
        }
        self.channels: dict[str, dict[str, Any]] = {
            GENERAL: {"id": GENERAL, "name": "general", "is_private": False, "members": {OWNER, ANN, BOT_USER},
                      "topic": "Company-wide"},
            RANDOM: {"id": RANDOM, "name": "random", "is_private": False, "members": {OWNER, ANN}, "topic": ""},
            SECRET: {"id": SECRET, "name": "secret", "is_private": True, "members": {OWNER}, "topic": "Plans"},
        }
        self.history: dict[str, list[dict[str, Any]]] = {c: [] for c in self.channels}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._tickets: set[str] = set()
        self._triggers: dict[str, float] = {}
        self._failures: dict[str, deque[dict[str, Any]]] = {}
        self._drops: dict[str, int] = {}
        self._delays: dict[str, deque[float]] = {}
        self._files: dict[str, bytes] = {}  # uploaded by the bot (upload URL)
        self._user_files: dict[str, tuple[str, bytes]] = {}  # sent by people, for url_private_download
        self._queue: list[dict[str, Any]] = []  # envelopes waiting for a (live, talking) connection
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        for user in (OWNER, STRANGER, ANN):
            self.dm_of(user)
        self._seed()

    def _seed(self) -> None:
        kickoff = {"type": "message", "user": ANN, "text": "Kickoff notes for Q3: budget review on Friday",
                   "ts": THREAD_TS, "thread_ts": THREAD_TS, "reply_count": 1}
        reply = {"type": "message", "user": OWNER, "text": "Thanks <@U0ANN>, I'll bring the numbers",
                 "ts": "1714567990.000200", "thread_ts": THREAD_TS, "parent_user_id": ANN}
        self.history[GENERAL] += [kickoff, reply]
        self.history[GENERAL].append({"type": "message", "user": ANN, "ts": "1714568000.000300",
                                      "text": "Lunch at 1? &lt;3 &amp; see <https://example.com/menu|the menu>"})
        self.history[SECRET].append({"type": "message", "user": OWNER, "ts": "1714568100.000400",
                                     "text": "Budget draft is in the shared folder"})

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files/{file_id}/{name}", self._download)
        app.router.add_get("/files/{file_id}/download/{name}", self._download)
        app.router.add_get("/link/", self._socket)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self.api_url = f"{self.url}/api/"

    async def stop(self) -> None:
        for c in self.conns:
            if c.open:
                await c.ws.close()
        for t in list(self._tasks):
            t.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- inspection ----------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 5.0,
                            where: Callable[[Call], bool] | None = None) -> Call:
        """Wait until `count` answered calls to `method` (matching `where`) exist; return the
        count-th one. Failed calls count too: check ``call.ok`` / ``call.status``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matching = [c for c in self.calls_to(method) if c.status is not None and (where is None or where(c))]
            if len(matching) >= count:
                return matching[count - 1]
            if loop.time() >= deadline:
                summary = ", ".join(f"{c.method}{'' if c.ok else '(' + str(c.error or c.status) + ')'}"
                                    for c in self.calls) or "(none)"
                raise AssertionError(f"timed out after {timeout:g}s waiting for {count} {method} call(s); "
                                     f"got {len(matching)}. Calls: {summary}")
            await asyncio.sleep(0.005)

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while envelope_id not in self.acks:
            if loop.time() >= deadline:
                raise AssertionError(f"envelope {envelope_id} was not acked within {timeout:g}s")
            await asyncio.sleep(0.005)
        return self.acks[envelope_id]

    async def wait_for_connections(self, count: int, timeout: float = 10.0) -> Conn:
        """Wait until `count` connections were opened in all; return the newest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.conns) < count:
            if loop.time() >= deadline:
                raise AssertionError(f"{len(self.conns)} Socket Mode connection(s), waited for {count}")
            await asyncio.sleep(0.01)
        return self.conns[count - 1]

    @property
    def open_connections(self) -> list[Conn]:
        return [c for c in self.conns if c.open]

    def messages_in(self, channel: str) -> list[dict[str, Any]]:
        return self.history.get(channel, [])

    def bot_messages(self, channel: str = OWNER_DM) -> list[dict[str, Any]]:
        return [m for m in self.messages_in(channel) if m.get("bot_id") == BOT_ID]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        for m in self.messages_in(channel):
            if m["ts"] == ts:
                return m
        raise KeyError(f"no message {ts} in {channel}")

    def cards(self, channel: str = OWNER_DM) -> list[dict[str, Any]]:
        """The bot's messages that are (or were) approval cards, oldest first."""
        return [m for m in self.bot_messages(channel) if any(
            b.get("type") == "section" and "Draft #" in (b.get("text") or {}).get("text", "")
            for b in m.get("blocks") or [])]

    @staticmethod
    def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
        return [e for b in message.get("blocks") or [] if b.get("type") == "actions" for e in b["elements"]]

    @staticmethod
    def text_of(message: dict[str, Any]) -> str:
        """Everything a message shows: its text and the text of its blocks."""
        parts = [message.get("text", "")]
        for b in message.get("blocks") or []:
            parts.append((b.get("text") or {}).get("text", ""))
            parts += [e.get("text", "") for e in b.get("elements") or [] if isinstance(e.get("text"), str)]
        return "\n".join(parts)

    # -- scripting failures ----------------------------------------------------------------

    def fail_next(self, method: str, *, status: int = 429, retry_after: int = 1, error: str | None = None,
                  times: int = 1) -> None:
        """The next `times` calls to `method` fail: 429 with Retry-After (the default), a 5xx,
        or (status 200) ``{"ok": false, "error": error}``."""
        spec = {"status": status, "retry_after": retry_after, "error": error}
        self._failures.setdefault(method, deque()).extend(dict(spec) for _ in range(times))

    def slow_next(self, method: str, seconds: float) -> None:
        """The next call to `method` takes `seconds` before it is carried out."""
        self._delays.setdefault(method, deque()).append(seconds)

    def drop_next(self, method: str) -> None:
        """The next call to `method` is carried out, then the connection is cut unanswered."""
        self._drops[method] = self._drops.get(method, 0) + 1

    def go_silent(self) -> None:
        """Stop answering pings and stop delivering envelopes (the socket stays open)."""
        self.silent = True

    def resume(self) -> None:
        self.silent = False
        self._kick()

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Send a "disconnect" envelope on the newest connection, as Slack does before it
        recycles one; the client is expected to open a new connection."""
        live = self.open_connections
        if live:
            self._spawn(self._send(live[-1], {"type": "disconnect", "reason": reason,
                                              "debug_info": {"host": "fake-applink"}}))

    def drop_socket(self) -> None:
        for c in self.open_connections:
            self._spawn(c.ws.close(code=1006))

    # -- the phone: events and interactions ----------------------------------------------------

    def dm_of(self, user: str) -> str:
        dm = "D" + user[1:]
        if dm not in self.channels:
            self.channels[dm] = {"id": dm, "name": dm, "is_im": True, "user": user, "is_private": True,
                                 "members": {user, BOT_USER}}
            self.history[dm] = []
        return dm

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def add_file(self, name: str, content: bytes, *, mimetype: str = "application/octet-stream") -> dict[str, Any]:
        """A file a person uploads, to hand to send_dm(files=[...])."""
        file_id = f"F{next(self._ids):08d}"
        self._user_files[file_id] = (name, content)
        return {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "size": len(content),
                "mode": "hosted", "url_private": f"{self.url}/files/{file_id}/{quote(name, safe='')}",
                "url_private_download": f"{self.url}/files/{file_id}/download/{quote(name, safe='')}"}

    def send_dm(self, text: str, *, user: str = OWNER, channel: str | None = None, thread_ts: str | None = None,
                files: list[dict[str, Any]] | None = None, subtype: str | None = None, bot_id: str | None = None,
                channel_type: str = "im", deliver: bool = True) -> str | dict[str, Any]:
        """A person's message in their DM with the app (or elsewhere). Delivered over the
        socket (returns the envelope id), or returned as the HTTP body (deliver=False)."""
        channel = channel or self.dm_of(user)
        ts = self._next_ts()
        event: dict[str, Any] = {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
                                 "event_ts": ts, "channel_type": channel_type, "team": TEAM,
                                 "client_msg_id": str(uuid.uuid4())}
        if thread_ts:
            event["thread_ts"] = thread_ts
        if files:
            event["files"], event["subtype"] = files, "file_share"
        if subtype:
            event["subtype"] = subtype
        if bot_id:
            event["bot_id"] = bot_id
        self.history.setdefault(channel, []).append(dict(event))
        body = {"token": "fake-verification-token", "team_id": TEAM, "api_app_id": APP_ID, "event": event,
                "type": "event_callback", "event_id": f"Ev{next(self._ids):08d}", "event_time": int(time.time()),
                "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": BOT_USER, "is_bot": True,
                                    "is_enterprise_install": False}],
                "is_ext_shared_channel": False}
        return self.deliver("events_api", body) if deliver else body

    def press(self, message_ts: str, action_id: str, value: str | None = None, *, user: str = OWNER,
              channel: str = OWNER_DM, strict: bool = True, deliver: bool = True) -> str | dict[str, Any]:
        """Press a button on one of the bot's messages. With strict, the button must be on it."""
        msg = self.message(channel, message_ts)
        block_id, button = "", None
        for b in msg.get("blocks") or []:
            for e in ([b["accessory"]] if b.get("accessory") else []) + list(b.get("elements") or []):
                if e.get("type") == "button" and e.get("action_id") == action_id and (
                        value is None or e.get("value") == value):
                    block_id, button = b.get("block_id", ""), e
                    break
            if button:
                break
        if button is None:
            if strict:
                raise AssertionError(f"no button {action_id}={value} on message {message_ts}")
            button = {"action_id": action_id, "value": value or "", "text": {"type": "plain_text", "text": "?"}}
        trigger = f"{next(self._ids)}.{int(time.time())}.fake-trigger"
        self._triggers[trigger] = time.monotonic()
        body = {"type": "block_actions", "user": {"id": user, "username": self.users[user]["name"],
                                                  "name": self.users[user]["name"], "team_id": TEAM},
                "api_app_id": APP_ID, "token": "fake-verification-token",
                "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                              "is_ephemeral": False},
                "trigger_id": trigger, "team": {"id": TEAM, "domain": "fake"}, "enterprise": None,
                "is_enterprise_install": False, "channel": {"id": channel, "name": "directmessage"},
                "message": copy.deepcopy(msg), "state": {"values": {}},
                "response_url": f"{self.url}/respond/{next(self._ids)}",
                "actions": [{"action_id": button["action_id"], "block_id": block_id, "text": button.get("text"),
                             "value": button.get("value", "") if value is None else value, "type": "button",
                             "action_ts": f"{time.time():.6f}"}]}
        return self.deliver("interactive", body) if deliver else body

    def submit_view(self, view_id: str, text: str, *, user: str = OWNER, deliver: bool = True) -> str | dict[str, Any]:
        """Submit a modal the bot opened, with `text` in its (every) input."""
        view = copy.deepcopy(self.views[view_id])
        values = {b["block_id"]: {b["element"]["action_id"]: {"type": b["element"]["type"], "value": text}}
                  for b in view.get("blocks") or [] if b.get("type") == "input"}
        view.update(id=view_id, state={"values": values}, hash=f"h{next(self._ids)}", team_id=TEAM)
        body = {"type": "view_submission", "team": {"id": TEAM, "domain": "fake"},
                "user": {"id": user, "username": self.users[user]["name"], "name": self.users[user]["name"],
                         "team_id": TEAM},
                "api_app_id": APP_ID, "token": "fake-verification-token",
                "trigger_id": f"{next(self._ids)}.fake-trigger", "view": view, "response_urls": [],
                "is_enterprise_install": False, "enterprise": None}
        return self.deliver("interactive", body) if deliver else body

    def deliver(self, kind: str, payload: dict[str, Any], retry_attempt: int = 0) -> str:
        envelope = {"envelope_id": str(uuid.uuid4()), "type": kind, "payload": payload,
                    "accepts_response_payload": kind == "interactive", "retry_attempt": retry_attempt,
                    "retry_reason": "timeout" if retry_attempt else ""}
        self.envelopes[envelope["envelope_id"]] = envelope
        self._queue.append(envelope)
        self._kick()
        return envelope["envelope_id"]

    # -- Socket Mode ---------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _kick(self) -> None:
        if self.silent or not self._queue:
            return
        live = self.open_connections
        if not live:
            return
        conn, queued, self._queue = live[-1], self._queue, []
        for envelope in queued:
            self._spawn(self._send(conn, envelope))

    async def _send(self, conn: Conn, message: dict[str, Any]) -> None:
        try:
            await conn.ws.send_json(message)
            conn.sent.append(message)
        except (ConnectionError, RuntimeError):
            if "envelope_id" in message:
                self._queue.insert(0, message)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=403, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=False, heartbeat=None)
        await ws.prepare(request)
        conn = Conn(len(self.conns) + 1, ws, time.monotonic())
        self.conns.append(conn)
        await self._send(conn, {"type": "hello", "num_connections": len(self.open_connections),
                                "debug_info": {"host": "fake-applink", "approximate_connection_time": 18060},
                                "connection_info": {"app_id": APP_ID}})
        self._kick()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    conn.pings += 1
                    if not self.silent:
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data.get("envelope_id"):
                        self.acks.setdefault(data["envelope_id"], {"at": time.monotonic(),
                                                                   "payload": data.get("payload"), "conn": conn.id})
        finally:
            conn.closed = time.monotonic()
            self._redeliver(conn)
        return ws

    def _redeliver(self, conn: Conn) -> None:
        """Events sent on a connection that went away unacked come again, like Slack's retries."""
        for envelope in conn.sent:
            eid = envelope.get("envelope_id")
            if eid and eid not in self.acks and envelope["type"] == "events_api" and envelope["retry_attempt"] < 3:
                self.deliver("events_api", envelope["payload"], envelope["retry_attempt"] + 1)

    # -- HTTP ------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.body_exists:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(parse_qsl((await request.read()).decode(), keep_blank_values=True)))
        for key in ("blocks", "view", "files", "attachments", "users"):
            if isinstance(params.get(key), str) and params[key][:1] in "[{":
                params[key] = json.loads(params[key])
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else str(params.pop("token", ""))
        params.pop("token", None)
        call = Call(method, params, token, time.monotonic())
        self.calls.append(call)
        try:
            failures = self._failures.get(method)
            if failures:
                spec = failures.popleft()
                return self._scripted(call, **spec)
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                raise _SlackError("unknown_method")
            delays = self._delays.get(method)
            if delays:
                await asyncio.sleep(delays.popleft())
            result = await handler(call, self._who(token, method))
        except _SlackError as exc:
            call.status, call.ok, call.error = 200, False, exc.error
            return web.json_response({"ok": False, "error": exc.error, **exc.extra})
        if self._drops.get(method):
            self._drops[method] -= 1
            call.status, call.ok, call.result = 0, True, result
            assert request.transport is not None
            request.transport.close()  # carried out, never answered
            raise asyncio.CancelledError
        call.status, call.ok, call.result = 200, True, result
        return web.json_response({"ok": True, **result})

    def _scripted(self, call: Call, *, status: int, retry_after: int, error: str | None) -> web.Response:
        call.status, call.ok = status, False
        if status == 429:
            call.error = "ratelimited"
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(retry_after)})
        if status >= 500:
            call.error = f"HTTP {status}"
            return web.Response(status=status, text="<html><body>upstream error</body></html>",
                                content_type="text/html")
        call.status, call.error = 200, error or "fatal_error"
        return web.json_response({"ok": False, "error": call.error})

    def _who(self, token: str, method: str) -> str:
        """'bot', 'user' or 'app' for a known token; Slack's error otherwise."""
        who = {self.bot_token: "bot", self.user_token: "user", self.app_token: "app"}.get(token)
        if not token:
            raise _SlackError("not_authed")
        if who is None:
            raise _SlackError("invalid_auth")
        if (method == "apps.connections.open") != (who == "app"):
            raise _SlackError("not_allowed_token_type")
        return who

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        if file_id not in self._files:
            return web.Response(status=404, text="not found", content_type="text/plain")
        data = await request.read()
        self._files[file_id] = data
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _download(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        found = self._user_files.get(request.match_info["file_id"])
        if auth not in (f"Bearer {self.bot_token}", f"Bearer {self.user_token}") or found is None:
            # Slack answers a file URL without a valid token with its login page.
            return web.Response(text="<html><body>Sign in to Slack</body></html>", content_type="text/html")
        return web.Response(body=found[1], content_type="application/octet-stream")

    # -- Web API methods ------------------------------------------------------------------------------

    def _me(self, who: str) -> str:
        return BOT_USER if who == "bot" else OWNER

    def _channel(self, cid: str, who: str) -> dict[str, Any]:
        if cid.startswith("#"):
            cid = next((c for c, ch in self.channels.items() if ch["name"] == cid[1:]), cid)
        ch = self.channels.get(cid)
        if ch is None or (ch.get("is_private") and self._me(who) not in ch["members"]):
            raise _SlackError("channel_not_found")
        return ch

    def _public(self, ch: dict[str, Any], who: str) -> dict[str, Any]:
        out = {k: v for k, v in ch.items() if k not in ("members", "topic")}
        out.update(is_channel=not ch.get("is_im") and not ch.get("is_private"), is_group=bool(ch.get("is_private"))
                   and not ch.get("is_im"), is_im=bool(ch.get("is_im")), is_archived=False,
                   is_member=self._me(who) in ch["members"], num_members=len(ch["members"]),
                   topic={"value": ch.get("topic", "")}, purpose={"value": ""})
        return out

    async def _m_auth_test(self, call: Call, who: str) -> dict[str, Any]:
        user = self.users[self._me(who)]
        out = {"url": "https://fake.slack.com/", "team": "Fake Team", "user": user["name"], "team_id": TEAM,
               "user_id": user["id"], "is_enterprise_install": False}
        if who == "bot":
            out["bot_id"] = BOT_ID
        return out

    async def _m_apps_connections_open(self, call: Call, who: str) -> dict[str, Any]:
        self.tickets_issued += 1
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"url": f"ws://127.0.0.1:{self.url.rsplit(':', 1)[1]}/link/?ticket={ticket}&app_id={APP_ID}"}

    def _validate_blocks(self, blocks: Any) -> None:
        if blocks is None:
            return
        if not isinstance(blocks, list) or len(blocks) > 50:
            raise _SlackError("invalid_blocks")
        block_ids = set()
        for b in blocks:
            if not isinstance(b, dict) or b.get("type") not in _BLOCK_TYPES:
                raise _SlackError("invalid_blocks")
            if b.get("block_id"):
                if b["block_id"] in block_ids or len(b["block_id"]) > 255:
                    raise _SlackError("invalid_blocks")
                block_ids.add(b["block_id"])
            if b["type"] == "section" and len((b.get("text") or {}).get("text", "")) > 3000:
                raise _SlackError("invalid_blocks", response_metadata={"messages": ["section text over 3000"]})
            elements = list(b.get("elements") or []) + ([b["accessory"]] if b.get("accessory") else [])
            if b["type"] == "actions" and not 0 < len(elements) <= 25:
                raise _SlackError("invalid_blocks")
            action_ids = set()
            for e in elements:
                if e.get("type") == "button":
                    if (len(e["text"]["text"]) > 75 or len(e.get("value", "")) > 2000
                            or len(e.get("action_id", "")) > 255 or e.get("action_id") in action_ids):
                        raise _SlackError("invalid_blocks")
                    action_ids.add(e.get("action_id"))

    async def _m_chat_postMessage(self, call: Call, who: str) -> dict[str, Any]:
        p = call.params
        ch = self._channel(str(p.get("channel", "")), who)
        if ch.get("is_private") and self._me(who) not in ch["members"]:
            raise _SlackError("not_in_channel")
        text, blocks = p.get("text"), p.get("blocks")
        if not text and not blocks:
            raise _SlackError("no_text")
        if text and len(text) > MAX_TEXT:
            raise _SlackError("msg_too_long")
        self._validate_blocks(blocks)
        ts = self._next_ts()
        msg: dict[str, Any] = {"type": "message", "ts": ts, "user": self._me(who), "text": text or "",
                               "channel": ch["id"], "edits": 0}
        if who == "bot":
            msg["bot_id"] = BOT_ID
        if blocks:
            msg["blocks"] = blocks
        if p.get("thread_ts"):
            msg["thread_ts"] = str(p["thread_ts"])
        self.history[ch["id"]].append(msg)
        return {"channel": ch["id"], "ts": ts, "message": {k: v for k, v in msg.items() if k != "edits"}}

    async def _m_chat_update(self, call: Call, who: str) -> dict[str, Any]:
        p = call.params
        ch = self._channel(str(p.get("channel", "")), who)
        try:
            msg = self.message(ch["id"], str(p.get("ts", "")))
        except KeyError:
            raise _SlackError("message_not_found") from None
        if msg.get("user") != self._me(who):
            raise _SlackError("cant_update_message")
        self._validate_blocks(p.get("blocks"))
        if "text" in p:
            msg["text"] = p["text"]
        if p.get("blocks"):
            msg["blocks"] = p["blocks"]
        else:
            msg.pop("blocks", None)
        msg["edits"] = msg.get("edits", 0) + 1
        return {"channel": ch["id"], "ts": msg["ts"], "text": msg["text"]}

    async def _m_chat_postEphemeral(self, call: Call, who: str) -> dict[str, Any]:
        p = call.params
        ch = self._channel(str(p.get("channel", "")), who)
        if not p.get("user") or not (p.get("text") or p.get("blocks")):
            raise _SlackError("invalid_arguments")
        self.ephemerals.append({"channel": ch["id"], "user": p["user"], "text": p.get("text", "")})
        return {"message_ts": self._next_ts()}

    async def _m_conversations_list(self, call: Call, who: str) -> dict[str, Any]:
        p = call.params
        types = str(p.get("types") or "public_channel").split(",")
        visible = [ch for ch in self.channels.values() if not ch.get("is_im")
                   and (("private_channel" in types and ch["is_private"] and self._me(who) in ch["members"])
                        or ("public_channel" in types and not ch["is_private"]))]
        start, limit = int(p.get("cursor") or 0), int(p.get("limit") or 100)
        page = visible[start:start + limit]
        nxt = str(start + limit) if start + limit < len(visible) else ""
        return {"channels": [self._public(ch, who) for ch in page], "response_metadata": {"next_cursor": nxt}}

    async def _m_conversations_info(self, call: Call, who: str) -> dict[str, Any]:
        return {"channel": self._public(self._channel(str(call.params.get("channel", "")), who), who)}

    def _readable(self, ch: dict[str, Any], who: str) -> None:
        if who == "bot" and BOT_USER not in ch["members"]:
            raise _SlackError("not_in_channel")

    async def _m_conversations_history(self, call: Call, who: str) -> dict[str, Any]:
        ch = self._channel(str(call.params.get("channel", "")), who)
        self._readable(ch, who)
        top = [m for m in self.history[ch["id"]] if m.get("thread_ts") in (None, m["ts"])]
        limit = int(call.params.get("limit") or 100)
        return {"messages": [self._clean(m) for m in reversed(top)][:limit], "has_more": len(top) > limit}

    async def _m_conversations_replies(self, call: Call, who: str) -> dict[str, Any]:
        ch = self._channel(str(call.params.get("channel", "")), who)
        self._readable(ch, who)
        ts = str(call.params.get("ts", ""))
        try:
            first = self.message(ch["id"], ts)
        except KeyError:
            raise _SlackError("thread_not_found") from None
        root = first.get("thread_ts") or first["ts"]
        thread = [m for m in self.history[ch["id"]] if m["ts"] == root or m.get("thread_ts") == root]
        if root != ts:  # asked with a reply's ts: Slack answers with that message only
            thread = [first]
        limit = int(call.params.get("limit") or 1000)
        return {"messages": [self._clean(m) for m in thread][:limit]}

    @staticmethod
    def _clean(m: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k not in ("edits", "channel", "channel_type", "event_ts")}

    async def _m_conversations_open(self, call: Call, who: str) -> dict[str, Any]:
        users = call.params.get("users")
        user = users[0] if isinstance(users, list) else str(users or "").split(",")[0]
        if user not in self.users:
            raise _SlackError("user_not_found")
        return {"channel": {"id": self.dm_of(user)}}

    async def _m_users_info(self, call: Call, who: str) -> dict[str, Any]:
        user = self.users.get(str(call.params.get("user", "")))
        if user is None:
            raise _SlackError("user_not_found")
        return {"user": dict(user, team_id=TEAM, profile={"real_name": user["real_name"]})}

    async def _m_search_messages(self, call: Call, who: str) -> dict[str, Any]:
        if who != "user":
            raise _SlackError("not_allowed_token_type")
        query = str(call.params.get("query", "")).lower()
        matches = []
        for cid, msgs in self.history.items():
            ch = self.channels[cid]
            if ch.get("is_im") or (ch["is_private"] and OWNER not in ch["members"]):
                continue
            for m in msgs:
                if query and query in str(m.get("text", "")).lower():
                    matches.append({"type": "message", "ts": m["ts"], "text": m.get("text", ""),
                                    "user": m.get("user"), "username": self.users.get(m.get("user"), {}).get("name"),
                                    "channel": {"id": cid, "name": ch["name"], "is_im": False,
                                                "is_private": ch["is_private"]},
                                    "permalink": f"https://fake.slack.com/archives/{cid}/p{m['ts'].replace('.', '')}"})
        matches.sort(key=lambda m: m["ts"], reverse=True)
        count = int(call.params.get("count") or 20)
        return {"query": call.params.get("query"), "messages": {"total": len(matches), "matches": matches[:count]}}

    async def _m_views_open(self, call: Call, who: str) -> dict[str, Any]:
        trigger = str(call.params.get("trigger_id", ""))
        issued = self._triggers.pop(trigger, None)
        if issued is None:
            raise _SlackError("invalid_trigger_id")
        if time.monotonic() - issued > TRIGGER_TTL:
            raise _SlackError("expired_trigger_id")
        view = call.params.get("view")
        if (not isinstance(view, dict) or view.get("type") != "modal"
                or len((view.get("title") or {}).get("text", "")) > 24
                or len((view.get("submit") or {}).get("text", "")) > 24 or len(view.get("private_metadata", "")) > 3000):
            raise _SlackError("invalid_arguments")
        for b in view.get("blocks") or []:
            element = b.get("element") or {}
            if len(str(element.get("initial_value", ""))) > int(element.get("max_length") or 3000):
                raise _SlackError("invalid_arguments")
        view_id = f"V{next(self._ids):08d}"
        self.views[view_id] = view
        return {"view": dict(view, id=view_id)}

    async def _m_files_getUploadURLExternal(self, call: Call, who: str) -> dict[str, Any]:
        if not call.params.get("filename") or not str(call.params.get("length", "")).isdigit():
            raise _SlackError("invalid_arguments")
        file_id = f"F{next(self._ids):08d}"
        self._files[file_id] = b""
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    async def _m_files_completeUploadExternal(self, call: Call, who: str) -> dict[str, Any]:
        p = call.params
        files = p.get("files") or []
        channel = str(p.get("channel_id") or "")
        if channel:
            self._channel(channel, who)
        out = []
        for f in files:
            if f.get("id") not in self._files:
                raise _SlackError("file_not_found")
            name = [c for c in self.calls_to("files.getUploadURLExternal") if c.result and
                    c.result.get("file_id") == f["id"]][0].params["filename"]
            self.uploads.append(Upload(f["id"], channel, name, f.get("title") or name, self._files[f["id"]],
                                       p.get("initial_comment"), p.get("thread_ts")))
            out.append({"id": f["id"], "name": name, "title": f.get("title") or name})
        return {"files": out}
