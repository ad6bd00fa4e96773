"""Approval drafts and their state machine.

    pending -> approved -> sending -> sent | failed | unknown   (see `execute` for which)
    pending -> rejected | expired | superseded
    sending -> unknown   (found on start: we cannot know whether it went out)

Every transition is one conditional UPDATE (`... WHERE id = ? AND state = ?`) and
the caller learns whether it won. A double tap, a second device, or two apps
pressing at once therefore run the executor once; the loser is told "already
decided". The executor runs exactly the stored arguments after re-checking their
hash, and never runs anything that is not in `approved` at the moment it claims
the row for `sending`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from agent.states import DECIDED, State  # noqa: F401  (re-exported: callers know them from here)
from store.db import Store
from store.models import Approval, utcnow
from tools.registry import Registry, ToolContext, ToolError, ToolOutcomeUnknown


def canonical(args: dict[str, Any]) -> tuple[str, str]:
    """The one JSON spelling of these arguments, and its sha256."""
    text = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def create_draft(
    store: Store,
    *,
    tool: str,
    connector: str,
    args: dict[str, Any],
    preview: str,
    thread_id: int,
    task_id: int | None,
    origin: str,
    tool_use_id: str = "",
    ttl_hours: float = 24.0,
    revision_of: int | None = None,
) -> Approval:
    args_json, digest = canonical(args)
    row = Approval(
        task_id=task_id,
        thread_id=thread_id,
        origin=origin,
        tool=tool,
        connector=connector,
        tool_use_id=tool_use_id,
        args_json=args_json,
        args_sha256=digest,
        preview=preview,
        state="pending",
        revision_of=revision_of,
        expires_at=utcnow() + timedelta(hours=ttl_hours),
    )
    with store.session() as s:
        s.add(row)
        s.commit()
        s.refresh(row)
    store.log("approval", f"draft #{row.id} made for {tool}", tool=tool, task_id=task_id, approval=row.id)
    return row


def get(store: Store, approval_id: int) -> Approval | None:
    with store.session() as s:
        return s.get(Approval, approval_id)


def transition(store: Store, approval_id: int, expected: str, new: str, **values: Any) -> bool:
    """Move one approval from `expected` to `new`; True only for the caller that won."""
    table = Approval.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        result = conn.execute(
            sa.update(table)
            .where(table.c.id == approval_id, table.c.state == expected)
            .values(state=new, **values)
        )
        return result.rowcount == 1


def add_card(store: Store, approval_id: int, ref: dict[str, Any]) -> None:
    with store.session() as s:
        row = s.get(Approval, approval_id)
        if row is not None:
            row.cards = [*row.cards, ref]
            s.add(row)
            s.commit()


@dataclass
class Decision:
    """What came of an owner's press: `won` is False when someone else decided first."""

    won: bool
    approval: Approval | None
    message: str
    # An approved draft's send, under way in the background: awaits to the final row.
    sending: Any = None


def _refusal(row: Approval | None, approval_id: int) -> Decision:
    if row is None:
        return Decision(False, None, f"There is no draft #{approval_id}.")
    return Decision(False, row, f"Draft #{approval_id} was already decided: {row.state}.")


def approve(store: Store, approval_id: int, by: str) -> Decision:
    row = get(store, approval_id)
    if row is not None and row.state == "pending" and row.expires_at and row.expires_at < utcnow():
        expire(store, row.id or 0)
        row = get(store, approval_id)
    if not transition(store, approval_id, "pending", "approved", decided_by=by, decided_at=utcnow()):
        return _refusal(get(store, approval_id), approval_id)
    store.log("decision", f"draft #{approval_id} approved", approval=approval_id, by=by)
    return Decision(True, get(store, approval_id), f"Draft #{approval_id} approved.")


def reject(store: Store, approval_id: int, by: str, reason: str = "") -> Decision:
    ok = transition(
        store, approval_id, "pending", "rejected",
        decided_by=by, decided_at=utcnow(), reason=reason, outcome="rejected by the owner",
    )
    if not ok:
        return _refusal(get(store, approval_id), approval_id)
    store.log("decision", f"draft #{approval_id} rejected", approval=approval_id, by=by, reason=reason)
    return Decision(True, get(store, approval_id), f"Draft #{approval_id} rejected.")


def add_reason(store: Store, approval_id: int, reason: str) -> bool:
    """A reason given after the Reject press (a reply to the card). Once only."""
    table = Approval.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        won = conn.execute(
            sa.update(table)
            .where(table.c.id == approval_id, table.c.state == "rejected", table.c.reason == "")
            .values(reason=reason)
        ).rowcount == 1
    if won:
        store.log("decision", f"draft #{approval_id}: reason for rejection given", approval=approval_id)
    return won


def find_by_message(store: Store, platform: str, where: dict[str, Any], recent: int = 500,
                    ) -> tuple[Approval, dict[str, Any]] | None:
    """The draft whose card (or prompt) is this chat message, and that ref. `where`
    names the message the way the platform's refs do: {"chat_id", "message_id"} on
    Telegram, {"channel", "ts"} on Slack."""
    with store.session() as s:
        rows = s.exec(select(Approval).order_by(Approval.id.desc()).limit(recent)).all()  # type: ignore[union-attr]
    for row in rows:
        for ref in row.cards:
            if ref.get("platform") == platform and all(str(ref.get(k)) == str(v) for k, v in where.items()):
                return row, ref
    return None


def expire(store: Store, approval_id: int) -> bool:
    ok = transition(store, approval_id, "pending", "expired", outcome="expired without a decision")
    if ok:
        store.log("decision", f"draft #{approval_id} expired", approval=approval_id)
    return ok


