"""Plugins end to end: real MCP servers (the SDK's MCPServer, tests/mcp_servers.py) over
stdio and streamable HTTP, the real core and runner, the fake Messages API."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from agent import gate
from tests.mcp_helpers import calls, http_server, plugin_bed, stdio_entry, tool_names, tool_results
from tests.conftest import task_state, until
from tools import mcp
from tools.plugins import config


def _text(result: dict) -> str:
    content = result["content"]
    return content if isinstance(content, str) else json.dumps(content)


async def test_read_only_tool_runs_after_a_tool_search(tmp_path: Path, fake):
    log = tmp_path / "calls.jsonl"
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes", log)}) as bed:
        assert bed.manager.servers["notes"].state == "idle"  # nothing starts before first use
        fake.reply(tool_uses=[("find_tools", {"query": "read notes"})])
        fake.reply(tool_uses=[("mcp__notes__read_note", {"name": "budget"})])
        fake.reply("The Q3 budget is 42,000 EUR.")
        task = await bed.run("What is the budget?")
    assert task.state == "done"
    first, second, third = fake.requests
    assert "find_tools" in tool_names(first) and not [n for n in tool_names(first) if n.startswith("mcp__")]
    found = _text(tool_results(second)[0])
    assert "mcp__notes__read_note (runs at once)" in found and "mcp__notes__add_note (needs the owner's approval)" in found
    assert "mcp__notes__read_note" in tool_names(second)  # offered once found, for the rest of the task
    result = tool_results(third)[0]
    assert not result["is_error"]
    assert _text(result) == mcp.untrusted_header("notes") + "Q3 budget: 42,000 EUR"
    assert calls(log, "read_note") == [{"tool": "read_note", "args": {"name": "budget"}, "pid": calls(log)[0]["pid"]}]
    # The next task starts light again.
    tool = bed.core.registry.get("mcp__notes__read_note")
    assert tool is not None and tool.untrusted and tool.connector == "mcp:notes" and tool.effect == "read"


async def test_tool_without_hints_is_a_draft_and_approval_runs_it_once_over_http(tmp_path: Path, fake):
    log = tmp_path / "http-calls.jsonl"
    async with http_server("notes", log) as url, plugin_bed(tmp_path, fake, {"notes": {"url": url}}) as bed:
        fake.reply(tool_uses=[("find_tools", {"query": "notes"})])
        fake.reply(tool_uses=[("mcp__notes__add_note", {"name": "lunch", "text": "Friday 12:30 with Ana"})])
        fake.reply("I drafted the note; it waits for your approval.")
        task = await bed.run("Note lunch with Ana on Friday")
        assert task.state == "done"
        assert "Draft #1 is waiting" in _text(tool_results(fake.requests[2])[0])
        assert calls(log, "add_note") == []  # nothing ran yet
        card = bed.channel.cards[-1]
        assert card.tool == "mcp__notes__add_note"
        assert card.preview == "Plugin notes: add_note\nname: lunch\ntext: Friday 12:30 with Ana"
        decision = await bed.core.approve(card.approval_id, "test")
        assert decision.won and decision.approval.state == "sent", decision.approval.outcome
        assert "note lunch saved" in decision.approval.outcome
        again = await bed.core.approve(card.approval_id, "test")
        assert not again.won
        ran = calls(log, "add_note")
        assert [r["args"] for r in ran] == [{"name": "lunch", "text": "Friday 12:30 with Ana"}]


async def test_policy_off_hides_a_plugin_and_never_starts_it(tmp_path: Path, fake):
    log = tmp_path / "calls.jsonl"
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes", log)}) as bed:
        gate.set_policy(bed.core.store, "mcp:notes", "off")
        fake.reply(tool_uses=[("find_tools", {"query": "notes"})])
        fake.reply(tool_uses=[("mcp__notes__read_note", {"name": "budget"})])
        fake.reply("The notes plugin is turned off.")
        await bed.run("read my budget note")
        found = _text(tool_results(fake.requests[1])[0])
        assert "No plugin tool matches" in found and "turned off" in found
        assert "mcp__notes__read_note" not in tool_names(fake.requests[1])
        refused = tool_results(fake.requests[2])[0]
        assert refused["is_error"] and "turned off by the owner's policy for mcp:notes" in refused["content"]
        assert bed.manager.servers["notes"].state == "idle" and calls(log) == []


async def test_a_server_that_crashes_on_start_is_reported_once_and_the_others_work(tmp_path: Path, fake):
    log = tmp_path / "calls.jsonl"
    servers = {"broken": stdio_entry("crash"), "notes": stdio_entry("notes", log)}
    async with plugin_bed(tmp_path, fake, servers) as bed:
        for _ in range(2):
            fake.reply(tool_uses=[("find_tools", {"query": "note"})])
            fake.reply("ok")
            assert (await bed.run("find note tools")).state == "done"
        found = _text(tool_results(fake.requests[1])[0])
        assert "Unavailable: The plugin broken could not start" in found
        assert "refusing to start" in found  # the server's own last words, from its stderr
        assert "mcp__notes__read_note" in found
        reports = [a for a in bed.core.store.recent_actions(50) if a.kind == "plugin"]
        assert len(reports) == 1 and "broken" in reports[0].summary and not reports[0].ok
        status = bed.manager.status_lines()
        assert status[0].startswith("broken: The plugin broken could not start") and status[1] == "notes: running, 6 tools"


async def test_a_hanging_call_times_out_with_a_clear_error_and_the_task_goes_on(tmp_path: Path, fake):
    log = tmp_path / "calls.jsonl"
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes", log)}, DISPATCH_MCP_TIMEOUT=1.0) as bed:
        fake.reply(tool_uses=[("find_tools", {"query": "search read"})])
        fake.reply(tool_uses=[("mcp__notes__slow_search", {"query": "budget"})])
        fake.reply(tool_uses=[("mcp__notes__read_note", {"name": "todo"})])
        fake.reply("Search timed out, but here is the todo.")
        started = time.monotonic()
        task = await bed.run("search my notes")
        assert task.state == "done" and time.monotonic() - started < 15
        hung = tool_results(fake.requests[2])[0]
        assert hung["is_error"]
        assert hung["content"] == ("The plugin notes did not answer slow_search within 1 s, so the call was stopped "
                                   "(timed out). Try again later or with a smaller request.")
        assert "call the printer company" in _text(tool_results(fake.requests[3])[0])  # the server still works


async def test_an_oversized_result_is_truncated_and_kept_on_disk(tmp_path: Path, fake):
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes")}) as bed:
        fake.reply(tool_uses=[("find_tools", {"query": "export"})])
        fake.reply(tool_uses=[("mcp__notes__export_all", {"copies": 1})], )
        fake.reply("Exported.")
        await bed.run("export everything")
        text = _text(tool_results(fake.requests[2])[0])
        assert len(text) < 20_500 and "[Truncated:" in text
        saved = list((bed.core.settings.workspace / "results").glob("*.txt"))
        assert len(saved) == 1
        whole = saved[0].read_text()  # what the plugin sent, capped at 200,000 characters, and saying so
        assert len(whole) > mcp.MAX_RESULT_CHARS and whole.endswith("only the first 200,000 are kept.]")


async def test_a_crashed_server_is_restarted_and_shutdown_leaves_no_process(tmp_path: Path, fake):
    log = tmp_path / "calls.jsonl"
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes", log)}) as bed:
        conn = bed.manager.servers["notes"]
        await conn.ensure()
        mcp.register(bed.core.registry, conn)
        tool = bed.core.registry.get("mcp__notes__read_note")
        ctx = bed.core.runner.tool_context(None, None, "console:local")
        assert "42,000" in await tool.call(ctx, {"name": "budget"})
        first_pid = calls(log)[0]["pid"]
        os.kill(first_pid, 9)
        await asyncio.sleep(0.2)
        # A read-only call finds the server gone, waits for the restart and is retried once.
        assert "printer" in await tool.call(ctx, {"name": "todo"})
        second_pid = calls(log)[-1]["pid"]
        assert second_pid != first_pid and conn.starts == 2
    for pid in (first_pid, second_pid):  # the manager closed with the bed: no child left
        assert not _alive(pid), f"process {pid} still running"


async def test_a_change_in_flight_when_the_server_dies_is_never_retried(tmp_path: Path, fake):
    log = tmp_path / "calls.jsonl"
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes", log)}) as bed:
        conn = bed.manager.servers["notes"]
        await conn.ensure()
        mcp.register(bed.core.registry, conn)
        ctx = bed.core.runner.tool_context(None, None, "console:local")
        await bed.core.registry.get("mcp__notes__read_note").call(ctx, {"name": "todo"})
        os.kill(calls(log)[0]["pid"], 9)
        await asyncio.sleep(0.2)
        tool = bed.core.registry.get("mcp__notes__add_note")
        from tools.registry import ToolOutcomeUnknown
        try:
            await tool.call(ctx, {"name": "x", "text": "y"})
            raise AssertionError("expected the call to end unknown")
        except ToolOutcomeUnknown as exc:
            assert "stopped during add_note" in str(exc)
        assert calls(log, "add_note") == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only a running process counts.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def test_a_plugins_question_is_a_card_the_owner_answers_on_any_app(tmp_path: Path, fake):
    from agent import approvals

    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes")}) as bed:
        core = bed.core
        fake.reply(tool_uses=[("find_tools", {"query": "ask owner"})])
        fake.reply(tool_uses=[("mcp__notes__ask_owner", {"question": "Archive old notes?"})])
        fake.reply("Archived.")
        task = await core.api.submit("archive", "console:local")
        await until(lambda: approvals.pending(core.store), timeout=20, what="the question's card")
        card = bed.channel.cards[-1]
        assert card.tool == "answer_plugin" and "Plugin notes asks you" in card.preview
        assert "Archive old notes?" in card.preview and "confirm (boolean, required)" in card.preview
        assert "answer_plugin" not in str(fake.requests[-1]["tools"])  # never offered to the model
        # Approving with no answers: the plugin's check refuses, and the question comes back on a new card.
        first = approvals.pending(core.store)[0].id
        assert (await core.approve(first, "console:sam")).approval.state == "failed"
        await until(lambda: len(approvals.pending(core.store)) == 1, what="asked again")
        again = approvals.pending(core.store)[0]
        assert "was not taken" in again.preview
        edited = await core.api.edit(again.id, "console:sam", "confirm: yes\ncomment: go")
        assert edited.ok
        final = await core.approve(approvals.pending(core.store)[0].id, "console:sam")
        assert final.approval.state == "sent"
        await until(lambda: task_state(core.store, task.id) == "done", timeout=20, what="the task done")
        assert "owner answered confirm=True comment='go'" in _text(tool_results(fake.requests[2])[0])
        # Reject = decline.
        fake.reply(tool_uses=[("mcp__notes__ask_owner", {"question": "Again?"})])
        fake.reply("Declined.")
        task = await core.api.submit("again", "console:local")
        await until(lambda: approvals.pending(core.store), timeout=20, what="the second question")
        await core.api.reject(approvals.pending(core.store)[0].id, "console:sam")
        await until(lambda: task_state(core.store, task.id) == "done", timeout=20, what="the task done")
        assert "owner chose decline" in _text(tool_results(fake.requests[-1])[0])


async def test_elicitation_becomes_a_pending_question_the_owner_answers(tmp_path: Path, fake):
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes")}) as bed:
        asked = []

        async def on_question(q):
            asked.append(q)
            assert bed.manager.elicitations.pending() == [q]
            assert q.fields == [("confirm", "boolean", True, []), ("comment", "string", False, [])]
            assert "does not fit" in bed.manager.elicitations.answer(q.id, "accept", {"confirm": "maybe"})
            assert bed.manager.elicitations.answer(q.id, "accept", {"confirm": True, "comment": "go"}) == ""

        bed.manager.elicitations.on_question = on_question
        fake.reply(tool_uses=[("find_tools", {"query": "ask owner"})])
        fake.reply(tool_uses=[("mcp__notes__ask_owner", {"question": "Archive old notes?"})])
        fake.reply("Done.")
        await bed.run("archive")
        assert asked and asked[0].server == "notes" and asked[0].message == "Archive old notes?"
        assert "owner answered confirm=True comment='go'" in _text(tool_results(fake.requests[2])[0])

        async def decline(q):
            bed.manager.elicitations.answer(q.id, "decline")

        bed.manager.elicitations.on_question = decline
        fake.reply(tool_uses=[("find_tools", {"query": "ask owner"})])
        fake.reply(tool_uses=[("mcp__notes__ask_owner", {"question": "Again?"})])
        fake.reply("Declined.")
        await bed.run("again")
        assert "owner chose decline" in _text(tool_results(fake.requests[5])[0])
        assert bed.manager.elicitations.pending() == []


async def test_resources_are_readable_through_a_tool(tmp_path: Path, fake):
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes")}) as bed:
        fake.reply(tool_uses=[("find_tools", {"query": "resources"})])
        fake.reply(tool_uses=[("mcp__notes__list_resources", {})])
        fake.reply(tool_uses=[("mcp__notes__read_resource", {"uri": "notes://budget"})])
        fake.reply("Read it.")
        await bed.run("what resources are there?")
        listing = _text(tool_results(fake.requests[2])[0])
        assert "notes://index" in listing and "template notes://{name}" in listing
        assert _text(tool_results(fake.requests[3])[0]) == mcp.untrusted_header("notes") + "Q3 budget: 42,000 EUR"


async def test_a_destructive_tool_stays_ask_when_the_owner_sets_the_plugin_to_auto(tmp_path: Path, fake):
    log = tmp_path / "calls.jsonl"
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes", log)}) as bed:
        gate.set_policy(bed.core.store, "mcp:notes", "auto")
        fake.reply(tool_uses=[("find_tools", {"query": "note"})])
        fake.reply(tool_uses=[("mcp__notes__add_note", {"name": "a", "text": "b"}, "toolu_add"),
                              ("mcp__notes__delete_note", {"name": "todo"}, "toolu_del")])
        fake.reply("Added; the deletion waits for you.")
        await bed.run("add a, delete todo")
        added, deleted = tool_results(fake.requests[2])
        assert "note a saved" in _text(added)  # the owner's auto runs a tool without hints
        assert "waiting for the owner's approval" in _text(deleted)  # a declared destructive one stays ask
        assert calls(log, "delete_note") == []


async def test_the_first_request_stays_light_with_three_servers_and_60_tools(tmp_path: Path, fake):
    servers = {"alpha": stdio_entry("many:alpha"), "beta": stdio_entry("many:beta"), "notes": stdio_entry("notes")}
    async with plugin_bed(tmp_path, fake, servers) as bed:
        fake.reply(tool_uses=[("find_tools", {"query": "alpha"})])
        fake.reply("ok")
        await bed.run("hello")
        listed = sum(len(c.tools) for c in bed.manager.servers.values())
        assert listed >= 66
        first = fake.requests[0]
        tokens = len(json.dumps(first["tools"], separators=(",", ":")) + json.dumps(first["system"], separators=(",", ":"))) // 4
        assert tokens <= 2500, tokens
        assert [n for n in tool_names(first) if n.startswith("mcp__")] == []
        offered = [n for n in tool_names(fake.requests[1]) if n.startswith("mcp__")]
        assert 0 < len(offered) <= mcp.MAX_MATCHES and all(n.startswith("mcp__alpha__") for n in offered)


def test_config_reads_the_claude_desktop_format_and_explains_bad_entries(tmp_path: Path, monkeypatch):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "fs": {"command": "npx", "args": ["-y", "server-fs", "/tmp"], "env": {"TOKEN": "${FS_TOKEN}"}},
        "remote": {"type": "http", "url": "https://example.invalid/mcp", "headers": {"Authorization": "Bearer s3cret"}},
        "old": {"type": "sse", "url": "https://example.invalid/sse"},
        "both": {"command": "x", "url": "https://x"},
        "bad name!": {"command": "x"},
    }}))
    specs, problems = config.load(path)
    assert sorted(specs) == ["fs", "remote"]
    assert any("SSE transport is not supported" in p for p in problems)
    assert any("either \"command\"" in p for p in problems) and any("plugin name" in p for p in problems)
    assert specs["remote"].describe() == "https://example.invalid/mcp (headers: Authorization)"
    assert "s3cret" not in specs["remote"].describe()
    monkeypatch.setenv("FS_TOKEN", "tok-123")
    assert specs["fs"].resolved().env == {"TOKEN": "tok-123"}
    monkeypatch.delenv("FS_TOKEN")
    try:
        specs["fs"].resolved()
        raise AssertionError("expected a ConfigError")
    except config.ConfigError as exc:
        assert "${FS_TOKEN} is not set" in str(exc)
    config.add(path, config.ServerSpec(name="new", command="srv", args=("--x",)))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert json.loads(path.read_text())["mcpServers"]["new"] == {"command": "srv", "args": ["--x"]}
    assert config.remove(path, "new") and not config.remove(path, "new")


async def test_our_own_connectors_can_load_on_demand_through_the_same_search(tmp_path: Path, fake):
    from tests.conftest import make_core, close_core, make_settings
    from tests.mcp_helpers import PluginBed

    settings = make_settings(tmp_path, fake.url, None, EMAIL_ADDRESS="sam@example.com", EMAIL_PASSWORD="pw",
                             DISPATCH_MCP_CONFIG=str(tmp_path / "none.json"))
    core, channel = await make_core(settings)
    manager = mcp.install(core.registry, settings, core.store, defer_connectors=("email",))
    try:
        fake.reply(tool_uses=[("find_tools", {"query": "search mail"})])
        fake.reply("ok")
        await PluginBed(core, channel, manager).run("any mail from Ana?")
        first, second = fake.requests
        assert "find_tools" in tool_names(first) and "search_mail" not in tool_names(first)
        assert "email" in next(t["description"] for t in first["tools"] if t["name"] == "find_tools")
        assert "search_mail" in tool_names(second) and "read_text" in tool_names(second)
    finally:
        await manager.close()
        await close_core(core)


async def test_an_http_server_that_goes_away_fails_fast_and_is_reconnected(tmp_path: Path, fake):
    from tests.conftest import until
    from tests.mcp_helpers import free_port
    from tools.registry import ToolError

    log, port = tmp_path / "http.jsonl", free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    async with plugin_bed(tmp_path, fake, {"notes": {"url": url}}) as bed:
        conn = bed.manager.servers["notes"]
        ctx = bed.core.runner.tool_context(None, None, "console:local")
        async with http_server("notes", log, port):
            await conn.ensure()
            read = bed.core.registry.get("mcp__notes__read_note")
            assert "printer" in await read.call(ctx, {"name": "todo"})
        started = time.monotonic()
        try:
            await read.call(ctx, {"name": "todo"})
            raise AssertionError("expected an error")
        except ToolError as exc:
            assert "The plugin notes stopped (" in str(exc) and "being restarted" in str(exc)
        assert time.monotonic() - started < 5  # the task is told at once, not after the back-off
        async with http_server("notes", log, port):
            await until(lambda: conn.state == "up", timeout=15, what="the plugin reconnected")
            assert "printer" in await read.call(ctx, {"name": "todo"})


def test_policy_keys_and_settings_lines_for_the_front_ends(tmp_path: Path):
    from tests.conftest import make_settings
    from tools.plugins.manager import PluginManager

    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"notes": stdio_entry("notes"), "gh": {"url": "https://x.invalid/mcp"}}}))
    manager = PluginManager(make_settings(tmp_path, "http://127.0.0.1:9", DISPATCH_MCP_CONFIG=str(path)))
    assert manager.accepts_policy_key("mcp:notes") and manager.accepts_policy_key("mcp__notes__add_note")
    assert not manager.accepts_policy_key("mcp:other") and not manager.accepts_policy_key("notes")
    assert manager.settings_lines({"mcp:gh": "off"}) == [
        "gh (http): policy off · not started yet (starts on first use)",
        "notes (stdio): policy default · not started yet (starts on first use)",
    ]


async def test_shutdown_during_a_hanging_call_ends_the_call_and_the_process(tmp_path: Path, fake):
    from tools.registry import ToolError

    log = tmp_path / "calls.jsonl"
    async with plugin_bed(tmp_path, fake, {"notes": stdio_entry("notes", log)}) as bed:
        conn = bed.manager.servers["notes"]
        await conn.ensure()
        ctx = bed.core.runner.tool_context(None, None, "console:local")
        hanging = asyncio.create_task(bed.core.registry.get("mcp__notes__slow_search").call(ctx, {"query": "x"}))
        await asyncio.sleep(0.5)
        pid = calls(log)[0]["pid"]
        started = time.monotonic()
        await bed.manager.close()
        assert time.monotonic() - started < 8
        done, _ = await asyncio.wait({hanging}, timeout=5)
        assert done and isinstance(hanging.exception(), ToolError)
        assert not _alive(pid)
