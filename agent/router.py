"""Routes the core's output to the front end that owns an origin.

A front end failing (network down, a bug) must never stop a task, so every call
here is guarded and logged; the result is already in the store either way. When
the origin's platform is not running (a Telegram task, reported while only the
terminal is open) the owner's chat on another attached front end gets it instead,
so nothing said on start-up is lost.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent import approvals
from agent.channel import Card, Channel, platform_of
from store.db import Store
from store.models import Approval
from tools.registry import Registry

log = logging.getLogger("dispatch.router")


class Router:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.channels: dict[str, Channel] = {}

    def attach(self, channel: Channel) -> None:
        self.channels[channel.platform] = channel

    def channel_for(self, origin: str) -> tuple[Channel | None, str]:
        ch = self.channels.get(platform_of(origin))
        if ch is not None:
            return ch, origin
        for other in self.channels.values():
            fallback = other.default_origin()
            if fallback:
                return other, fallback
        return None, origin

    async def _call(self, what: str, origin: str, fn_name: str, *args: Any, **kw: Any) -> Any:
        ch, target = self.channel_for(origin)
        if ch is None:
            log.info("no front end for %s; %s kept in the store only", origin, what)
            return None
        try:
            return await getattr(ch, fn_name)(target, *args, **kw)
        except Exception:
            log.exception("front end %s failed to %s", ch.platform, what)
            return None

    async def text(self, origin: str, text: str) -> None:
        await self._call("send text", origin, "send_text", text)

    async def file(self, origin: str, path: Path, caption: str = "") -> str | None:
        """What the front end did with the file, or None when it could not be sent."""
        return await self._call("send a file", origin, "send_file", path, caption)

    async def progress(self, origin: str, task_id: int, text: str, *, done: bool = False) -> None:
        await self._call("show progress", origin, "progress", task_id, text, done=done)

    async def new_card(self, row: Approval, origin: str | None = None) -> None:
        """Post a card for this draft (to its origin, or another chat that asked for it)."""
        where = origin or row.origin
        ref = await self._call("show a card", where, "show_card", self.card(row))
        if ref is not None and row.id is not None:
            approvals.add_card(self.store, row.id, {"platform": self._platform(where), **ref})

    async def refresh_cards(self, row: Approval) -> None:
        """Redraw every card of this draft (on every app that showed it)."""
        card = self.card(row)
        for ref in row.cards:
            if ref.get("kind") == "prompt":  # "reply with the new text" prompts are not cards
                continue
            ch = self.channels.get(ref.get("platform", ""))
            if ch is None:
                continue
            try:
                await ch.update_card(ref, card)
            except Exception:
                log.exception("front end %s failed to update card #%s", ch.platform, row.id)

    def card(self, row: Approval) -> Card:
        tool = self.registry.get(row.tool)
        return approvals.card_of(row, editable=bool(tool and tool.edit_field))

    def _platform(self, origin: str) -> str:
        ch, _ = self.channel_for(origin)
        return ch.platform if ch else platform_of(origin)
