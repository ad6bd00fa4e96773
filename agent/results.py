"""What the core's API (agent.api) answers with: typed results a front end turns into
platform messages. Kept apart and light (no store, no SDK), so a front end can start
polling before the core is built, and still know these types."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Who(StrEnum):
    OWNER = "owner"
    STRANGER = "stranger"
    PAIRING = "pairing"  # a stranger's pairing command: only the pair handler may see it


class Button(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"


@dataclass(frozen=True)
class Identity:
    who: Who
    reply: str | None = None  # what to tell a stranger (None: nothing — silence after the first time)


@dataclass(frozen=True)
class Ask:
    """A question a front end puts to the owner after a press: a reply prompt (or, for
    an edit on Slack, a form that starts from `current`)."""

    purpose: str  # "reason" | "edit"
    text: str
    current: str = ""


@dataclass(frozen=True)
class Press:
    """What came of a press. `toast` answers the presser at once; `ask` is a follow-up
    question; an approved draft's `sending` finishes with the final row. The cards
    themselves are redrawn by the core (every copy, newest state last), never here."""

    won: bool
    toast: str
    alert: bool = False
    ask: Ask | None = None
    sending: "asyncio.Task[Any] | None" = None


@dataclass(frozen=True)
class Reply:
    text: str
    ok: bool = True


@dataclass(frozen=True)
class PolicyItem:
    """One row of the settings menu; a button sets `next` (never "toggle": a replayed
    press sets the same value again instead of moving further)."""

    key: str
    label: str
    next: str


@dataclass(frozen=True)
class PolicyChange:
    ok: bool
    text: str
    effective: dict[str, str] = field(default_factory=dict)  # tool -> auto|ask|off after the change
    warning: str = ""
