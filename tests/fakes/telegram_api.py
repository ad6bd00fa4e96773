"""A scripted fake of the Telegram Bot API for tests and benchmarks.

It speaks real HTTP so the real python-telegram-bot (its request encoding, long polling,
error classes and response parsing) is exercised instead of a mock. Point PTB at it with::

    Application.builder().token(fake.token).base_url(fake.base_url) \\
        .base_file_url(fake.base_file_url).build()

Tests play the phone: ``send_message``/``send_document``/``press_button`` queue updates that the
bot's ``getUpdates`` long poll receives, and ``messages``/``calls`` show what the bot did.
Like the real API it parses HTML formatting (and rejects what Telegram rejects: unsupported
tags, a bare ``<``, unclosed tags), refuses ``getFile`` on files over 20 MB, answers
``message is not modified`` to identical edits, drops an inline keyboard that an edit does
not repeat, and confirms updates by ``offset``. Failures can be scripted with ``fail_next``,
``stall_get_updates`` and ``reject_html``.

PTB 22.8 sends every parameter as a form field (``application/x-www-form-urlencoded``, or
``multipart/form-data`` when a file is uploaded), with non-string values JSON-encoded, so
``"123"``, ``"true"`` and ``'{"inline_keyboard": ...}'`` arrive as strings; ``Call.params``
holds them decoded. JSON bodies and query strings are accepted as well.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import mimetypes
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024  # getFile refuses bigger files ("file is too big")
MAX_UPLOAD_SIZE = 50 * 1024 * 1024  # the real API answers 413 above this
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message")
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CONFLICT = ("Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running")

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: CONFLICT,
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}
_GATEWAY_PHRASES = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}

# Form fields that are plain strings even when they look like JSON ("123" stays a str).
_STRING_FIELDS = {
    "text", "caption", "parse_mode", "callback_query_id", "inline_message_id", "action", "file_id",
    "url", "language_code", "business_connection_id", "message_effect_id", "file_name", "title",
    "description", "short_description", "name", "emoji", "secret_token", "ip_address", "question",
    "query", "document", "photo", "voice", "sticker", "video", "audio", "animation", "thumbnail",
    "certificate", "video_note", "inline_query_id", "web_app_query_id", "sticker_set_name",
}
# Fields whose value is JSON even inside a JSON body (some clients double-encode).
_JSON_FIELDS = {
    "reply_markup", "entities", "caption_entities", "commands", "scope", "allowed_updates",
    "reply_parameters", "link_preview_options", "media", "results",
}
_CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
}
_DEFAULT_ALLOWED = {"message", "edited_message", "channel_post", "edited_channel_post",
                    "business_connection", "business_message", "edited_business_message",
                    "deleted_business_messages", "inline_query", "chosen_inline_result",
                    "callback_query", "shipping_query", "pre_checkout_query", "purchased_paid_media",
                    "poll", "poll_answer", "my_chat_member", "chat_join_request", "chat_boost",
                    "removed_chat_boost"}  # everything except chat_member and message reactions
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_INTERNAL_KEYS = ("parse_mode", "raw_text")


@dataclass
class Call:
    """One Bot API request as the fake received it."""

    method: str  # as spelled in the URL (the real API is case-insensitive; so is calls_to)
    params: dict[str, Any]  # decoded: ints are ints, reply_markup/entities/commands are parsed
    files: dict[str, bytes] = field(default_factory=dict)  # multipart part name -> uploaded bytes
    at: float = 0.0  # time.monotonic() when the request arrived
    filenames: dict[str, str] = field(default_factory=dict)  # multipart part name -> file name
    status: int | None = None  # HTTP status answered; None while in flight; 499 if the client left
    result: Any = None  # the "result" answered on success
    description: str | None = None  # the error description on failure


@dataclass
class Upload:
    """A file the bot sent (sendDocument/sendPhoto), by upload or by file_id."""

    chat_id: int
    message_id: int
    kind: str  # "document" or "photo"
    file_id: str
    file_name: str | None
    content: bytes
    mime_type: str | None
    caption: str | None


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    content: bytes
    file_size: int
    file_path: str
    file_name: str | None = None


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeTelegram:
    def __init__(self, token: str = "123456:TEST-TOKEN", bot_username: str = "dispatch_test_bot",
                 *, bot_name: str = "Dispatch", validate_html: bool = True):
        self.token = token
        self.bot_username = bot_username
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 123456
        self.bot_user = {"id": self.bot_id, "is_bot": True, "first_name": bot_name,
                         "username": bot_username}
        self.validate_html = validate_html  # parse HTML like the real API and reject what it rejects
        self.url = ""
        self.base_url = ""
        self.base_file_url = ""

        self.calls: list[Call] = []
        self.updates: list[dict] = []  # every update injected, in order (delivered or not)
        self.messages: dict[tuple[int, int], dict] = {}  # the bot's messages, current state
        self.deleted: list[tuple[int, int]] = []  # (chat_id, message_id) the bot deleted
        self.uploads: list[Upload] = []
        self.answers: dict[str, dict] = {}  # callback query id -> answerCallbackQuery params
        self.commands: dict[tuple[str, str], list[dict]] = {}  # (scope json, language) -> commands
        self.downloads: list[str] = []  # file paths fetched from the file route

        self._queue: list[dict] = []
        self._update_ids = itertools.count(1)
        self._ids = itertools.count(1)  # file ids, query ids
        self._message_ids: dict[int, itertools.count] = {}
        self._all: dict[tuple[int, int], dict] = {}  # every message, the user's and the bot's
        self._chats: dict[int, dict] = {}
        self._users: dict[int, dict] = {}
        self._files: dict[str, _File] = {}
        self._paths: dict[str, _File] = {}
        self._open_queries: set[str] = set()
        self._failures: dict[str, deque[dict]] = {}
        self.failed_downloads: list[str] = []  # file paths whose download was answered with a scripted failure
        self._stalls: deque[float] = deque()
        self._html_rejects: list[str] = []
        self._allowed: set[str] = set(_DEFAULT_ALLOWED)
        self._poll_generation = 0
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[Call], Awaitable[Any]]] = {
            name.lower(): getattr(self, f"_m_{name}") for name in (
                "getMe", "logOut", "close", "deleteWebhook", "getWebhookInfo", "setMyCommands",
                "getMyCommands", "deleteMyCommands", "getUpdates", "sendMessage",
                "editMessageText", "editMessageCaption", "editMessageReplyMarkup", "deleteMessage",
                "answerCallbackQuery", "sendChatAction", "sendDocument", "sendPhoto", "getFile",
                "getChat")
        }

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        # Events made in __init__ may belong to another (earlier) event loop.
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=MAX_UPLOAD_SIZE + 4 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        # handler_cancellation: a client that gives up on a long poll cancels our wait, so a
        # hung getUpdates never outlives the test; the short shutdown keeps stop() fast.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self.base_url = f"{self.url}/bot"
        self.base_file_url = f"{self.url}/file/bot"

    async def stop(self) -> None:
        self._closing.set()  # pending long polls and stalls answer at once
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeTelegram":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- inspection --------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        name = method.lower()
        return [c for c in self.calls if c.method.lower() == name]

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 5.0,
                            where: Callable[[Call], bool] | None = None) -> Call:
        """Wait until `count` answered calls to `method` (matching `where`) exist; return the
        count-th one. Failed calls count too: check ``call.status``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matching = [c for c in self.calls_to(method)
                        if c.status is not None and (where is None or where(c))]
            if len(matching) >= count:
                return matching[count - 1]
            if loop.time() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:g}s waiting for {count} {method} call(s)"
                    f"{' matching where' if where else ''}; got {len(matching)}. "
                    f"Recorded calls: {self._summary()}")
            await asyncio.sleep(0.005)

    def _summary(self) -> str:
        runs: list[list] = []
        for c in self.calls:
            label = c.method if c.status in (None, 200) else f"{c.method}({c.status})"
            if runs and runs[-1][0] == label:
                runs[-1][1] += 1
            else:
                runs.append([label, 1])
        return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in runs) or "(none)"

    def sent_texts(self, chat_id: int | None = None, *, raw: bool = False) -> list[str]:
        """The text of every text message the bot sent (current state, after edits), in order.
        By default what the user sees (HTML parsed away); raw=True gives the text as sent."""
        return [m["raw_text" if raw else "text"] for (c, _), m in self.messages.items()
                if "text" in m and (chat_id is None or c == chat_id)]

    def last_message(self, chat_id: int | None = None) -> dict:
        for (c, _), m in reversed(self.messages.items()):
            if chat_id is None or c == chat_id:
                return m
        raise AssertionError("the bot has sent no message" + (f" to {chat_id}" if chat_id else ""))

    def file_content(self, file_id: str) -> bytes:
        return self._files[file_id].content

    @property
    def pending_updates(self) -> int:
        return len(self._queue)

    # -- scripting failures --------------------------------------------------------

    def fail_next(self, method: str, *, status: int = 429, retry_after: int | None = None,
                  description: str | None = None, times: int = 1) -> None:
        """The next `times` calls to `method` fail. 429 carries parameters.retry_after (1 unless
        given); 502/503/504 without a description answer an nginx HTML page, like a proxy.
        `method` "download" makes the file server (/file/bot<token>/<path>) fail instead."""
        if status == 429 and retry_after is None:
            retry_after = 1
        spec = dict(status=status, retry_after=retry_after, description=description)
        self._failures.setdefault(method.lower(), deque()).extend(dict(spec) for _ in range(times))

    def stall_get_updates(self, seconds: float) -> None:
        """The next getUpdates hangs `seconds` whatever its timeout, then answers at once."""
        self._stalls.append(seconds)

    def reject_html(self, pattern: str) -> None:
        """Any HTML-mode text or caption containing `pattern` fails with "can't parse entities"."""
        self._html_rejects.append(pattern)

    # -- the phone: injecting updates -------------------------------------------------

    def send_update(self, update: dict) -> int:
        """Queue a raw update (without update_id); returns its update_id."""
        update_id = next(self._update_ids)
        full = {"update_id": update_id, **copy.deepcopy(update)}
        self._queue.append(full)
        self.updates.append(full)
        self._notify()
        return update_id

    def send_message(self, text: str, *, user_id: int = 1001, chat_id: int | None = None,
                     chat_type: str = "private", first_name: str = "Sam",
                     username: str | None = "sam", reply_to_message_id: int | None = None,
                     entities: list | None = None) -> dict:
        content: dict[str, Any] = {"text": text}
        if entities is None and text.startswith("/"):
            command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
            if command:
                entities = [{"offset": 0, "length": utf16_len(command.group(0)), "type": "bot_command"}]
        if entities:
            content["entities"] = entities
        msg = self._user_message(content, user_id=user_id, chat_id=chat_id, chat_type=chat_type,
                                 first_name=first_name, username=username,
                                 reply_to_message_id=reply_to_message_id)
        self.send_update({"message": msg})
        return copy.deepcopy(msg)

    def send_document(self, content: bytes, file_name: str, *,
                      mime_type: str = "application/octet-stream", file_size: int | None = None,
                      caption: str | None = None, user_id: int = 1001,
                      chat_id: int | None = None, **who: Any) -> dict:
        """A document from the user; `file_size` may claim more than len(content)."""
        f = self._register(content, "documents", file_name, file_size)
        doc = {"file_name": file_name, "mime_type": mime_type, "file_id": f.file_id,
               "file_unique_id": f.file_unique_id, "file_size": f.file_size}
        return self._inject_media({"document": doc}, caption, user_id, chat_id, who)

    def send_photo(self, content: bytes, *, caption: str | None = None, user_id: int = 1001,
                   chat_id: int | None = None, width: int | None = None,
                   height: int | None = None, **who: Any) -> dict:
        """A photo from the user: a PhotoSize array, smallest first, as the real API sends."""
        w, h = (width, height) if width and height else _image_size(content)
        return self._inject_media({"photo": self._photo_sizes(content, w, h)}, caption, user_id,
                                  chat_id, who)

    def send_voice(self, content: bytes = b"OggS\x00fake-voice", *, duration: int = 3,
                   caption: str | None = None, user_id: int = 1001, chat_id: int | None = None,
                   **who: Any) -> dict:
        f = self._register(content, "voice", "voice.oga", None)
        voice = {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "duration": duration,
                 "mime_type": "audio/ogg", "file_size": f.file_size}
        return self._inject_media({"voice": voice}, caption, user_id, chat_id, who)

    def send_sticker(self, *, emoji: str = "👍", content: bytes = b"RIFF\x00\x00\x00\x00WEBP",
                     user_id: int = 1001, chat_id: int | None = None, **who: Any) -> dict:
        f = self._register(content, "stickers", "sticker.webp", None)
        sticker = {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "type": "regular",
                   "width": 512, "height": 512, "is_animated": False, "is_video": False,
                   "emoji": emoji, "set_name": "FakeStickers", "file_size": f.file_size}
        return self._inject_media({"sticker": sticker}, None, user_id, chat_id, who)

    def press_button(self, message_id: int, data: str, *, user_id: int = 1001,
                     chat_id: int | None = None, strict: bool = True) -> str:
        """The user taps an inline button on a message the bot sent; returns the query id.
        With strict (default), the message's current keyboard must have a button with `data`
        (a keyboard an edit removed cannot be pressed)."""
        chat_id = user_id if chat_id is None else chat_id
        user = self._user(user_id, None, None)
        msg = self.messages.get((chat_id, message_id))
        if msg is None:
            msg = {"message_id": message_id, "from": self.bot_user,
                   "chat": self._chat_for(chat_id), "date": int(time.time()), "text": ""}
        elif strict:
            rows = (msg.get("reply_markup") or {}).get("inline_keyboard") or []
            offered = [b.get("callback_data") for row in rows for b in row]
            if data not in offered:
                raise AssertionError(f"message {message_id} in chat {chat_id} has no button with "
                                     f"callback_data {data!r}; its buttons: {offered}")
        query_id = str(4_000_000_000_000 + next(self._ids))
        self._open_queries.add(query_id)
        self.send_update({"callback_query": {
            "id": query_id, "from": user, "message": _public(msg),
            "chat_instance": str(-7_000_000_000 - abs(chat_id)), "data": data}})
        return query_id

    # -- building messages ---------------------------------------------------------

    def _user(self, user_id: int, first_name: str | None, username: str | None) -> dict:
        user = self._users.get(user_id)
        if user is None or first_name is not None:
            user = {"id": user_id, "is_bot": False, "first_name": first_name or "Sam",
                    "language_code": "en"}
            if username:
                user["username"] = username
            self._users[user_id] = user
        return user

    def _chat_for(self, chat_id: int, chat_type: str | None = None, user: dict | None = None) -> dict:
        chat = self._chats.get(chat_id)
        if chat is not None and (chat_type is None or chat["type"] == chat_type):
            return chat
        chat_type = chat_type or ("private" if chat_id > 0 else "supergroup")
        if chat_type == "private":
            user = user or self._users.get(chat_id) or {"first_name": f"User {chat_id}"}
            chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
            if user.get("username"):
                chat["username"] = user["username"]
        else:
            chat = {"id": chat_id, "type": chat_type, "title": "Dispatch Test Group"}
        self._chats[chat_id] = chat
        return chat

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _user_message(self, content: dict, *, user_id: int, chat_id: int | None, chat_type: str,
                      first_name: str = "Sam", username: str | None = "sam",
                      reply_to_message_id: int | None = None) -> dict:
        chat_id = user_id if chat_id is None else chat_id
        user = self._user(user_id, first_name, username)
        chat = self._chat_for(chat_id, chat_type, user)
        msg: dict[str, Any] = {"message_id": self._next_message_id(chat_id), "from": user,
                               "chat": chat, "date": int(time.time())}
        if reply_to_message_id is not None:
            target = self._all.get((chat_id, reply_to_message_id)) or {
                "message_id": reply_to_message_id, "from": self.bot_user, "chat": chat,
                "date": int(time.time()), "text": ""}
            msg["reply_to_message"] = _public(target, nested=False)
        msg.update(content)
        self._all[(chat_id, msg["message_id"])] = msg
        return msg

    def _inject_media(self, content: dict, caption: str | None, user_id: int,
                      chat_id: int | None, who: dict) -> dict:
        if caption is not None:
            content["caption"] = caption
        msg = self._user_message(content, user_id=user_id, chat_id=chat_id,
                                 chat_type=who.pop("chat_type", "private"), **who)
        self.send_update({"message": msg})
        return copy.deepcopy(msg)

    def _register(self, content: bytes, folder: str, file_name: str | None,
                  file_size: int | None) -> _File:
        n = next(self._ids)
        ext = (file_name or "").rpartition(".")[2] if "." in (file_name or "") else "bin"
        f = _File(file_id=f"BQACAgIAAxkBAAIB{n:06d}fake", file_unique_id=f"AgADfake{n:06d}",
                  content=bytes(content), file_size=len(content) if file_size is None else file_size,
                  file_path=f"{folder}/file_{n}.{ext}", file_name=file_name)
        self._files[f.file_id] = f
        self._paths[f.file_path] = f
        return f

    def _photo_sizes(self, content: bytes, width: int, height: int) -> list[dict]:
        sizes = []
        for side in (90, 320, 800):
            if side < max(width, height):
                scale = side / max(width, height)
                sizes.append((max(1, round(width * scale)), max(1, round(height * scale))))
        sizes.append((width, height))
        out = []
        for w, h in sizes:
            f = self._register(content, "photos", "photo.jpg", None)
            out.append({"file_id": f.file_id, "file_unique_id": f.file_unique_id,
                        "file_size": f.file_size, "width": w, "height": h})
        return out

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- HTTP ----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params, files, filenames = await _read_params(request)
        except web.HTTPRequestEntityTooLarge:
            return _error_response(413, "Request Entity Too Large")
        except Exception as exc:  # a malformed body is a 400 the test should see
            params, files, filenames = {}, {}, {}
            call = Call(method, params, files, time.monotonic(), filenames, status=400,
                        description=f"Bad Request: unreadable body: {exc!r}")
            self.calls.append(call)
            return _error_response(400, call.description or "")
        call = Call(method, params, files, time.monotonic(), filenames)
        self.calls.append(call)
        try:
            return await self._answer(call, request.match_info["token"])
        finally:
            if call.status is None:  # cancelled: the client went away
                call.status = 499

    async def _answer(self, call: Call, token: str) -> web.StreamResponse:
        try:
            if token != self.token:
                # Telegram answers 401 for a well-formed but wrong token, 404 for a malformed one.
                if re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
                    raise _ApiError(401, "Unauthorized")
                raise _ApiError(404, "Not Found")
            failures = self._failures.get(call.method.lower())
            if failures:
                spec = failures.popleft()
                call.status = spec["status"]
                return self._scripted_failure(call, **spec)
            handler = self._handlers.get(call.method.lower())
            if handler is None:
                raise _ApiError(404, "Not Found")
            result = await handler(call)
        except _ApiError as exc:
            call.status, call.description = exc.status, exc.description
            return _error_response(exc.status, exc.description, exc.parameters)
        call.status, call.result = 200, result
        return web.json_response({"ok": True, "result": result})

    def _scripted_failure(self, call: Call, *, status: int, retry_after: int | None,
                          description: str | None) -> web.Response:
        if status in _GATEWAY_PHRASES and description is None:
            phrase = f"{status} {_GATEWAY_PHRASES[status]}"
            call.description = phrase
            html = (f"<html>\r\n<head><title>{phrase}</title></head>\r\n<body>\r\n<center><h1>"
                    f"{phrase}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n"
                    "</html>\r\n")
            return web.Response(status=status, text=html, content_type="text/html")
        if description is None:
            description = (f"Too Many Requests: retry after {retry_after}" if status == 429
                           else _DEFAULT_DESCRIPTIONS.get(status, f"Error {status}"))
        call.description = description
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        return _error_response(status, description, parameters)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        f = self._paths.get(path)
        if request.match_info["token"] != self.token or f is None:
            return _error_response(404, "Not Found")
        failures = self._failures.get("download")  # fail_next("download", status=502): the file server failing
        if failures:
            self.failed_downloads.append(path)
            return self._scripted_failure(Call("download", {"path": path}), **failures.popleft())
        self.downloads.append(path)
        return web.Response(body=f.content, content_type="application/octet-stream")

    # -- methods ---------------------------------------------------------------------

    async def _m_getMe(self, call: Call) -> dict:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False, "can_connect_to_business": False,
                "has_main_web_app": False}

    async def _m_logOut(self, call: Call) -> bool:
        return True

    async def _m_close(self, call: Call) -> bool:
        return True

    async def _m_deleteWebhook(self, call: Call) -> bool:
        if call.params.get("drop_pending_updates"):
            self._queue.clear()
        return True

    async def _m_getWebhookInfo(self, call: Call) -> dict:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._queue)}

    def _commands_key(self, params: dict) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.get("language_code") or ""

    async def _m_setMyCommands(self, call: Call) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list):
            raise _bad("parameter \"commands\" is required")
        for c in commands:
            if not isinstance(c, dict) or not _COMMAND_RE.match(str(c.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not str(c.get("description", "")).strip():
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(call.params)] = [
            {"command": c["command"], "description": c["description"]} for c in commands]
        return True

    async def _m_getMyCommands(self, call: Call) -> list:
        return self.commands.get(self._commands_key(call.params), [])

    async def _m_deleteMyCommands(self, call: Call) -> bool:
        self.commands.pop(self._commands_key(call.params), None)
        return True

    async def _m_getChat(self, call: Call) -> dict:
        chat_id = _int(call.params, "chat_id")
        chat = self._chats.get(chat_id)
        if chat is None:
            raise _bad("chat not found")
        return {**chat, "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": True, "limited_gifts": True,
                                        "unique_gifts": True, "premium_subscription": True}}

    async def _m_getUpdates(self, call: Call) -> list:
        p = call.params
        if self._stalls:
            # A poll lost in the network: ignores its timeout and is no part of the
            # "terminated by other getUpdates request" bookkeeping.
            stall = self._stalls.popleft()
            try:
                await asyncio.wait_for(self._closing.wait(), stall)
            except asyncio.TimeoutError:
                pass
            timeout, generation = 0.0, None
        else:
            timeout = float(p.get("timeout") or 0)
            self._poll_generation += 1
            generation = self._poll_generation
            self._notify()  # an older pending poll gets 409 Conflict, like the real API
        limit = max(1, min(100, int(p.get("limit") or 100)))
        if "allowed_updates" in p and isinstance(p["allowed_updates"], list):
            self._allowed = set(p["allowed_updates"]) or set(_DEFAULT_ALLOWED)
        self._confirm(p.get("offset"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._queue = [u for u in self._queue if _update_type(u) in self._allowed]
            if self._queue or self._closing.is_set():
                return copy.deepcopy(self._queue[:limit])
            if generation is not None and generation != self._poll_generation:
                raise _ApiError(409, CONFLICT)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _confirm(self, offset: Any) -> None:
        if offset is None:
            return
        offset = int(offset)
        if offset > 0:
            self._queue = [u for u in self._queue if u["update_id"] >= offset]
        elif offset < 0:
            self._queue = self._queue[offset:]

    async def _m_sendMessage(self, call: Call) -> dict:
        p = call.params
        chat_id = _int(p, "chat_id")
        text = p.get("text")
        if text is None:
            raise _bad("message text is empty")
        plain, entities = self._formatted(str(text), p.get("parse_mode"), p.get("entities"))
        if not plain.strip():
            raise _bad("message text is empty")
        if utf16_len(plain) > MAX_TEXT_LENGTH:
            raise _bad("message is too long")
        msg = self._bot_message(chat_id, p, {"text": plain})
        if entities:
            msg["entities"] = entities
        return self._store(msg, p, raw_text=str(text))

    async def _m_editMessageText(self, call: Call) -> dict:
        p = call.params
        msg = self._editable(p)
        if "text" not in msg:
            raise _bad("there is no text in the message to edit")
        text = str(p.get("text") or "")
        plain, entities = self._formatted(text, p.get("parse_mode"), p.get("entities"))
        if not plain.strip():
            raise _bad("message text is empty")
        if utf16_len(plain) > MAX_TEXT_LENGTH:
            raise _bad("message is too long")
        markup = _inline_markup(p.get("reply_markup"))
        if (plain == msg["text"] and entities == msg.get("entities", [])
                and markup == msg.get("reply_markup")):
            raise _bad(NOT_MODIFIED[len("Bad Request: "):])
        msg["text"], msg["raw_text"], msg["parse_mode"] = plain, text, p.get("parse_mode")
        _set_or_drop(msg, "entities", entities)
        _set_or_drop(msg, "reply_markup", markup)  # an edit without reply_markup drops the keyboard
        msg["edit_date"] = int(time.time())
        return _public(msg)

    async def _m_editMessageCaption(self, call: Call) -> dict:
        p = call.params
        msg = self._editable(p)
        if "text" in msg:
            raise _bad("there is no caption in the message to edit")
        caption = str(p.get("caption") or "")
        plain, entities = self._formatted(caption, p.get("parse_mode"), p.get("caption_entities"))
        if utf16_len(plain) > MAX_CAPTION_LENGTH:
            raise _bad("message caption is too long")
        markup = _inline_markup(p.get("reply_markup"))
        if (plain == msg.get("caption", "") and entities == msg.get("caption_entities", [])
                and markup == msg.get("reply_markup")):
            raise _bad(NOT_MODIFIED[len("Bad Request: "):])
        _set_or_drop(msg, "caption", plain)
        _set_or_drop(msg, "caption_entities", entities)
        _set_or_drop(msg, "reply_markup", markup)
        msg["raw_text"], msg["parse_mode"] = caption, p.get("parse_mode")
        msg["edit_date"] = int(time.time())
        return _public(msg)

    async def _m_editMessageReplyMarkup(self, call: Call) -> dict:
        p = call.params
        msg = self._editable(p)
        markup = _inline_markup(p.get("reply_markup"))
        if markup == msg.get("reply_markup"):
            raise _bad(NOT_MODIFIED[len("Bad Request: "):])
        _set_or_drop(msg, "reply_markup", markup)
        msg["edit_date"] = int(time.time())
        return _public(msg)

    async def _m_deleteMessage(self, call: Call) -> bool:
        key = (_int(call.params, "chat_id"), _int(call.params, "message_id"))
        if key not in self._all:
            raise _bad("message to delete not found")
        del self._all[key]
        self.messages.pop(key, None)
        self.deleted.append(key)
        return True

    async def _m_answerCallbackQuery(self, call: Call) -> bool:
        query_id = str(call.params.get("callback_query_id", ""))
        if query_id not in self._open_queries:  # unknown, or already answered
            raise _bad(QUERY_INVALID[len("Bad Request: "):])
        self._open_queries.discard(query_id)
        self.answers[query_id] = dict(call.params)
        return True

    async def _m_sendChatAction(self, call: Call) -> bool:
        _int(call.params, "chat_id")
        if call.params.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _m_sendDocument(self, call: Call) -> dict:
        p = call.params
        chat_id = _int(p, "chat_id")
        f, name, mime = self._input_file(call, "document", "documents")
        msg = self._bot_message(chat_id, p, {"document": {
            "file_name": name or "document", "mime_type": mime or "application/octet-stream",
            "file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.file_size}})
        raw_caption = self._caption(msg, p)
        msg = self._store(msg, p, raw_text=raw_caption)
        self.uploads.append(Upload(chat_id, msg["message_id"], "document", f.file_id, name,
                                   f.content, mime, p.get("caption")))
        return msg

    async def _m_sendPhoto(self, call: Call) -> dict:
        p = call.params
        chat_id = _int(p, "chat_id")
        f, name, mime = self._input_file(call, "photo", "photos")
        w, h = _image_size(f.content)
        msg = self._bot_message(chat_id, p, {"photo": self._photo_sizes(f.content, w, h)})
        raw_caption = self._caption(msg, p)
        msg = self._store(msg, p, raw_text=raw_caption)
        self.uploads.append(Upload(chat_id, msg["message_id"], "photo", f.file_id, name,
                                   f.content, mime, p.get("caption")))
        return msg

    async def _m_getFile(self, call: Call) -> dict:
        f = self._files.get(str(call.params.get("file_id", "")))
        if f is None:
            raise _bad("invalid file_id")
        if f.file_size > MAX_DOWNLOAD_SIZE:
            raise _bad("file is too big")
        return {"file_id": f.file_id, "file_unique_id": f.file_unique_id,
                "file_size": f.file_size, "file_path": f.file_path}

    # -- method helpers ----------------------------------------------------------------

    def _formatted(self, text: str, parse_mode: Any, entities: Any) -> tuple[str, list[dict]]:
        if not parse_mode:
            return text, list(entities or [])
        mode = str(parse_mode).lower()
        if mode not in ("html", "markdown", "markdownv2"):
            raise _bad("unsupported parse_mode")
        if mode != "html":
            return text, []  # Markdown is passed through unparsed (not simulated)
        for pattern in self._html_rejects:
            at = text.find(pattern)
            if at >= 0:
                tag = re.match(r"<\s*([^\s>]*)", pattern)
                raise _bad(f"can't parse entities: Unsupported start tag "
                           f"\"{tag.group(1).lower() if tag else ''}\" at byte offset "
                           f"{len(text[:at].encode())}")
        if not self.validate_html:
            return text, []
        return parse_html(text)

    def _bot_message(self, chat_id: int, p: dict, content: dict) -> dict:
        msg: dict[str, Any] = {"message_id": 0, "from": self.bot_user,
                               "chat": self._chat_for(chat_id), "date": int(time.time())}
        reply = p.get("reply_parameters")
        if reply is None and p.get("reply_to_message_id") is not None:
            reply = {"message_id": p["reply_to_message_id"],
                     "allow_sending_without_reply": p.get("allow_sending_without_reply")}
        if isinstance(reply, dict) and reply.get("message_id") is not None:
            target_chat = int(reply.get("chat_id") or chat_id)
            target = self._all.get((target_chat, int(reply["message_id"])))
            if target is not None:
                msg["reply_to_message"] = _public(target, nested=False)
            elif not reply.get("allow_sending_without_reply"):
                raise _bad("message to be replied not found")
        msg.update(content)
        return msg

    def _caption(self, msg: dict, p: dict) -> str | None:
        caption = p.get("caption")
        if caption is None:
            return None
        plain, entities = self._formatted(str(caption), p.get("parse_mode"),
                                          p.get("caption_entities"))
        if utf16_len(plain) > MAX_CAPTION_LENGTH:
            raise _bad("message caption is too long")
        if plain:
            msg["caption"] = plain
        if entities:
            msg["caption_entities"] = entities
        return str(caption)

    def _store(self, msg: dict, p: dict, *, raw_text: str | None) -> dict:
        """Give the message its id, keep it (with the keyboard and how it was sent), answer it."""
        chat_id = msg["chat"]["id"]
        msg["message_id"] = self._next_message_id(chat_id)
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and markup:
            msg["reply_markup"] = markup
        msg["parse_mode"] = p.get("parse_mode")
        msg["raw_text"] = raw_text
        key = (chat_id, msg["message_id"])
        self._all[key] = msg
        self.messages[key] = msg
        return _public(msg)

    def _editable(self, p: dict) -> dict:
        if p.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
        key = (_int(p, "chat_id"), _int(p, "message_id"))
        if key not in self._all:
            raise _bad("message to edit not found")
        if key not in self.messages:
            raise _bad("message can't be edited")
        return self.messages[key]

    def _input_file(self, call: Call, name: str, folder: str) -> tuple[_File, str | None, str | None]:
        value = call.params.get(name)
        if name in call.files:
            content, file_name = call.files[name], call.filenames.get(name)
        elif isinstance(value, str) and value.startswith("attach://") and value[9:] in call.files:
            content, file_name = call.files[value[9:]], call.filenames.get(value[9:])
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            raise _bad("failed to get HTTP URL content")
        elif isinstance(value, str) and value in self._files:  # re-sending by file_id
            f = self._files[value]
            return f, f.file_name, mimetypes.guess_type(f.file_name or f.file_path)[0]
        elif value:
            raise _bad("wrong file identifier/HTTP URL specified")
        else:
            raise _bad(f"there is no {name} in the request")
        if not content:
            raise _bad("file must be non-empty")
        if len(content) > MAX_UPLOAD_SIZE:
            raise _ApiError(413, "Request Entity Too Large")
        mime = mimetypes.guess_type(file_name or "")[0]
        return self._register(content, folder, file_name, None), file_name, mime


# -- request decoding ------------------------------------------------------------------


async def _read_params(request: web.Request) -> tuple[dict, dict[str, bytes], dict[str, str]]:
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    filenames: dict[str, str] = {}
    for key, value in request.query.items():
        params[key] = _decode_field(key, value)
    ctype = request.content_type
    if ctype == "application/json":
        body = await request.read()
        data = json.loads(body) if body.strip() else {}
        if not isinstance(data, dict):
            raise ValueError("JSON body must be an object")
        for key, value in data.items():
            if key in _JSON_FIELDS and isinstance(value, str):
                value = _decode_field(key, value)
            params[key] = value
    elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
                filenames[key] = value.filename
            else:
                params[key] = _decode_field(key, str(value))
    return params, files, filenames


def _decode_field(key: str, value: str) -> Any:
    if key in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # e.g. chat_id="@channel"


def _int(params: dict, key: str) -> int:
    value = params.get(key)
    if value is None:
        raise _bad(f"{key} is empty" if key != "chat_id" else "chat_id is empty")
    try:
        return int(value)
    except (TypeError, ValueError):
        if key == "chat_id":
            raise _bad("chat not found") from None
        raise _bad(f"invalid {key}") from None


def _inline_markup(markup: Any) -> dict | None:
    if isinstance(markup, dict) and markup.get("inline_keyboard"):
        return markup
    return None


def _set_or_drop(msg: dict, key: str, value: Any) -> None:
    if value:
        msg[key] = value
    else:
        msg.pop(key, None)


def _public(msg: dict, nested: bool = True) -> dict:
    """A message as the Bot API shows it: no bookkeeping, only inline keyboards."""
    out = {k: copy.deepcopy(v) for k, v in msg.items() if k not in _INTERNAL_KEYS}
    if "reply_markup" in out and not _inline_markup(out["reply_markup"]):
        del out["reply_markup"]
    if not nested:
        out.pop("reply_to_message", None)
    return out


def _update_type(update: dict) -> str:
    return next((k for k in update if k != "update_id"), "")


def _error_response(status: int, description: str, parameters: dict | None = None) -> web.Response:
    payload: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        payload["parameters"] = parameters
    return web.json_response(payload, status=status)


def _image_size(content: bytes) -> tuple[int, int]:
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(content)) as img:
            return img.size
    except Exception:
        return 1280, 960


# -- Telegram's HTML ------------------------------------------------------------------

_TAG_ENTITY = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
               "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
               "del": "strikethrough", "tg-spoiler": "spoiler", "span": "spoiler", "code": "code",
               "pre": "pre", "a": "text_link", "blockquote": "blockquote",
               "tg-emoji": "custom_emoji", "tg-time": "date_time"}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);")


def _html_entity(text: str, i: int) -> tuple[str, int] | None:
    m = _ENTITY_RE.match(text, i)
    if not m:
        return None
    name = m.group(1)
    if name.startswith("#"):
        code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        return chr(code), m.end()
    if name in _NAMED:
        return _NAMED[name], m.end()
    return None  # unknown named entities stay as typed, '&' included


def parse_html(text: str) -> tuple[str, list[dict]]:
    """Parse Telegram's HTML like the Bot API (tdlib) does: returns (plain text, entities with
    UTF-16 offsets) or raises a 400 "can't parse entities" with the same wording as the API."""

    def fail(reason: str) -> _ApiError:
        return _bad(f"can't parse entities: {reason}")

    def boff(k: int) -> int:
        return len(text[:k].encode("utf-8"))

    out: list[str] = []
    u16 = 0
    stack: list[dict] = []
    entities: list[dict] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _html_entity(text, i)
            if decoded:
                out.append(decoded[0])
                u16 += utf16_len(decoded[0])
                i = decoded[1]
                continue
        if c != "<":
            out.append(c)
            u16 += utf16_len(c)
            i += 1
            continue
        begin = i
        i += 1
        if i >= n or text[i] != "/":  # a start tag
            j = i
            while j < n and not text[j].isspace() and text[j] != ">":
                j += 1
            if j >= n:
                raise fail(f"Unclosed start tag at byte offset {boff(begin)}")
            tag = text[i:j].lower()
            if tag not in _TAG_ENTITY:
                raise fail(f"Unsupported start tag \"{tag}\" at byte offset {boff(begin)}")
            attrs: dict[str, str] = {}
            i = j
            while True:
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    raise fail(f"Unclosed start tag at byte offset {boff(begin)}")
                if text[i] == ">":
                    break
                a0 = i
                while i < n and not text[i].isspace() and text[i] not in "=>":
                    i += 1
                attr = text[a0:i].lower()
                if not attr:
                    raise fail(f"Empty attribute name in the tag \"{tag}\" at byte offset {boff(begin)}")
                while i < n and text[i].isspace():
                    i += 1
                if i >= n or text[i] != "=":
                    if tag == "blockquote" and attr == "expandable":
                        attrs[attr] = ""
                        continue
                    raise fail(f"Expected equal sign in declaration of an attribute of the tag "
                               f"\"{tag}\" at byte offset {boff(begin)}")
                i += 1
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    raise fail(f"Unclosed start tag at byte offset {boff(begin)}")
                if text[i] in "'\"":
                    quote = text[i]
                    end = text.find(quote, i + 1)
                    if end < 0:
                        raise fail(f"Unclosed start tag at byte offset {boff(begin)}")
                    raw_value, i = text[i + 1:end], end + 1
                else:
                    v0 = i
                    while i < n and not text[i].isspace() and text[i] != ">":
                        i += 1
                    raw_value = text[v0:i]
                attrs[attr] = _unescape(raw_value)
            if tag == "span" and attrs.get("class") != "tg-spoiler":
                raise fail(f"Tag \"span\" must have class \"tg-spoiler\" at byte offset {boff(begin)}")
            stack.append({"tag": tag, "attrs": attrs, "offset": u16, "language": None})
            i += 1
            continue
        # an end tag
        if not stack:
            raise fail(f"Unexpected end tag at byte offset {boff(begin)}")
        i += 1
        j = i
        while j < n and not text[j].isspace() and text[j] != ">":
            j += 1
        end_name = text[i:j].lower()
        while j < n and text[j].isspace():
            j += 1
        if j >= n or text[j] != ">":
            raise fail(f"Unclosed end tag at byte offset {boff(begin)}")
        open_ = stack.pop()
        if end_name and end_name != open_["tag"]:
            raise fail(f"Unmatched end tag at byte offset {boff(begin)}, expected "
                       f"\"</{open_['tag']}>\", found \"</{end_name}>\"")
        i = j + 1
        length = u16 - open_["offset"]
        tag, attrs = open_["tag"], open_["attrs"]
        if tag == "code" and stack and stack[-1]["tag"] == "pre" \
                and attrs.get("class", "").startswith("language-"):
            stack[-1]["language"] = attrs["class"][len("language-"):]
            continue
        if length <= 0:
            continue
        entity: dict[str, Any] = {"offset": open_["offset"], "length": length,
                                  "type": _TAG_ENTITY[tag]}
        if tag == "a":
            if not attrs.get("href"):
                continue
            entity["url"] = attrs["href"]
        elif tag == "pre" and open_["language"]:
            entity["language"] = open_["language"]
        elif tag == "blockquote" and "expandable" in attrs:
            entity["type"] = "expandable_blockquote"
        elif tag == "tg-emoji":
            if not attrs.get("emoji-id"):
                continue
            entity["custom_emoji_id"] = attrs["emoji-id"]
        elif tag == "tg-time":
            continue  # not simulated
        entities.append(entity)
    if stack:
        raise fail(f"Can't find end tag corresponding to start tag \"{stack[-1]['tag']}\"")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        decoded = _html_entity(value, i) if value[i] == "&" else None
        if decoded:
            out.append(decoded[0])
            i = decoded[1]
        else:
            out.append(value[i])
            i += 1
    return "".join(out)
