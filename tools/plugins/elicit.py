"""Elicitation: a plugin asks the owner something in the middle of a tool call.

The SDK calls `callback_for(server)` with the server's request; it becomes a
`Question` (pending until the owner answers accept / decline / cancel, or it times
out as cancel) and `on_question` is awaited so a front end can show it as a card
with buttons, or a short form built from `fields`. Whoever receives the owner's
answer calls `answer(id, action, content)`. With no `on_question` hook there is no
one to ask, so the request is cancelled at once (and logged) rather than left hanging.

The question's text comes from a third party: a front end shows it as the plugin's
words ("notes asks: ..."), never as Dispatch's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:  # the SDK's types load with the first plugin that asks, not with Dispatch
    import mcp_types as types

log = logging.getLogger("dispatch.plugins")

ACTIONS = ("accept", "decline", "cancel")


@dataclass
class Question:
    id: int
    server: str
    message: str
    schema: dict[str, Any]  # the requested JSON schema (flat: strings, numbers, booleans, enums)
    url: str = ""  # URL mode: the page the owner is asked to open
    future: asyncio.Future[types.ElicitResult] = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def fields(self) -> list[tuple[str, str, bool, list[Any]]]:
        """(name, type, required, choices) of each field, for a short form."""
        props = self.schema.get("properties", {}) or {}
        required = set(self.schema.get("required", []) or [])
        return [(k, str(v.get("type", "string")), k in required, list(v.get("enum", []) or []))
                for k, v in props.items()]


class Elicitations:
    def __init__(self, timeout: float = 600.0) -> None:
        self.timeout = timeout
        self.on_question: Callable[[Question], Awaitable[None]] | None = None
        self._pending: dict[int, Question] = {}
        self._ids = itertools.count(1)

    def pending(self) -> list[Question]:
        return list(self._pending.values())

    def callback_for(self, server: str) -> Callable[..., Awaitable[types.ElicitResult | types.ErrorData]]:
        async def elicit(context: Any, params: Any) -> types.ElicitResult | types.ErrorData:
            return await self.ask(server, params)

        return elicit

    async def ask(self, server: str, params: Any) -> types.ElicitResult:
        import mcp_types as types

        q = Question(
            id=next(self._ids), server=server, message=str(getattr(params, "message", ""))[:2000],
            schema=dict(getattr(params, "requested_schema", None) or {}), url=str(getattr(params, "url", "") or ""),
            future=asyncio.get_running_loop().create_future(),
        )
        if self.on_question is None:
            log.warning("plugin %s asked the owner something, but no front end can ask: cancelled", server)
            return types.ElicitResult(action="cancel")
        self._pending[q.id] = q
        try:
            await self.on_question(q)
            return await asyncio.wait_for(asyncio.shield(q.future), self.timeout)
        except asyncio.TimeoutError:
            return types.ElicitResult(action="cancel")
        finally:
            self._pending.pop(q.id, None)

    def answer(self, question_id: int, action: str, content: dict[str, Any] | None = None) -> str:
        """The owner's answer. Returns "" when taken, else why not (nothing is lost: the
        question stays pending after a bad answer)."""
        q = self._pending.get(question_id)
        if q is None or q.future.done():
            return f"There is no open question #{question_id} (answered already, or it timed out)."
        if action not in ACTIONS:
            return f"Answer with one of {', '.join(ACTIONS)}."
        import jsonschema
        import mcp_types as types

        if action != "accept":
            q.future.set_result(types.ElicitResult(action=action))  # type: ignore[arg-type]
            return ""
        content = dict(content or {})
        if q.schema and not q.url:
            try:
                jsonschema.validate(content, q.schema)
            except jsonschema.ValidationError as exc:
                return f"That answer does not fit the question: {exc.message}"
        q.future.set_result(types.ElicitResult(action="accept", content=content if not q.url else None))
        return ""
