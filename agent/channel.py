"""The channel protocol: the one seam between the core and the front ends.

The core speaks to an `origin` ("console:local", "telegram:<chat id>", ...); the
front end that owns the origin's platform turns these calls into messages. The
core never knows which app it is talking to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agent.cards import Card

__all__ = ["Card", "Channel", "Inbound", "platform_of"]


@dataclass
class Inbound:
    """A request from the owner, platform-neutral."""

    text: str
    origin: str
    files: list[str] = field(default_factory=list)


@runtime_checkable
class Channel(Protocol):
    """What a front end implements. `platform` is the origin prefix it serves."""

    platform: str

    async def send_text(self, origin: str, text: str) -> None: ...

    async def send_file(self, origin: str, path: Path, caption: str = "") -> str:
        """Deliver a file; returns what happened in a few words (e.g. "sent", or why
        not: over the platform's size limit, with the local path)."""

    async def progress(self, origin: str, task_id: int, text: str, *, done: bool = False) -> None:
        """Show or update the one status line of a task; `done` closes it."""

    async def show_card(self, origin: str, card: Card) -> dict[str, Any] | None:
        """Post a new approval card; returns a reference the front end can edit later."""

    async def update_card(self, ref: dict[str, Any], card: Card) -> None:
        """Redraw a posted card after its decision (outcome shown, buttons gone)."""

    def default_origin(self) -> str | None:
        """Where to reach the owner on this app when a message's own origin is on an
        app that is not running (None if the owner is not known here yet)."""


def platform_of(origin: str) -> str:
    return origin.split(":", 1)[0]
