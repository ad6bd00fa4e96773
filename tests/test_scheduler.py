"""Scheduled tasks end to end: the model calls schedule_task through the real runner
and client, APScheduler fires the job from the same SQLite database, and the run is
an ordinary task through the gate — across restarts and after missed times."""

from __future__ import annotations

import pickle
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import select

from agent import approvals, scheduler
from agent.channel import Inbound
from store.models import ModelCall, Task
from tests.conftest import close_core, make_core, task_state, until
from tools.registry import ToolError

BERLIN = ZoneInfo("Europe/Berlin")


def schedule_tasks(store: Any) -> list[Task]:
    with store.session() as s:
        return list(s.exec(select(Task).where(Task.kind == "schedule").order_by(Task.id)))


def request_text(req: dict) -> str:
    """All text the model was sent in its last user turn."""
    content = req["messages"][-1]["content"]
    return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))


async def ask_to_schedule(core: Any, fake: Any, **tool_input: Any) -> None:
    fake.reply(tool_uses=[("schedule_task", tool_input)])
    fake.reply("Scheduled it.")
    task = await core.submit(Inbound("please schedule this", "console:local"))
    await until(lambda: task_state(core.store, task.id) == "done", what="the scheduling request")
    result = fake.requests[-1]["messages"][-1]["content"][0]
    assert not result.get("is_error"), result


def soon(seconds: float) -> str:
    return (datetime.now(BERLIN) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


async def test_a_job_made_through_the_tool_fires_and_reports_to_the_chat(core, fake):
    await ask_to_schedule(core, fake, task="Say hello from the schedule", at=soon(3))
    assert "Scheduled." in fake.requests[-1]["messages"][-1]["content"][0]["content"]
    assert [s.id for s in core.scheduler.list()] == ["1"]

    fake.reply("Hello from the schedule.")
    await until(lambda: schedule_tasks(core.store) and task_state(core.store, schedule_tasks(core.store)[0].id)
                == "done", timeout=10, what="the scheduled run")
    run = schedule_tasks(core.store)[0]
    assert run.origin == "console:local"  # where the request came from
    sent = request_text(fake.requests[-1])
    assert "a scheduled task (schedule 1" in sent and "Say hello from the schedule" in sent
    assert "set up by the owner on" in sent and "not a message from the owner now" in sent
    assert "late" not in sent
    assert "Hello from the schedule." in core.channel.texts
    assert core.scheduler.list() == []  # a one-time job is gone once it ran
    assert any("schedule 1 fired" in a.summary for a in core.store.recent_actions(20, kinds=("schedule",)))


async def test_cron_every_monday_at_nine_means_monday(core, fake):
    await ask_to_schedule(core, fake, task="Build the weekly recap", cron="0 9 * * 1")
    (info,) = core.scheduler.list()
    assert info.when == "every Monday at 09:00 (Europe/Berlin)"
    nxt = info.next_run.astimezone(BERLIN)
    assert (nxt.weekday(), nxt.hour, nxt.minute) == (0, 9, 0)  # crontab 1 = Monday (APScheduler's 1 = Tuesday)
    # list_schedules and cancel_schedule through the model
    fake.reply(tool_uses=[("list_schedules", {})])
    fake.reply(tool_uses=[("cancel_schedule", {"schedule_id": "#1"})])
    fake.reply("Cancelled.")
    task = await core.submit(Inbound("what is scheduled? cancel it", "console:local"))
    await until(lambda: task_state(core.store, task.id) == "done")
    listed = fake.requests[-2]["messages"][-1]["content"][0]["content"]
    assert "Schedule 1: every Monday at 09:00" in listed and "Build the weekly recap" in listed
    assert "Cancelled schedule 1" in fake.requests[-1]["messages"][-1]["content"][0]["content"]
    assert core.scheduler.list() == []


async def test_a_job_survives_a_restart(settings, fake, sent):
    core, _ = await make_core(settings)
    await ask_to_schedule(core, fake, task="Water the plants reminder", at=soon(3))
    await close_core(core)  # Dispatch stops before the job's time

    core, channel = await make_core(settings)
    try:
        assert [s.text for s in core.scheduler.list()] == ["Water the plants reminder"]
        fake.reply("Reminder: water the plants.")
        await until(lambda: schedule_tasks(core.store) and task_state(core.store, schedule_tasks(core.store)[0].id)
                    == "done", timeout=10, what="the run after the restart")
        assert "Reminder: water the plants." in channel.texts
    finally:
        await close_core(core)


def _move_back(store: Any, job_id: str, when: datetime) -> None:
    """As if the machine had been off since `when`: the stored job's next run is then."""
    table = sa.table("apscheduler_jobs", sa.column("id"), sa.column("next_run_time"), sa.column("job_state"))
    with store.engine.begin() as conn:
        state = pickle.loads(conn.execute(sa.select(table.c.job_state).where(table.c.id == job_id)).scalar_one())
        state["next_run_time"] = when
        conn.execute(sa.update(table).where(table.c.id == job_id).values(
            next_run_time=when.timestamp(), job_state=pickle.dumps(state)))


async def test_a_missed_run_fires_once_on_start_and_says_it_is_late(settings, fake, sent):
    core, _ = await make_core(settings)
    await ask_to_schedule(core, fake, task="Build the weekly recap", cron="0 9 * * 1")
    store = core.store
    await close_core(core)

    now = datetime.now(BERLIN)
    last_monday = datetime.combine(now.date() - timedelta(days=now.weekday()), time(9), BERLIN)
    if last_monday > now:
        last_monday -= timedelta(days=7)
    _move_back(store, "1", last_monday - timedelta(days=14))  # three Mondays missed

    fake.reply("Here is the (late) weekly recap.")
    core, channel = await make_core(settings)
    try:
        await until(lambda: schedule_tasks(core.store) and task_state(core.store, schedule_tasks(core.store)[0].id)
                    == "done", timeout=10, what="the missed run")
        text = request_text(fake.requests[-1])
        assert "This run is late" in text
        assert last_monday.strftime("%a %d %b %Y %H:%M") in text  # due at the latest missed Monday 09:00
        assert "Here is the (late) weekly recap." in channel.texts
        (info,) = core.scheduler.list()
        assert info.next_run > datetime.now(timezone.utc)  # back on its weekly rhythm
        import asyncio

        await asyncio.sleep(0.5)
        assert len(schedule_tasks(core.store)) == 1  # once, not once per missed Monday
        assert core.store.recent_actions(5, kinds=("schedule",))[0].detail["late"] is True
    finally:
        await close_core(core)


async def test_a_send_in_a_scheduled_run_is_still_a_draft_card(core, fake, sent):
    await ask_to_schedule(core, fake, task="Send Bob the Friday note", at=soon(3))
    fake.reply(tool_uses=[("send_note", {"to": "bob@example.com", "text": "Happy Friday"})])
    fake.reply("The note is waiting for your approval.")
    await until(lambda: core.channel.cards, timeout=10, what="a draft card")
    await until(lambda: task_state(core.store, schedule_tasks(core.store)[0].id) == "done")
    assert sent == []  # nothing went out
    (draft,) = approvals.pending(core.store)
    assert draft.tool == "send_note" and draft.task_id == schedule_tasks(core.store)[0].id


async def test_a_scheduled_run_over_the_budget_is_refused_and_the_owner_told(tmp_path, fake, roots, sent):
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, fake.url, roots, DISPATCH_DAILY_BUDGET_USD=1.0)
    core, channel = await make_core(settings)
    try:
        await ask_to_schedule(core, fake, task="Build the weekly recap", at=soon(3))
        with core.store.session() as s:  # today's budget is used up meanwhile
            s.add(ModelCall(model="claude-sonnet-4-6", cost_usd=5.0))
            s.commit()
        await until(lambda: any("scheduled task did not run" in t for t in channel.texts), timeout=10,
                    what="the refusal")
        refusal = next(t for t in channel.texts if "scheduled task did not run" in t)
        assert "budget is spent" in refusal and "Build the weekly recap" in refusal
        assert schedule_tasks(core.store) == []
        assert "budget spent" in core.store.recent_actions(5, kinds=("schedule",))[0].summary
    finally:
        await close_core(core)


