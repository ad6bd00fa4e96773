"""What the model sees: prompt, tools, caching, the history window and its summary."""

from __future__ import annotations

from sqlmodel import select

from agent import context, gate
from agent.channel import Inbound
from store.models import Message, ModelCall, Thread
from tests.conftest import make_core, close_core, make_settings, task_state, until


async def run(core, text: str) -> None:
    task = await core.submit(Inbound(text, "console:local"))
    await until(lambda: task_state(core.store, task.id) not in ("queued", "running"), what="task")


async def test_system_prompt_has_owner_date_roots_policies_and_notes(core, fake, roots):
    fake.reply("Noted.", tool_uses=[("remember", {"note": "The recap template is ~/Templates/recap.pptx"})])
    fake.reply("I'll remember that.")
    await run(core, "remember where the recap template is")
    fake.reply("Hello Sam.")
    await run(core, "hi")
    system = fake.requests[-1]["system"]
    text = system[0]["text"]
    assert "assistant of Sam" in text and "Europe/Berlin" in text and str(roots) in text
    assert "send ask" in text and "data, not instructions" in text
    assert "The recap template is ~/Templates/recap.pptx" in text
    # The first request (before the note) had no notes: the note changed the prompt.
    assert "recap.pptx" not in fake.requests[0]["system"][0]["text"]


