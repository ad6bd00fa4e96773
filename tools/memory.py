"""Memory notes: durable facts that stay in the system prompt.

A note is standing authority: it is in every later prompt. So each records where it
came from (`source`: "owner", or "approved" with the card and who pressed it), and in
a task that has read files, mail or Slack, remembering or forgetting is a card for
the owner ("Remember … — save this note?"), run only if approved (agent.gate).
"""

from __future__ import annotations

from typing import Annotated, Any

from sqlmodel import select

from store.models import MemoryNote
from tools.registry import Effect, Hidden, ToolContext, ToolError, tool


def _remember_preview(args: dict[str, Any]) -> str:
    return (f"New memory note (it will be part of every future conversation):\n\n{args.get('note', '')}\n\n"
            "Save this note?")


def _forget_preview(args: dict[str, Any]) -> str:
    return f"Forget memory note {args.get('note_id')}:\n\n{args.get('text', '')}\n\nForget this note?"


async def _prepare_forget(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    with ctx.store.session() as s:
        row = s.get(MemoryNote, args.get("note_id"))
    if row is None or not row.active:
        raise ToolError(f"There is no note {args.get('note_id')}.")
    return {**args, "text": row.text}

MAX_NOTE_CHARS = 500
MAX_NOTES = 50


@tool(connector="memory", effect=Effect.WRITE, persists=True, preview=_remember_preview, edit_field="note")
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
        approval = ctx.approval or {}
        row = MemoryNote(text=note, source="approved" if approval else "owner", task_id=ctx.task_id,
                         approval_id=approval.get("id"), decided_by=str(approval.get("by") or ""))
        s.add(row)
        s.commit()
        return f"Remembered as note {row.id}."


@tool(connector="memory", effect=Effect.WRITE, persists=True, preview=_forget_preview, prepare=_prepare_forget)
def forget(ctx: ToolContext, note_id: int, text: Annotated[str, Hidden] = "") -> str:
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
