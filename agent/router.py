"""Routes the core's output to the front end that owns an origin.

A front end failing (network down, a bug) must never stop a task, so every call
here is guarded and logged; the result is already in the store either way. When
the origin's platform is not running (a Telegram task, reported while only the
terminal is open) the owner's chat on another attached front end gets it instead,
so nothing said on start-up is lost.

Card redraws never hold anyone up. `redraw(n)` marks draft n and returns at once;
one background task per draft then brings every copy of its card (on every app)
to the state in the store — the newest state wins, nothing queues up behind a
flood limit, and sending an approved draft never waits on a card edit. When all
copies show the state, the row's `drawn_state` records it; `sweep()` (run by the
core every couple of seconds) redraws drafts whose state was changed by another
process, e.g. `dispatch approve N` acting on the store while this one runs.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent import approvals, cards
from agent.channel import Card, Channel, platform_of
from store.config import Settings
from store.db import Store
from store.models import Approval
from tools.registry import Registry

log = logging.getLogger("dispatch.router")


class Router:
    def __init__(self, store: Store, registry: Registry, settings: Settings) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.channels: dict[str, Channel] = {}
        self._redrawing: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()
        self._drawn_here: set[tuple[int, str]] = set()  # drawn on every app attached here

    def attach(self, channel: Channel) -> None:
        self.channels[channel.platform] = channel

    def detach(self, platform: str) -> None:
        self.channels.pop(platform, None)

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

    # Cards -------------------------------------------------------------------------

    def card(self, row: Approval) -> Card:
        tool = self.registry.get(row.tool)
        return cards.card_of(row, editable=bool(tool and tool.edit_field), tz=self.settings.tz,
                             saves=bool(tool and tool.persists))

    async def new_card(self, row: Approval, origin: str | None = None) -> None:
        """Post a card for this draft (to its origin, or another chat that asked for it)."""
        where = origin or row.origin
        ref = await self._call("show a card", where, "show_card", self.card(row))
        if ref is not None and row.id is not None:
            approvals.add_card(self.store, row.id, {"platform": self._platform(where), **ref})

    def redraw(self, approval_id: int) -> None:
        """Bring every copy of this draft's card to its stored state, in the background."""
        self._dirty.add(approval_id)
        running = self._redrawing.get(approval_id)
        if running is None or running.done():
            self._redrawing[approval_id] = asyncio.get_running_loop().create_task(
                self._redraw_loop(approval_id), name=f"redraw-{approval_id}")

    async def _redraw_loop(self, approval_id: int) -> None:
        try:
            while approval_id in self._dirty:
                self._dirty.discard(approval_id)
                row = approvals.get(self.store, approval_id)
                if row is None:
                    return
                mine, everywhere = await self._update_all(row)
                if approval_id not in self._dirty:
                    if mine:
                        self._drawn_here.add((approval_id, row.state))
                    if everywhere:
                        _mark_drawn(self.store, approval_id, row.state)
        finally:
            self._redrawing.pop(approval_id, None)

    async def _update_all(self, row: Approval) -> tuple[bool, bool]:
        """Redraw the copies on the apps attached here. Returns whether any copy is on an
        app attached here, and whether every copy is (only then may the row be marked
        drawn: a one-shot command attaches no app, and the running Dispatch's sweep must
        still see the change)."""
        card = self.card(row)
        mine, everywhere = False, True
        for ref in row.cards:
            if ref.get("kind") == "prompt":  # "reply with the new text" prompts are not cards
                continue
            ch = self.channels.get(ref.get("platform", ""))
            if ch is None:
                everywhere = False
                continue
            mine = True
            try:
                await ch.update_card(ref, card)
            except Exception:
                log.exception("front end %s failed to update card #%s", ch.platform, row.id)
        return mine, everywhere

    def sweep(self) -> None:
        """Redraw the drafts whose cards show an older state than the store has."""
        table = Approval.__table__  # type: ignore[attr-defined]
        with self.store.engine.connect() as conn:
            stale = conn.execute(sa.select(table.c.id, table.c.state).where(table.c.drawn_state != table.c.state)).all()
        for approval_id, state in stale:
            if approval_id not in self._redrawing and (approval_id, state) not in self._drawn_here:
                self.redraw(approval_id)

    async def settle(self) -> None:
        """Wait for the redraws under way (shutdown, tests)."""
        while self._redrawing:
            await asyncio.gather(*list(self._redrawing.values()), return_exceptions=True)

    def _platform(self, origin: str) -> str:
        ch, _ = self.channel_for(origin)
        return ch.platform if ch else platform_of(origin)


def _mark_drawn(store: Store, approval_id: int, state: str) -> None:
    table = Approval.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.id == approval_id, table.c.state == state)
                     .values(drawn_state=state))