def expire_due(store: Store) -> list[Approval]:
    """Expire every pending draft past its time; returns the ones this call expired."""
    with store.session() as s:
        due = s.exec(
            select(Approval).where(Approval.state == "pending", Approval.expires_at < utcnow())  # type: ignore[operator]
        ).all()
    return [get(store, r.id) for r in due if r.id and expire(store, r.id)]  # type: ignore[misc]


def revise(store: Store, approval_id: int, by: str, new_text: str, registry: Registry, ttl_hours: float) -> Decision:
    """The owner's edit: the old draft is superseded by a new revision with the new text."""
    row = get(store, approval_id)
    if row is None or row.state != "pending":
        return _refusal(row, approval_id)
    tool = registry.get(row.tool)
    if tool is None or not tool.edit_field:
        return Decision(False, row, f"Draft #{approval_id} has no text to edit; reject it with a reason instead.")
    if not transition(store, approval_id, "pending", "superseded", decided_by=by, decided_at=utcnow(),
                       outcome="replaced by an edited revision"):
        return _refusal(get(store, approval_id), approval_id)
    args = json.loads(row.args_json)
    args[tool.edit_field] = new_text
    new = create_draft(
        store, tool=row.tool, connector=row.connector, args=args, preview=tool.render_preview(args),
        thread_id=row.thread_id, task_id=row.task_id, origin=row.origin, tool_use_id=row.tool_use_id,
        ttl_hours=ttl_hours, revision_of=row.id,
    )
    store.log("decision", f"draft #{approval_id} edited -> #{new.id}", approval=approval_id, by=by)
    return Decision(True, new, f"Draft #{approval_id} edited; the new revision is draft #{new.id}.")


async def execute(store: Store, registry: Registry, ctx: ToolContext, approval_id: int) -> Approval:
    """Run an approved draft exactly once and record how it ended.

    How it ends, and why (when in doubt, `unknown`, never `failed`):
    - `failed` means "certainly not sent": the checks before the tool runs (checksum,
      tool still there, arguments valid) refused it, or the tool raised a ToolError,
      which by contract a send tool raises only while nothing has gone out (after the
      hand-over it raises ToolOutcomeUnknown). The owner may safely ask again.
    - `unknown` means "may have gone out": ToolOutcomeUnknown, any other exception once
      the tool has started (a bug or a library error after the server may have taken
      the message), or the executor being cancelled mid-send. The owner is asked to
      check; nothing is ever re-sent on its own.
    """
    if not transition(store, approval_id, "approved", "sending"):
        row = get(store, approval_id)
        assert row is not None
        return row  # someone else is sending it, or it was never approved
    row = get(store, approval_id)
    assert row is not None
    state, outcome = "failed", ""
    started = False  # whether the tool itself ran: from then on an unexpected error is `unknown`
    try:
        if hashlib.sha256(row.args_json.encode("utf-8")).hexdigest() != row.args_sha256:
            raise ToolError("the stored draft does not match its checksum, so it was not sent")
        tool = registry.get(row.tool)
        if tool is None:
            raise ToolError(f"the tool {row.tool} is no longer available")
        args = json.loads(row.args_json)
        tool.validate(args)  # a refusal here is before anything ran: `failed` is the truth
        # What a persisting tool records as where its schedule or note came from.
        if ctx is not None:
            ctx.approval = {"id": approval_id, "by": row.decided_by,
                            "at": (row.decided_at or utcnow()).isoformat(timespec="minutes")}
        started = True
        outcome = await tool.call(ctx, args)
        state = "sent"
    except ToolOutcomeUnknown as exc:
        state, outcome = "unknown", str(exc)
    except ToolError as exc:
        outcome = str(exc)
    except asyncio.CancelledError:
        transition(store, approval_id, "sending", "unknown",
                   outcome="Stopped while sending, so it may or may not have gone out. Check before sending again.")
        store.log("send", f"draft #{approval_id} unknown (stopped mid-send)", tool=row.tool, task_id=row.task_id,
                  ok=False, approval=approval_id)
        raise
    except Exception as exc:  # a failing send must never take the process down
        detail = f"{type(exc).__name__}: {exc}"
        if started:
            state = "unknown"
            outcome = (f"Something unexpected went wrong while sending ({detail}), so it may or may not have "
                       "gone out. Check before sending again; it will not be re-sent automatically.")
        else:
            outcome = detail
    transition(store, approval_id, "sending", state, outcome=outcome[:4000])
    store.log("send", f"draft #{approval_id} {state}", tool=row.tool, task_id=row.task_id,
              ok=state == "sent", approval=approval_id, outcome=outcome[:500])
    final = get(store, approval_id)
    assert final is not None
    return final


def recover(store: Store) -> tuple[list[Approval], list[Approval]]:
    """On start: rows caught mid-send become `unknown` (never re-sent); rows approved
    but not yet claimed for sending are returned to be executed now."""
    with store.session() as s:
        sending = s.exec(select(Approval).where(Approval.state == "sending")).all()
        approved = s.exec(select(Approval).where(Approval.state == "approved")).all()
    unknown = []
    for r in sending:
        note = ("Dispatch stopped while sending this, so it may or may not have gone out. "
                "Check before sending again; it will not be re-sent automatically.")
        if r.id and transition(store, r.id, "sending", "unknown", outcome=note):
            store.log("send", f"draft #{r.id} unknown after restart", tool=r.tool, ok=False, approval=r.id)
            unknown.append(get(store, r.id))
    return unknown, list(approved)  # type: ignore[return-value]


def pending(store: Store) -> list[Approval]:
    with store.session() as s:
        return list(s.exec(select(Approval).where(Approval.state == "pending").order_by(Approval.id)))


def is_due(row: Approval, now: datetime | None = None) -> bool:
    return row.state == "pending" and row.expires_at is not None and row.expires_at < (now or utcnow())
