"""Schedules: recurring or one-time work that starts on its own ("every Monday at 9
build the weekly recap").

The tools do not run the scheduler, and must not import `agent` (imports point
bot -> agent -> tools -> store). They talk to the running scheduler through the
small `Schedules` interface below, which the core injects as `ctx.schedules`
(agent.scheduler implements it on APScheduler). Why an injected interface rather
than a schedule table the scheduler would sync from: APScheduler's own job table
(in the same database) is then the one source of truth — a job the tool creates
is the job that fires, survives restarts and is listed, with no second copy to
drift. The price is that scheduling needs Dispatch running, which is where the
model calls tools anyway; elsewhere the tool says so.

Where results go: by default to the chat the request came from; `deliver_to`
may name another front end ("telegram", "slack", "console"), meaning the owner's
chat there (the latest one the owner sent a request from). A chat id the model
names is ignored: results going to someone else's chat would be a send that no
one approved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol

import sqlalchemy as sa

from store.models import Task
from tools.registry import Effect, Hidden, ToolContext, ToolError, tool


@dataclass
class ScheduleInfo:
    id: str
    text: str
    when: str  # "every Monday at 09:00 (Europe/Berlin)", "once, Tue 03 Jun 2025 14:00 CEST"
    next_run: datetime | None
    origin: str
    timezone: str
    source: dict[str, Any] | None = None  # {"kind": "owner" | "approved", "at": ..., ...}; None: made before 0.x

    def line(self) -> str:
        nxt = (self.next_run.strftime("%a %d %b %Y %H:%M %Z") if self.next_run else "no further runs")
        return (f"Schedule {self.id}: {self.when} — next: {nxt} — to {self.origin} — {describe_source(self.source)}"
                f"\n    {self.text}")


def describe_source(source: dict[str, Any] | None) -> str:
    """Where a schedule or note came from, in words (for lists, cards and runs)."""
    if not source:
        return "origin not recorded (made before Dispatch recorded it)"
    day = str(source.get("at", ""))[:10]
    if source.get("kind") == "approved":
        return f"approved by the owner on {day}"
    return f"set up by the owner on {day}"


def source_of(ctx: ToolContext) -> dict[str, Any]:
    """The provenance a persisting tool records for what it makes now."""
    if ctx.approval:
        return {"kind": "approved", "at": ctx.approval.get("at", ""), "by": ctx.approval.get("by", ""),
                "approval": ctx.approval.get("id"), "task": ctx.task_id}
    return {"kind": "owner", "at": datetime.now(ctx.settings.tz).isoformat(timespec="minutes"), "task": ctx.task_id}


class Schedules(Protocol):
    """What the running scheduler offers the tools. Errors are ToolErrors in plain words."""

    def add(self, *, text: str, cron: str, at: str, timezone: str, origin: str,
            source: dict[str, Any] | None = None) -> ScheduleInfo: ...

    def describe(self, *, cron: str, at: str, timezone: str) -> str:
        """When a schedule with these settings runs, in words; ToolError if they are not valid."""
        ...

    def list(self) -> list[ScheduleInfo]: ...

    def cancel(self, schedule_id: str) -> ScheduleInfo: ...


def _schedules(ctx: ToolContext) -> Schedules:
    if ctx.schedules is None:
        raise ToolError("Scheduling works only while Dispatch is running (`dispatch run`); it is not "
                        "running in this process.")
    return ctx.schedules


def resolve_origin(ctx: ToolContext, deliver_to: str) -> str:
    """Where a schedule's results go: this chat, or the owner's chat on the named app."""
    target = deliver_to.strip().lower()
    if not target or target in ("here", "this chat", "same"):
        if not ctx.origin:
            raise ToolError("There is no chat to send the results to; name one in deliver_to (e.g. telegram).")
        return ctx.origin
    if ":" in target and target.split(":", 1)[1]:
        platform = target.split(":", 1)[0]
    else:
        platform = target.rstrip(":")
    if ctx.origin.startswith(platform + ":"):
        return ctx.origin
    table = Task.__table__  # type: ignore[attr-defined]
    with ctx.store.engine.connect() as conn:
        latest = conn.execute(
            sa.select(table.c.origin).where(table.c.origin.like(f"{platform}:%"), table.c.kind == "owner")
            .order_by(table.c.id.desc()).limit(1)
        ).scalar()
    if not latest:
        raise ToolError(f"I have no chat with the owner on {platform!r} yet, so I can't send results there. "
                        "The owner can send me a message there first, or choose this chat.")
    return str(latest)


def _schedule_preview(args: dict[str, Any]) -> str:
    when = str(args.get("when") or "").strip() or "(when: see the draft)"
    return (f"New schedule\n{when[:1].upper() + when[1:]}: {args.get('task', '')}\n"
            f"Results go to: {args.get('origin') or 'this chat'}\n\nSave this schedule?")


async def _prepare_schedule(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    """Fix when (in words, checked) and where, so the card shows what will run."""
    task = str(args.get("task") or "").strip()
    if not task:
        raise ToolError("The task is empty; say what to do at each run.")
    when = _schedules(ctx).describe(cron=args.get("cron", "").strip(), at=args.get("at", "").strip(),
                                    timezone=args.get("timezone", "").strip())
    return {**args, "task": task, "when": when, "origin": resolve_origin(ctx, args.get("deliver_to", ""))}


_Str = Annotated[str, Hidden]


@tool(connector="schedule", effect=Effect.WRITE, persists=True, preview=_schedule_preview, edit_field="task",
      prepare=_prepare_schedule)
async def schedule_task(ctx: ToolContext, task: str, cron: str = "", at: str = "", timezone: str = "",
                        deliver_to: str = "", when: _Str = "", origin: _Str = "") -> str:
    """Schedule work to start on its own later: repeatedly (cron) or once (at). At each run the
    task is handed to you as a new request, and the results go to the owner's chat. If Dispatch
    was not running at the time (the computer was off), the missed run happens once when it
    starts, marked as late. Sends made during a run still wait for the owner's approval. After
    reading files, mail or Slack in the same task, a new schedule waits for the owner's approval.

    Args:
        task: What to do at each run, as a complete instruction (e.g. "Build the weekly recap deck from the campaign tracker and send it to me").
        cron: For repeating work: a standard 5-field cron expression "minute hour day-of-month month day-of-week" (day-of-week 0 or 7 = Sunday, 1 = Monday), e.g. "0 9 * * 1" for every Monday at 09:00, "30 8 * * 1-5" for weekdays at 08:30. Also @hourly, @daily, @weekly, @monthly.
        at: For one run: a date and time, ISO format, e.g. "2025-06-03T14:00" (in the time zone below).
        timezone: IANA time zone name such as Europe/Berlin. Empty = the owner's time zone.
        deliver_to: Where results go: empty for this chat, or "telegram", "slack" or "console".
    """
    if not task.strip():
        raise ToolError("The task is empty; say what to do at each run.")
    origin = origin or resolve_origin(ctx, deliver_to)
    info = _schedules(ctx).add(text=task.strip(), cron=cron.strip(), at=at.strip(), timezone=timezone.strip(),
                               origin=origin, source=source_of(ctx))
    return f"Scheduled.\n{info.line()}\nThe owner can cancel it any time (cancel_schedule {info.id})."


@tool(connector="schedule", effect=Effect.READ)
async def list_schedules(ctx: ToolContext) -> str:
    """List the scheduled tasks: what each does, when it runs next, and where its results go."""
    rows = _schedules(ctx).list()
    if not rows:
        return "There are no scheduled tasks."
    return "\n".join(r.line() for r in rows)


def _cancel_preview(args: dict[str, Any]) -> str:
    return (f"Cancel schedule {args.get('schedule_id')}\n{args.get('summary') or ''}\n\n"
            "Cancel this schedule? It will never run again.")


async def _prepare_cancel(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    schedule_id = str(args.get("schedule_id") or "").strip().lstrip("#").removeprefix("schedule").strip()
    found = [r for r in _schedules(ctx).list() if r.id == schedule_id]
    if not found:
        raise ToolError(f"There is no schedule {schedule_id!r}; list_schedules shows them.")
    return {**args, "schedule_id": schedule_id, "summary": f"{found[0].when}: {found[0].text}"}


@tool(connector="schedule", effect=Effect.WRITE, persists=True, preview=_cancel_preview, prepare=_prepare_cancel)
async def cancel_schedule(ctx: ToolContext, schedule_id: str, summary: _Str = "") -> str:
    """Cancel a scheduled task so it never runs again (a run already in progress finishes).

    Args:
        schedule_id: The schedule's number, as list_schedules shows it.
    """
    info = _schedules(ctx).cancel(schedule_id.strip().lstrip("#").removeprefix("schedule").strip())
    return f"Cancelled schedule {info.id} ({info.when}): {info.text}"
