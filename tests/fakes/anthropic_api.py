"""A scripted fake of Anthropic's Messages API for tests and benchmarks.

It speaks real HTTP so the real ``anthropic.AsyncAnthropic`` client (its retries,
timeouts, error classes and response parsing) is exercised instead of a mock.
It also simulates prefix prompt caching and rejects the malformed threads the real
API rejects, so tests can prove both what the agent pays and that what it sends is valid.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import itertools
import json
from collections import deque
from typing import Any, Callable

from aiohttp import web

from tests.fakes.anthropic_blocks import MAX_REQUEST_BYTES, MediaInvalid, validate_media

_DEFAULT_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    529: "overloaded_error",
}
_LOOKBACK = 20  # the real API checks at most 20 block boundaries back from each breakpoint
_MAX_BREAKPOINTS = 4


class _Invalid(Exception):
    """A request the real API would answer with 400 invalid_request_error."""


class FakeAnthropic:
    def __init__(self, *, min_cache_tokens: int = 0, chars_per_token: int = 4):
        self.min_cache_tokens = min_cache_tokens
        self.chars_per_token = chars_per_token
        self.url = ""
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []  # each request's HTTP headers (e.g. anthropic-beta)
        self._queue: deque[tuple[str, dict]] = deque()
        self._responder: Callable[[dict], Any] | None = None
        self._cache: set[str] = set()
        self._ids = itertools.count(1)  # one counter, so msg/toolu/req ids never repeat
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        # Bodies up to the API's 32 MB pass to _handle (aiohttp's default cap is 1 MB), which
        # answers anything larger as the API does.
        app = web.Application(client_max_size=MAX_REQUEST_BYTES + 1024 * 1024)
        app.router.add_post("/v1/messages", self._handle)
        # handler_cancellation: a client that times out and disconnects cancels our sleep,
        # so a hung turn never outlives the test; short shutdown keeps stop() fast.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting ---------------------------------------------------------------

    def reply(self, text: str = "", *, tool_uses: list[tuple] | None = None,
              stop_reason: str | None = None, delay: float = 0.0,
              output_tokens: int | None = None) -> None:
        """Queue one 200 answer. A tool_uses item may be (name, input) or (name, input, id)."""
        self._queue.append(("reply", dict(text=text, tool_uses=tool_uses, stop_reason=stop_reason,
                                          delay=delay, output_tokens=output_tokens)))

    def error(self, status: int, *, message: str = "", error_type: str | None = None,
              retry_after: float | None = None, delay: float = 0.0) -> None:
        self._queue.append(("error", dict(status=status, message=message, error_type=error_type,
                                          retry_after=retry_after, delay=delay)))

    def respond_with(self, fn: Callable[[dict], Any] | None) -> None:
        """Answer from fn(request_json) whenever the queue is empty (None removes it)."""
        self._responder = fn

    def hang(self, seconds: float) -> None:
        self.reply("late", delay=seconds)

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def cache_entries(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        self._cache.clear()

    # -- HTTP --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            return self._error_response(413, "Request exceeds the maximum allowed number of bytes.")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return self._error_response(400, f"There was an error parsing the body: {exc}")
        self.requests.append(body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        try:
            _validate(body)
            validate_media(body)  # images and PDFs (tests/fakes/anthropic_blocks.py)
            plan = _Plan(body, self.chars_per_token)  # also counts breakpoints
        except (_Invalid, MediaInvalid) as exc:
            return self._error_response(400, str(exc))

        if self._queue:
            kind, spec = self._queue.popleft()
        elif self._responder is not None:
            try:
                result = self._responder(body)
                if inspect.isawaitable(result):
                    result = await result
                spec = dict(result)
            except Exception as exc:  # a broken responder must fail the test, not trigger retries
                return self._error_response(500, f"FakeAnthropic: responder raised {exc!r}",
                                            should_retry=False)
            kind = "error" if "error" in spec else "reply"
            if kind == "error":
                spec["status"] = spec.pop("error")
        else:
            return self._error_response(500, "FakeAnthropic: no scripted response left",
                                        should_retry=False)

        if spec.get("delay"):
            await asyncio.sleep(spec["delay"])
        if kind == "error":
            return self._error_response(spec["status"], spec.get("message", ""),
                                        error_type=spec.get("error_type"),
                                        retry_after=spec.get("retry_after"))
        return self._reply_response(body, plan, **{k: v for k, v in spec.items() if k != "delay"})

    def _reply_response(self, body: dict, plan: "_Plan", *, text: str = "",
                        tool_uses: list[tuple] | None = None, stop_reason: str | None = None,
                        output_tokens: int | None = None) -> web.Response:
        content: list[dict] = [{"type": "text", "text": text}] if text else []
        for name, tool_input, *given_id in tool_uses or []:
            tool_id = given_id[0] if given_id else f"toolu_{next(self._ids)}"
            content.append({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
        if output_tokens is None:
            output_tokens = max(1, len(json.dumps(content)) // self.chars_per_token)
        payload = {
            "id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant",
            "model": body.get("model", "unknown"), "content": content,
            "stop_reason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
            "stop_sequence": None,
            "usage": {**plan.apply(self._cache, self.min_cache_tokens), "output_tokens": output_tokens},
        }
        return web.json_response(payload, headers={"request-id": f"req_{next(self._ids)}"})

    def _error_response(self, status: int, message: str, *, error_type: str | None = None,
                        retry_after: float | None = None, should_retry: bool | None = None,
                        ) -> web.Response:
        etype = error_type or _DEFAULT_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        headers = {"request-id": f"req_{next(self._ids)}"}
        if retry_after is not None:
            headers["retry-after-ms"] = str(int(retry_after * 1000))
            headers["retry-after"] = f"{retry_after:g}"
        elif status in (408, 409, 429) or status >= 500:
            headers["retry-after-ms"] = "1"  # keep the SDK's own retries fast in tests
        if should_retry is not None:
            headers["x-should-retry"] = "true" if should_retry else "false"
        message = message or f"FakeAnthropic: scripted {status} {etype}"
        return web.json_response({"type": "error", "error": {"type": etype, "message": message}},
                                 status=status, headers=headers)


class _Plan:
    """The request's prompt as Anthropic caches it: tools, then system, then messages, per block."""

    def __init__(self, body: dict, chars_per_token: int):
        blocks: list[tuple[str, dict]] = [("", t) for t in body.get("tools") or []]
        system = body.get("system")
        if isinstance(system, str):
            system = [{"type": "text", "text": system}] if system else []
        blocks += [("", b) for b in system or []]
        for msg in body["messages"]:
            content = msg.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            blocks += [(f"{msg['role']}:" if i == 0 else "", b) for i, b in enumerate(content or [])]

        self.breakpoints = [i for i, (_, b) in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")]
        if body.get("cache_control") and blocks and (len(blocks) - 1) not in self.breakpoints:
            self.breakpoints.append(len(blocks) - 1)  # top-level cache_control marks the last block
        if len(self.breakpoints) > _MAX_BREAKPOINTS:
            raise _Invalid(f"A maximum of {_MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                           f"Found {len(self.breakpoints)}.")

        # Cumulative tokens and a running hash per block boundary; the model is part of the
        # key because the real cache is per model.
        running = hashlib.sha256(str(body.get("model")).encode())
        chars, self.tokens, self.hashes = 0, [], []
        for prefix, block in blocks:
            stripped = {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block
            text = prefix + json.dumps(stripped, sort_keys=True, separators=(",", ":"))
            chars += len(text)
            running.update(len(text).to_bytes(8, "big") + text.encode())
            self.tokens.append(chars // chars_per_token)
            self.hashes.append(running.hexdigest())
        self.total = chars // chars_per_token

    def apply(self, cache: set[str], min_tokens: int) -> dict:
        """Read the longest cached prefix in reach, then write every breakpoint big enough to cache."""
        read = 0
        for bp in self.breakpoints:
            for i in range(bp, max(-1, bp - _LOOKBACK), -1):
                if self.hashes[i] in cache:
                    read = max(read, self.tokens[i])
                    break
        eligible = [bp for bp in self.breakpoints if self.tokens[bp] >= min_tokens]
        write = 0
        if eligible and self.hashes[eligible[-1]] not in cache:
            write = max(0, self.tokens[eligible[-1]] - read)
        cache.update(self.hashes[bp] for bp in eligible)
        return {"input_tokens": self.total - read - write,
                "cache_creation_input_tokens": write, "cache_read_input_tokens": read}


def _blocks(msg: dict) -> list:
    content = msg.get("content")
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _validate(body: dict) -> None:
    """The structural checks whose failures are the bugs an agent loop actually makes."""
    if "max_tokens" not in body:
        raise _Invalid("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages: at least one message is required")
    if messages[0].get("role") != "user":
        raise _Invalid('messages: first message must use the "user" role')
    for n, msg in enumerate(messages):
        if msg.get("role") not in ("user", "assistant"):
            raise _Invalid(f"messages.{n}.role: Input should be 'user' or 'assistant'")
        blocks = _blocks(msg)
        if not blocks and not (n == len(messages) - 1 and msg["role"] == "assistant"):
            raise _Invalid(f"messages.{n}: all messages must have non-empty content except for "
                           "the optional final assistant message")
        for b in blocks:
            if b.get("type") == "text" and not str(b.get("text", "")).strip():
                raise _Invalid(f"messages.{n}: text content blocks must contain non-whitespace text")

    # The real API merges consecutive same-role messages into one turn, so pair tool_use
    # and tool_result across turns, not raw messages.
    turns: list[tuple[str, list[tuple[int, dict]]]] = []
    for n, msg in enumerate(messages):
        tagged = [(n, b) for b in _blocks(msg)]
        if turns and turns[-1][0] == msg["role"]:
            turns[-1][1].extend(tagged)
        else:
            turns.append((msg["role"], tagged))
    for t, (role, blocks) in enumerate(turns):
        if role == "assistant":
            uses = [(n, b["id"]) for n, b in blocks if b.get("type") == "tool_use"]
            answered = set()
            if t + 1 < len(turns):
                answered = {b.get("tool_use_id") for _, b in turns[t + 1][1] if b.get("type") == "tool_result"}
            missing = [i for _, i in uses if i not in answered]
            if missing:
                raise _Invalid(f"messages.{uses[0][0]}: tool_use ids were found without tool_result "
                               f"blocks immediately after: {', '.join(missing)}. Each tool_use block "
                               "must have a corresponding tool_result block in the next message.")
        else:
            prev = turns[t - 1][1] if t > 0 else []
            offered = {b.get("id") for _, b in prev if b.get("type") == "tool_use"}
            seen_other = False
            for n, b in blocks:
                if b.get("type") != "tool_result":
                    seen_other = True
                    continue
                if b.get("tool_use_id") not in offered:
                    raise _Invalid(f"messages.{n}.content: unexpected tool_use_id found in tool_result "
                                   f"blocks: {b.get('tool_use_id')}. Each tool_result block must have "
                                   "a corresponding tool_use block in the previous message.")
                if seen_other:
                    raise _Invalid(f"messages.{n}: tool_result blocks must come first in the user "
                                   "message content, before any other block")
