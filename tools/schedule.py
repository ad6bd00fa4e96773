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
from typing import Protocol

import sqlalchemy as sa

from store.models import Task
from tools.registry import Effect, ToolContext, ToolError, tool


@dataclass
class ScheduleInfo:
    id: str
    text: str
    when: str  # "every Monday at 09:00 (Europe/Berlin)", "once, Tue 03 Jun 2025 14:00 CEST"
    next_run: datetime | None
    origin: str
    timezone: str

    def line(self) -> str:
        nxt = (self.next_run.strftime("%a %d %b %Y %H:%M %Z") if self.next_run else "no further runs")
        return f"Schedule {self.id}: {self.when} — next: {nxt} — to {self.origin}\n    {self.text}"


class Schedules(Protocol):
    """What the running scheduler offers the tools. Errors are ToolErrors in plain words."""

    def add(self, *, text: str, cron: str, at: str, timezone: str, origin: str) -> ScheduleInfo: ...

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


@tool(connector="schedule", effect=Effect.WRITE)
async def schedule_task(ctx: ToolContext, task: str, cron: str = "", at: str = "", timezone: str = "",
                  deliver_to: str = "") -> str:
    """Schedule work to start on its own later: repeatedly (cron) or once (at). At each run the
    task is handed to you as a new request, and the results go to the owner's chat. If Dispatch
    was not running at the time (the computer was off), the missed run happens once when it
    starts, marked as late. Sends made during a run still wait for the owner's approval.

    Args:
        task: What to do at each run, as a complete instruction (e.g. "Build the weekly recap deck from the campaign tracker and send it to me").
        cron: For repeating work: a standard 5-field cron expression "minute hour day-of-month month day-of-week" (day-of-week 0 or 7 = Sunday, 1 = Monday), e.g. "0 9 * * 1" for every Monday at 09:00, "30 8 * * 1-5" for weekdays at 08:30. Also @hourly, @daily, @weekly, @monthly.
        at: For one run: a date and time, ISO format, e.g. "2025-06-03T14:00" (in the time zone below).
        timezone: IANA time zone name such as Europe/Berlin. Empty = the owner's time zone.
        deliver_to: Where results go: empty for this chat, or "telegram", "slack" or "console".
    """
    if not task.strip():
        raise ToolError("The task is empty; say what to do at each run.")
    origin = resolve_origin(ctx, deliver_to)
    info = _schedules(ctx).add(text=task.strip(), cron=cron.strip(), at=at.strip(), timezone=timezone.strip(),
                               origin=origin)
    return f"Scheduled.\n{info.line()}\nThe owner can cancel it any time (cancel_schedule {info.id})."


@tool(connector="schedule", effect=Effect.READ)
async def list_schedules(ctx: ToolContext) -> str:
    """List the scheduled tasks: what each does, when it runs next, and where its results go."""
    rows = _schedules(ctx).list()
    if not rows:
        return "There are no scheduled tasks."
    return "\n".join(r.line() for r in rows)


@tool(connector="schedule", effect=Effect.WRITE)
async def cancel_schedule(ctx: ToolContext, schedule_id: str) -> str:
    """Cancel a scheduled task so it never runs again (a run already in progress finishes).

    Args:
        schedule_id: The schedule's number, as list_schedules shows it.
    """
    info = _schedules(ctx).cancel(schedule_id.strip().lstrip("#").removeprefix("schedule").strip())
    return f"Cancelled schedule {info.id} ({info.when}): {info.text}"