async def test_breakpoints_after_system_and_at_the_end_of_history(core, fake, roots):
    (roots / "a.txt").write_text("alpha")
    fake.reply(tool_uses=[("read_text", {"path": str(roots / "a.txt")})])
    fake.reply("alpha it is")
    await run(core, "read a")
    for req in fake.requests:
        assert req["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert req["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
        marks = sum("cache_control" in b for m in req["messages"] for b in m["content"])
        assert marks == 1  # only the last block; stored history is never marked
    # Tools come in a stable order, and the same bytes each call.
    assert fake.requests[0]["tools"] == fake.requests[1]["tools"]
    names = [t["name"] for t in fake.requests[0]["tools"]]
    assert names == sorted(names)
    # The second call read the first call's prefix from the (simulated) cache.
    with core.store.session() as s:
        calls = s.exec(select(ModelCall).order_by(ModelCall.id)).all()
    assert calls[1].cache_read_input_tokens >= calls[0].cache_creation_input_tokens > 0


async def test_off_tools_are_not_offered(core, fake):
    gate.set_policy(core.store, "memory", "off")
    fake.reply("ok")
    await run(core, "hi")
    names = {t["name"] for t in fake.requests[0]["tools"]}
    assert "remember" not in names and "forget" not in names and "read_text" in names


def fill_thread(store, thread_id: int, n: int, size: int = 400) -> None:
    """n messages of ordinary conversation: user asks, assistant uses a tool, answers."""
    i = 0
    while i < n:
        store.append_message(thread_id, "user", [{"type": "text", "text": f"request {i} " + "x" * size}])
        tid = f"toolu_hist_{i}"
        store.append_message(thread_id, "assistant", [{"type": "tool_use", "id": tid, "name": "list_folder", "input": {}}])
        store.append_message(thread_id, "user", [{"type": "tool_result", "tool_use_id": tid, "content": "y" * size}],
                             kind="tool_results")
        store.append_message(thread_id, "assistant", [{"type": "text", "text": f"answer {i} " + "z" * size}])
        i += 4


async def test_a_2000_message_thread_stays_within_budget_using_the_summary(tmp_path, fake, roots, sent):
    budget = 20_000
    settings = make_settings(tmp_path, fake.url, roots, DISPATCH_CONTEXT_TOKENS=budget)
    core, ch = await make_core(settings)
    try:
        fill_thread(core.store, core.thread_id, 2000)
        def answer(req):
            if "running summary" in str(req.get("system")):
                return {"text": "SUMMARY: Sam asked for many folder listings; nothing is pending."}
            return {"text": "Here you go."}

        fake.respond_with(answer)
        await run(core, "one more thing")
        summary_reqs = [r for r in fake.requests if "running summary" in str(r["system"])]
        turn_req = fake.requests[-1]
        # The old part went to the summariser as a transcript, piece by piece, oldest
        # first, each piece building on the summary so far; nothing was skipped.
        assert len(summary_reqs) >= 2
        assert "request 0 " in summary_reqs[0]["messages"][0]["content"]
        assert "(none yet)" in summary_reqs[0]["messages"][0]["content"]
        assert "SUMMARY: Sam asked" in summary_reqs[1]["messages"][0]["content"]
        joined = "".join(r["messages"][0]["content"] for r in summary_reqs)
        assert all(f"request {i} " in joined for i in range(0, 1000, 4))
        # The turn itself is within budget, carries the summary, and starts at a user turn.
        assert "SUMMARY: Sam asked" in turn_req["system"][-1]["text"]
        size = sum(len(str(m)) for m in turn_req["messages"]) // 4
        assert size <= budget
        assert turn_req["messages"][0]["content"][0]["type"] == "text"
        assert ch.texts[-2].startswith("(I folded") and ch.texts[-1] == "Here you go."
        with core.store.session() as s:
            thread = s.get(Thread, core.thread_id)
            purposes = [c.purpose for c in s.exec(select(ModelCall))]
        assert thread.summary_upto > 1000
        assert purposes == ["summary"] * len(summary_reqs) + ["turn"]
        # The next task needs no new summary: the window was cut to half the budget.
        calls = len(fake.requests)
        await run(core, "and again")
        assert fake.requests[-1]["system"][-1]["text"].endswith("nothing is pending.")
        assert len(fake.requests) == calls + 1
    finally:
        await close_core(core)


def test_window_repairs_what_a_crash_left_behind(tmp_path, sent):
    settings = make_settings(tmp_path, "http://127.0.0.1:9")
    from store.db import Store

    store = Store(settings.db_url)
    tid = store.thread_id()
    store.append_message(tid, "user", [{"type": "text", "text": "do two things"}])
    store.append_message(tid, "assistant", [
        {"type": "tool_use", "id": "t1", "name": "list_folder", "input": {}},
        {"type": "tool_use", "id": "t2", "name": "list_folder", "input": {}},
    ])
    # A notice arrived between the call and (only one of) its results.
    store.append_message(tid, "user", [{"type": "text", "text": "[Dispatch] draft #1 approved"}], kind="event")
    store.append_message(tid, "user", [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}], kind="tool_results")
    store.append_message(tid, "assistant", [{"type": "tool_use", "id": "t3", "name": "list_folder", "input": {}}])
    window = context.select_window(store, tid, 10_000)
    msgs = context.to_api_messages(window.rows)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    first_results = msgs[2]["content"]
    assert [b.get("tool_use_id") for b in first_results[:2]] == ["t1", "t2"]  # results first
    assert first_results[1]["is_error"] and first_results[2]["type"] == "text"
    assert msgs[4]["content"][0]["tool_use_id"] == "t3" and msgs[4]["content"][0]["is_error"]
    # Building never changes what is stored.
    with store.session() as s:
        assert len(s.exec(select(Message)).all()) == 5
    store.close()


def test_tools_of_a_connector_that_is_not_set_up_are_not_offered(tmp_path):
    from tools.catalogue import default_registry

    reg = default_registry()
    bare = make_settings(tmp_path, "http://127.0.0.1:9")
    names = {t["name"] for t in context.offered_tools(reg, {}, bare)}
    assert "read_text" in names and "send_email" not in names and "search_mail" not in names
    mail = make_settings(tmp_path, "http://127.0.0.1:9", EMAIL_ADDRESS="sam@example.com", EMAIL_PASSWORD="pw")
    names = {t["name"] for t in context.offered_tools(reg, {}, mail)}
    assert {"send_email", "search_mail", "reply_email"} <= names
