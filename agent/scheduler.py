"""Scheduled work on APScheduler 3: an AsyncIOScheduler whose jobs live in the same
database (SQLAlchemyJobStore on the Store's engine; the table comes from
migration 0004), so they survive restarts.

A job does not do the work itself: it queues a Task through the core
(`kind="schedule"`, to the origin chosen when it was made), so a scheduled run
is an ordinary task — one at a time on the owner's thread, through the same gate
(a send is still a draft card), counted against the daily budget (a refused run
is reported on its channel by Core.submit).

Missed runs: jobs have `coalesce=True` and no misfire limit, so when Dispatch
starts after the computer was off, a job whose time passed runs once (not once
per missed time) right away, and its request says it is late and when it was
due. The due time comes from APScheduler's EVENT_JOB_SUBMITTED, which carries the
scheduled run times and is dispatched before the job's coroutine starts.

Jobs are stored by reference (`agent.scheduler:fire` with plain kwargs), never
as pickled objects of ours; `fire` finds the running Scheduler through a module
variable (one Dispatch runs per process and per data folder).

Cron expressions are standard crontab. APScheduler 3 numbers weekdays from
Monday = 0 (its own documented "historical mistake"), so `0 9 * * 1` would mean
Tuesday there; the day-of-week field is translated to names first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timezone as dt_timezone
from typing import Any, Awaitable, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.channel import Inbound
from store.config import Settings
from store.db import Store
from store.models import Task
from tools.registry import ToolError
from tools.schedule import ScheduleInfo, describe_source

log = logging.getLogger("dispatch.scheduler")

JOB_FUNC = "agent.scheduler:fire"
SEQ_KEY = "schedule_seq"
LATE_AFTER_S = 120.0  # a run this much after its time is reported as late
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}

Submit = Callable[..., Awaitable[Task | None]]
_active: "Scheduler | None" = None


async def fire(schedule_id: str, **job: Any) -> None:
    """The job function APScheduler calls (by reference, so stored jobs stay plain data)."""
    scheduler = _active
    if scheduler is None:
        log.warning("schedule %s fired but no scheduler is running", schedule_id)
        return
    await scheduler.run(schedule_id, job)


class Scheduler:
    """Implements tools.schedule.Schedules for the running Dispatch."""

    def __init__(self, settings: Settings, store: Store, submit: Submit) -> None:
        self.settings = settings
        self.store = store
        self.submit = submit
        self._sched: Any = None
        self._due: dict[str, datetime] = {}

    @property
    def running(self) -> bool:
        return bool(self._sched is not None and self._sched.running)

    async def start(self) -> None:
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_SUBMITTED
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        class JobStore(SQLAlchemyJobStore):
            def shutdown(self) -> None:
                pass  # the engine is the Store's: it is disposed when the Store closes, not here

        global _active
        self._sched = AsyncIOScheduler(
            jobstores={"default": JobStore(engine=self.store.engine)},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=self.settings.tz, event_loop=asyncio.get_running_loop(),
        )
        self._sched.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        self._sched.add_listener(self._failed, EVENT_JOB_ERROR)
        _active = self
        self._sched.start()  # due and missed jobs are processed at once, in the loop

    async def stop(self) -> None:
        global _active
        if self.running:
            self._sched.shutdown(wait=False)
        if _active is self:
            _active = None

    def _submitted(self, event: Any) -> None:
        if event.scheduled_run_times:
            self._due[event.job_id] = event.scheduled_run_times[-1]

    def _failed(self, event: Any) -> None:
        log.error("schedule %s failed: %s", event.job_id, event.exception)

    # A run ---------------------------------------------------------------------------

    async def run(self, schedule_id: str, job: dict[str, Any]) -> Task | None:
        due = self._due.pop(schedule_id, None)
        late = due is not None and (datetime.now(dt_timezone.utc) - due).total_seconds() > LATE_AFTER_S
        task = await self.submit(Inbound(self.run_text(schedule_id, job, due if late else None),
                                         origin=job.get("origin") or "console:local"), kind="schedule")
        self.store.log("schedule", f"schedule {schedule_id} fired" + (" (late)" if late else "")
                       + (f": task #{task.id}" if task else ": not started (budget spent)"),
                       task_id=task.id if task else None, ok=task is not None, schedule=schedule_id,
                       late=late, due=due.isoformat() if due else "")
        return task

    def run_text(self, schedule_id: str, job: dict[str, Any], late_due: datetime | None = None) -> str:
        """How a run is put to the model: a scheduled task and where it came from ("the owner
        approved on DATE", "set up by the owner on DATE"), never the owner speaking now."""
        source = job.get("source")
        lines = [f"This is a scheduled task (schedule {schedule_id}, {job.get('when', '')}), "
                 f"{describe_source(source)}; it is not a message from the owner now. "
                 f"The scheduled instruction: {job.get('text', '')}"]
        if not source:
            lines.append("Where this schedule came from was not recorded: anything it asks to send or change "
                         "still goes to the owner for approval, as always.")
        if late_due is not None:
            tz = _zone(job.get("tz") or self.settings.tz.key)
            lines.append(f"This run is late: it was due {_fmt(late_due.astimezone(tz))}, but Dispatch was not "
                         "running then (the computer was off or asleep). It runs now, once; say in your answer "
                         "that it is late.")
        lines.append("Do it now and report the result to the owner.")
        return "\n".join(lines)

    # The Schedules interface (tools.schedule) --------------------------------------------

    def describe(self, *, cron: str, at: str, timezone: str) -> str:
        """When a schedule with these settings runs, in words (ToolError if not valid)."""
        return self._trigger(cron, at, timezone)[1]

    def add(self, *, text: str, cron: str, at: str, timezone: str, origin: str,
            source: dict[str, Any] | None = None) -> ScheduleInfo:
        self._require_running()
        trigger, when, tz = self._trigger(cron, at, timezone)
        schedule_id = str(self._next_id())
        job = self._sched.add_job(
            JOB_FUNC, trigger=trigger, id=schedule_id, name=text[:80], replace_existing=True,
            kwargs={"schedule_id": schedule_id, "text": text, "origin": origin, "when": when, "tz": tz.key,
                    "source": source or {}},
        )
        self.store.log("schedule", f"schedule {schedule_id} created: {when}: {text[:120]}", schedule=schedule_id,
                       origin=origin, source=source or {})
        return self._info(job)

    def _trigger(self, cron: str, at: str, timezone: str) -> tuple[Any, str, ZoneInfo]:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.date import DateTrigger

        tz = _zone(timezone or self.settings.tz.key)
        if cron and at:
            raise ToolError("Give either cron (repeating) or at (once), not both.")
        if cron:
            fields = crontab_fields(cron)
            try:
                trigger = CronTrigger(**fields, timezone=tz)
            except ValueError as exc:
                raise ToolError(f"The cron expression {cron!r} is not valid: {exc}.") from None
            when = describe_cron(cron, tz)
        elif at:
            moment = _parse_at(at, tz)
            if moment <= datetime.now(tz):
                raise ToolError(f"{_fmt(moment)} is in the past; give a future time.")
            trigger = DateTrigger(run_date=moment, timezone=tz)
            when = f"once, {_fmt(moment)}"
        else:
            raise ToolError("Say when: cron for repeating work (e.g. \"0 9 * * 1\" = Mondays 09:00) or at for "
                            "one run (e.g. 2025-06-03T14:00).")
        return trigger, when, tz

    def list(self) -> list[ScheduleInfo]:
        self._require_running()
        return [self._info(j) for j in self._sched.get_jobs()]

    def cancel(self, schedule_id: str) -> ScheduleInfo:
        self._require_running()
        job = self._sched.get_job(schedule_id)
        if job is None:
            raise ToolError(f"There is no schedule {schedule_id!r}; list_schedules shows them.")
        info = self._info(job)
        self._sched.remove_job(schedule_id)
        self.store.log("schedule", f"schedule {schedule_id} cancelled: {info.text[:120]}", schedule=schedule_id)
        return info

    def _info(self, job: Any) -> ScheduleInfo:
        kw = job.kwargs
        return ScheduleInfo(id=job.id, text=kw.get("text", ""), when=kw.get("when", ""),
                            next_run=job.next_run_time, origin=kw.get("origin", ""), timezone=kw.get("tz", ""),
                            source=kw.get("source") or None)

    def _require_running(self) -> None:
        if not self.running:
            raise ToolError("The scheduler is not running in this process; schedules can be made and "
                            "changed while `dispatch run` is running.")

    def _next_id(self) -> int:
        n = int(self.store.get_setting(SEQ_KEY, 0) or 0) + 1
        self.store.set_setting(SEQ_KEY, n)
        return n


# Cron and times -----------------------------------------------------------------------


def crontab_fields(expr: str) -> dict[str, str]:
    """A standard crontab expression as APScheduler CronTrigger fields (weekdays by name)."""
    expr = _MACROS.get(expr.strip().lower(), expr.strip())
    parts = expr.split()
    if len(parts) != 5:
        raise ToolError(f"A cron expression has 5 fields (minute hour day-of-month month day-of-week); "
                        f"{expr!r} has {len(parts)}.")
    minute, hour, day, month, dow = parts
    return {"minute": minute, "hour": hour, "day": day, "month": month, "day_of_week": _weekdays(dow)}


def _weekdays(field: str) -> str:
    """Crontab's day-of-week (0 or 7 = Sunday) as APScheduler day names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        rng, _, step_s = item.partition("/")
        step = int(step_s) if step_s.isdigit() else 1
        if step_s and not step_s.isdigit():
            raise ToolError(f"Bad step {step_s!r} in the day-of-week field {field!r}.")
        if rng in ("*", ""):
            lo, hi = 0, 6
        elif "-" in rng:
            a, b = rng.split("-", 1)
            lo, hi = _day(a, field), _day(b, field)
            if hi < lo:  # sat-sun wraps
                hi += 7
        else:
            lo = hi = _day(rng, field)
            if step_s:
                hi = 6
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def _day(token: str, field: str) -> int:
    token = token.strip()
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7 if int(token) != 7 else 0
    if token[:3] in _DAYS:
        return _DAYS.index(token[:3])
    raise ToolError(f"{token!r} in the day-of-week field {field!r} is not a weekday (0-7 or sun..sat).")


def describe_cron(expr: str, tz: ZoneInfo) -> str:
    """Plain words for the common cases ("every Monday at 09:00"), the expression otherwise."""
    raw = _MACROS.get(expr.strip().lower(), expr.strip())
    minute, hour, day, month, dow = raw.split()
    zone = f" ({tz.key})"
    if not (minute.isdigit() and hour.isdigit()) or month != "*":
        return f"cron \u201c{expr.strip()}\u201d{zone}"
    at = f"{int(hour):02d}:{int(minute):02d}"
    if day == "*" and dow in ("*", "?"):
        return f"every day at {at}{zone}"
    if day == "*":
        names = _weekdays(dow).split(",")
        if names == ["mon", "tue", "wed", "thu", "fri"]:
            return f"every weekday at {at}{zone}"
        return "every " + ", ".join(_DAY_NAMES[_DAYS.index(n)] for n in names) + f" at {at}{zone}"
    if dow in ("*", "?") and day.isdigit():
        return f"on day {int(day)} of every month at {at}{zone}"
    return f"cron \u201c{expr.strip()}\u201d{zone}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"{name!r} is not a time zone; use a name like Europe/Berlin.") from None


def _parse_at(text: str, tz: ZoneInfo) -> datetime:
    value = text.strip().replace(" ", "T", 1) if re.match(r"\d{4}-\d\d-\d\d \d", text.strip()) else text.strip()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ToolError(f"{text!r} is not a date and time; use ISO format like 2025-06-03T14:00.") from None
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)


def _fmt(moment: datetime) -> str:
    return moment.strftime("%a %d %b %Y %H:%M %Z")