async def test_bad_times_are_explained(core, fake):
    with pytest.raises(ToolError, match="5 fields"):
        core.scheduler.add(text="x", cron="0 9 * *", at="", timezone="", origin="console:local")
    with pytest.raises(ToolError, match="in the past"):
        core.scheduler.add(text="x", cron="", at="2020-01-01T09:00", timezone="", origin="console:local")
    with pytest.raises(ToolError, match="not a time zone"):
        core.scheduler.add(text="x", cron="0 9 * * 1", at="", timezone="Mars/Olympus", origin="console:local")
    with pytest.raises(ToolError, match="not a weekday"):
        core.scheduler.add(text="x", cron="0 9 * * 9", at="", timezone="", origin="console:local")
    with pytest.raises(ToolError, match="no schedule"):
        core.scheduler.cancel("42")


@pytest.mark.parametrize("field,expected", [
    ("1", "mon"), ("0", "sun"), ("7", "sun"), ("1-5", "mon,tue,wed,thu,fri"), ("*/2", "sun,tue,thu,sat"),
    ("sat-sun", "sun,sat"), ("mon,wed", "mon,wed"), ("5-7", "sun,fri,sat"), ("*", "*"),
])
def test_crontab_weekdays_are_translated(field: str, expected: str):
    assert scheduler.crontab_fields(f"0 9 * * {field}")["day_of_week"] == expected


def test_describe_cron():
    assert scheduler.describe_cron("30 8 * * 1-5", BERLIN) == "every weekday at 08:30 (Europe/Berlin)"
    assert scheduler.describe_cron("@daily", BERLIN) == "every day at 00:00 (Europe/Berlin)"
    assert scheduler.describe_cron("0 7 1 * *", BERLIN) == "on day 1 of every month at 07:00 (Europe/Berlin)"
    assert scheduler.describe_cron("*/15 * * * *", BERLIN) == "cron \u201c*/15 * * * *\u201d (Europe/Berlin)"


async def test_results_go_only_to_the_owners_own_chats(core, fake):
    from tools.registry import ToolContext
    from tools.schedule import resolve_origin

    ctx = ToolContext(core.settings, core.store, origin="console:local")
    assert resolve_origin(ctx, "") == "console:local"
    with pytest.raises(ToolError, match="no chat with the owner on 'telegram'"):
        resolve_origin(ctx, "telegram:666")  # a chat id the model names is not trusted
    fake.reply("Hello.")
    task = await core.submit(Inbound("hi from the phone", "telegram:1001"))
    await until(lambda: task_state(core.store, task.id) == "done")
    assert resolve_origin(ctx, "telegram:666") == "telegram:1001"  # the owner's own chat there
    assert resolve_origin(ctx, "Telegram") == "telegram:1001"
