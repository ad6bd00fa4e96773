"""A plugin's question to the owner (MCP elicitation), as an approval card.

A plugin may ask the owner something in the middle of a call ("which calendar?",
"confirm the amount"). It becomes a draft of the hidden tool `answer_plugin`, so
it reaches every app with the same card, buttons, redraws and exactly-once
handling as any draft:

    Approve  = accept, with the answers written on the card
    Edit     = write (or change) the answers: "field: value", one a line
    Reject   = decline
    no press = cancel, when the plugin stops waiting

The question's words are the plugin's (third-party text), shown as such. The tool
is never offered to the model: only the owner's press runs it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from agent import approvals
from store.models import Task
from tools.registry import Effect, ToolError, dynamic_tool

# `Core` (agent.core) and `Question` (tools.plugins.elicit) are named in annotations only:
# the core installs this module, so importing it here would make the two import each other.
log = logging.getLogger("dispatch.questions")

TOOL = "answer_plugin"
CONNECTOR = "plugin_questions"


def install(core: "Core") -> None:
    elicitations = core.plugins.elicitations

    async def run(question_id: int, answers: str = "", action: str = "accept") -> str:
        q = next((q for q in elicitations.pending() if q.id == question_id), None)
        content = parse_answers(answers, q.fields if q else [])
        problem = elicitations.answer(question_id, action, content)
        if problem:
            if q is not None:  # the question is still open: ask again, with what was wrong
                await ask(q, note=problem)
            raise ToolError(problem + (" It was asked again on a new card." if q is not None else ""))
        return f"answered the plugin's question #{question_id} ({action})"

    tool = dynamic_tool(
        name=TOOL, connector=CONNECTOR, effect=Effect.SEND, run=run,
        description="The owner's answer to a plugin's question (only the owner's press runs this).",
        input_schema={"type": "object", "properties": {
            "question_id": {"type": "integer"}, "answers": {"type": "string"},
            "action": {"type": "string", "enum": ["accept", "decline"]}}, "required": ["question_id"]},
    )
    tool.edit_field = "answers"
    tool.ready = lambda settings: False  # never offered to the model
    core.registry.add_tool(tool, replace=True)

    async def ask(q: "Question", note: str = "") -> None:
        origin = _where(core)
        args = {"question_id": q.id, "answers": "", "action": "accept"}
        row = approvals.create_draft(
            core.store, tool=TOOL, connector=CONNECTOR, args=args, preview=preview(q, note),
            thread_id=core.thread_id, task_id=core.running_id, origin=origin,
            ttl_hours=elicitations.timeout / 3600,
        )
        await core.router.new_card(row)

    elicitations.on_question = ask


def declined(core: "Core", row: Any) -> None:
    """A rejected question card: the plugin is told "decline" at once."""
    if row.tool == TOOL:
        question_id = int(json.loads(row.args_json).get("question_id", 0))
        core.plugins.elicitations.answer(question_id, "decline")


def preview(q: "Question", note: str = "") -> str:
    head = [f"Plugin {q.server} asks you (its own words, not Dispatch's):"]
    lines = [q.message or "(no text)"]
    if q.url:
        lines.append(f"It asks you to open: {q.url}")
    fields = q.fields
    if fields:
        lines.append("")
        lines.append("Answers to give (Edit to write them, one a line as `name: value`):")
        for name, kind, required, choices in fields:
            lines.append(f"  {name} ({kind}{', required' if required else ''}"
                         + (f"; one of {', '.join(map(str, choices))}" if choices else "") + ")")
    if note:
        lines.append(f"\nYour last answer was not taken: {note}")
    tail = "Approve = answer (accept), Reject = decline. Nothing else is sent."
    return "\n".join(head) + "\n\n" + "\n".join(lines) + "\n\n" + tail


def parse_answers(text: str, fields: list[tuple[str, str, bool, list[Any]]]) -> dict[str, Any]:
    """"name: value" lines into the types the plugin asked for."""
    kinds = {name: kind for name, kind, _, _ in fields}
    out: dict[str, Any] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if not sep:
            name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            continue
        kind = kinds.get(name, "string")
        try:
            if kind == "integer":
                out[name] = int(value)
            elif kind == "number":
                out[name] = float(value)
            elif kind == "boolean":
                out[name] = value.lower() in ("yes", "true", "1", "y", "on")
            else:
                out[name] = value
        except ValueError:
            out[name] = value  # the plugin's schema check says what is wrong
    return out


def _where(core: "Core") -> str:
    """The chat of the task that is running (the question arose in its call), or the
    owner's chat on any app."""
    if core.running_id is not None:
        with core.store.session() as s:
            task = s.get(Task, core.running_id)
            if task is not None:
                return task.origin
    for channel in core.router.channels.values():
        origin = channel.default_origin()
        if origin:
            return origin
    return "console:local"
