"""The agent loop end to end: the real AsyncAnthropic client against the loopback fake."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import select

from agent.channel import Inbound
from store.models import Message, ModelCall, Task
from tests.conftest import close_core, make_core, make_settings, task_state, until


async def run(core, text: str) -> Task:
    task = await core.submit(Inbound(text, "console:local"))
    await until(lambda: task_state(core.store, task.id) not in ("queued", "running"), what=f"task {task.id}")
    with core.store.session() as s:
        return s.get(Task, task.id)


async def test_multi_step_task_reads_a_file_and_answers(core, fake, roots: Path):
    (roots / "tracker.csv").write_text("week,signups\n45,120\n46,180\n")
    fake.reply("Let me look.", tool_uses=[("find_files", {"name": "tracker"})])
    fake.reply(tool_uses=[("read_text", {"path": str(roots / "tracker.csv")})])
    fake.reply("Signups went from **120** to **180**.")
    task = await run(core, "How did signups do last week?")

    assert task.state == "done" and task.steps == 2
    assert core.channel.texts[-1] == "Signups went from **120** to **180**."
    # The second request carried the first tool's result; the third carried the file.
    assert str(roots / "tracker.csv") in str(fake.requests[1]["messages"][-1])
    assert "46,180" in str(fake.requests[2]["messages"][-1])
    # Every step is in the thread, as content blocks, in order.
    with core.store.session() as s:
        roles = [m.role for m in s.exec(select(Message).order_by(Message.id))]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    # Progress was shown for the tool steps and closed at the end.
    assert any("find_files" in p[1] for p in core.channel.progress_lines)
    assert core.channel.progress_lines[-1][2] is True


async def test_parallel_tool_calls_run_together_and_answer_in_order(core, fake, roots: Path):
    for name in ("a.txt", "b.txt", "c.txt"):
        (roots / name).write_text(f"contents of {name}")
    fake.reply(tool_uses=[("read_text", {"path": str(roots / n)}, f"toolu_{n[0]}") for n in ("a.txt", "b.txt", "c.txt")])
    fake.reply("Read all three.")
    task = await run(core, "read a, b and c")
    assert task.state == "done"
    results = fake.requests[1]["messages"][-1]["content"]
    assert [r["tool_use_id"] for r in results] == ["toolu_a", "toolu_b", "toolu_c"]
    assert [r["content"] for r in results][:3] == [f"contents of {n}" for n in ("a.txt", "b.txt", "c.txt")]


async def test_tool_errors_go_back_to_the_model_not_the_owner(core, fake):
    fake.reply(tool_uses=[("read_text", {"path": "/etc/passwd"}), ("no_such_tool", {}), ("read_text", {"paht": "x"})])
    fake.reply("I couldn't read that file.")
    task = await run(core, "read /etc/passwd")
    assert task.state == "done"
    results = fake.requests[1]["messages"][-1]["content"]
    assert all(r["is_error"] for r in results)
    assert "outside the folders Dispatch may use" in results[0]["content"]
    assert "no tool called no_such_tool" in results[1]["content"]
    assert "Invalid arguments for read_text" in results[2]["content"]


async def test_tasks_queue_in_order_one_at_a_time(core, fake):
    fake.reply("first", delay=0.3)
    fake.reply("second")
    fake.reply("third")
    t1 = await core.submit(Inbound("one", "console:local"))
    await until(lambda: task_state(core.store, t1.id) == "running")
    t2 = await core.submit(Inbound("two", "console:local"))
    t3 = await core.submit(Inbound("three", "console:local"))
    assert any(f"Queued as task #{t2.id}" in t for t in core.channel.texts)
    await until(lambda: task_state(core.store, t3.id) == "done")
    assert [t for t in core.channel.texts if t in ("first", "second", "third")] == ["first", "second", "third"]
    # Each request saw the previous answers: one thread.
    assert "first" in str(fake.requests[1]["messages"]) and "second" in str(fake.requests[2]["messages"])


async def test_cancel_mid_task_keeps_the_thread_valid(core, fake, roots: Path):
    (roots / "x.txt").write_text("x")
    fake.reply(tool_uses=[("read_text", {"path": str(roots / "x.txt")})])
    fake.hang(3.0)
    task = await core.submit(Inbound("slow work", "console:local"))
    await until(lambda: len(fake.requests) == 2, what="second model call")
    assert (await core.cancel()).startswith(f"Cancelled task #{task.id}")
    assert task_state(core.store, task.id) == "cancelled"
    assert any("Stopped task" in t for t in core.channel.texts)
    # The next request works, and the fake (which rejects invalid threads) accepts it.
    fake.reply("Here again.")
    nxt = await run(core, "still there?")
    assert nxt.state == "done" and core.channel.texts[-1] == "Here again."
    assert await core.cancel() == "Nothing is running."


async def test_cancel_during_a_tool_answers_the_tool_call(core, fake):
    gate = asyncio.Event()

    async def slow_tool() -> str:
        """Waits forever (for the test)."""
        await gate.wait()
        return "never"

    core.registry.add(slow_tool, connector="files", effect="read")
    fake.reply(tool_uses=[("slow_tool", {})])
    task = await core.submit(Inbound("go", "console:local"))
    await until(lambda: any("slow_tool" in p[1] for p in core.channel.progress_lines))
    await core.cancel()
    assert task_state(core.store, task.id) == "cancelled"
    fake.reply("ok")
    assert (await run(core, "next")).state == "done"
    # The orphaned tool_use got an explicit "no result" in the request (else the fake 400s).
    last = fake.requests[-1]["messages"]
    assert any(b.get("type") == "tool_result" and b.get("is_error") for m in last for b in m["content"])


async def test_model_failure_mid_task_then_a_normal_task(core, fake, roots: Path):
    (roots / "n.txt").write_text("n")
    fake.reply(tool_uses=[("read_text", {"path": str(roots / "n.txt")})])
    fake.error(529)
    fake.error(529)  # DISPATCH_MODEL_RETRIES=1: two tries, both overloaded
    task = await run(core, "do it")
    assert task.state == "failed"
    assert "overloaded (529)" in core.channel.texts[-1]
    assert "sk-ant" not in core.channel.texts[-1]
    fake.reply("All good now.")
    assert (await run(core, "try again")).state == "done"
    assert core.channel.texts[-1] == "All good now."


async def test_each_model_error_gets_a_plain_message(core, fake):
    cases = [(429, "rate-limiting"), (500, "failed (HTTP 500)"), (401, "refused the API key"), (400, "rejected the request")]
    for status, words in cases:
        fake.error(status)
        if status in (429, 500):
            fake.error(status)
        task = await run(core, f"trigger {status}")
        assert task.state == "failed", status
        assert words in core.channel.texts[-1], (status, core.channel.texts[-1])


async def test_timeout_is_reported(tmp_path, fake, roots, sent):
    settings = make_settings(tmp_path, fake.url, roots, DISPATCH_MODEL_TIMEOUT=0.3, DISPATCH_MODEL_RETRIES=0)
    core, ch = await make_core(settings)
    try:
        fake.hang(2.0)
        task = await core.submit(Inbound("hello", "console:local"))
        await until(lambda: task_state(core.store, task.id) == "failed")
        assert "did not answer within" in ch.texts[-1]
    finally:
        await close_core(core)


async def test_unreachable_model_is_reported(tmp_path, roots, sent):
    settings = make_settings(tmp_path, "http://127.0.0.1:9", roots, DISPATCH_MODEL_RETRIES=0)
    core, ch = await make_core(settings)
    try:
        task = await core.submit(Inbound("hello", "console:local"))
        await until(lambda: task_state(core.store, task.id) == "failed")
        assert "Could not reach the model service at http://127.0.0.1:9" in ch.texts[-1]
    finally:
        await close_core(core)


async def test_restart_reports_an_interrupted_task_and_resumes_queued(tmp_path, fake, roots, sent):
    settings = make_settings(tmp_path, fake.url, roots)
    core, _ = await make_core(settings)
    fake.hang(5.0)
    t1 = await core.submit(Inbound("long job", "console:local"))
    await until(lambda: len(fake.requests) == 1)
    t2 = await core.submit(Inbound("next job", "console:local"))
    # Simulate the machine stopping: the process dies with t1 running, t2 queued.
    await close_core(core)
    assert task_state(core.store, t1.id) == "running"

    fake.reply("Did the next job.")
    core2, ch2 = await make_core(settings)
    try:
        assert task_state(core2.store, t1.id) == "interrupted"
        assert any(f"Task #{t1.id}" in t and "interrupted" in t for t in ch2.texts)
        await until(lambda: task_state(core2.store, t2.id) == "done")
        assert ch2.texts[-1] == "Did the next job."
        # The model was told about the interruption as a [Dispatch] notice.
        assert "[Dispatch] Task #" in str(fake.requests[-1]["messages"])
    finally:
        await close_core(core2)


async def test_usage_is_recorded_per_call_and_summed(core, fake, roots):
    (roots / "u.txt").write_text("u" * 400)
    fake.reply(tool_uses=[("read_text", {"path": str(roots / "u.txt")})])
    fake.reply("done")
    task = await run(core, "usage please")
    with core.store.session() as s:
        calls = s.exec(select(ModelCall).where(ModelCall.task_id == task.id)).all()
    assert len(calls) == 2
    assert calls[0].cache_creation_input_tokens > 0 and calls[1].cache_read_input_tokens > 0
    assert all(c.cost_usd > 0 for c in calls)
    log = core.store.recent_actions(5, kinds=("task",))
    assert log[0].detail["calls"] == 2 and log[0].detail["cost_usd"] > 0


async def test_daily_budget_refuses_new_work(tmp_path, fake, roots, sent):
    settings = make_settings(tmp_path, fake.url, roots, DISPATCH_DAILY_BUDGET_USD=0.000001)
    core, ch = await make_core(settings)
    try:
        fake.reply("first answer")
        t = await core.submit(Inbound("first", "console:local"))
        await until(lambda: task_state(core.store, t.id) == "done")
        assert await core.submit(Inbound("second", "console:local")) is None
        assert "budget is spent" in ch.texts[-1] and "DISPATCH_DAILY_BUDGET_USD" in ch.texts[-1]
        assert core.store.recent_actions(1)[0].kind == "refusal"
        assert len(fake.requests) == 1
    finally:
        await close_core(core)


async def test_a_huge_tool_result_is_cut_with_a_pointer_to_the_rest(core, fake):
    async def dump() -> str:
        """Returns a lot of text."""
        return "line\n" * 20_000

    core.registry.add(dump, connector="files", effect="read")
    fake.reply(tool_uses=[("dump", {})])
    fake.reply("ok")
    await run(core, "dump it")
    result = fake.requests[1]["messages"][-1]["content"][0]["content"]
    assert len(result) < 21_000 and "The full result is in" in result
    path = result.split("The full result is in ")[1].split(";")[0]
    assert Path(path).read_text() == "line\n" * 20_000


async def test_api_key_never_reaches_store_or_log(core, fake, settings):
    fake.reply("hi")
    await run(core, "hello")
    db = Path(settings.home / "dispatch.db").read_bytes()
    assert b"sk-ant-test-secret-key" not in db
    assert "sk-ant-test-secret-key" not in repr(settings)
