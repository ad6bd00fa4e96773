"""Memory notes: durable facts that stay in the system prompt."""

from __future__ import annotations

from sqlmodel import select

from store.models import MemoryNote
from tools.registry import Effect, ToolContext, ToolError, tool

MAX_NOTE_CHARS = 500
MAX_NOTES = 50


@tool(connector="memory", effect=Effect.WRITE)
def remember(ctx: ToolContext, note: str) -> str:
    """Remember a durable fact about the owner's work (a template's location, a
    preference, who someone is) so it is known in every future conversation.

    Args:
        note: One short, self-contained fact.
    """
    note = note.strip()
    if not note:
        raise ToolError("The note is empty.")
    if len(note) > MAX_NOTE_CHARS:
        raise ToolError(f"Keep a note under {MAX_NOTE_CHARS} characters; save long text to a file.")
    with ctx.store.session() as s:
        active = s.exec(select(MemoryNote).where(MemoryNote.active)).all()
        if any(n.text == note for n in active):
            return "Already remembered."
        if len(active) >= MAX_NOTES:
            raise ToolError(f"There are already {MAX_NOTES} notes; forget one first.")
        row = MemoryNote(text=note)
        s.add(row)
        s.commit()
        return f"Remembered as note {row.id}."


@tool(connector="memory", effect=Effect.WRITE)
def forget(ctx: ToolContext, note_id: int) -> str:
    """Forget a memory note that is wrong or no longer useful.

    Args:
        note_id: The number of the note, as shown in the system prompt.
    """
    with ctx.store.session() as s:
        row = s.get(MemoryNote, note_id)
        if row is None or not row.active:
            raise ToolError(f"There is no note {note_id}.")
        row.active = False
        s.add(row)
        s.commit()
    return f"Forgot note {note_id}."
