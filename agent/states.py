"""An approval's states: a module of its own, with no imports to speak of, so that what
renders a card (agent.cards, the front ends) does not load the store to know them."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """An approval's states. Stored as their plain strings; compare equal to them."""

    PENDING = "pending"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


DECIDED = frozenset(State) - {State.PENDING}
