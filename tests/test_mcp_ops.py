"""Plugins from the desktop (`dispatch mcp ...`, `dispatch doctor`) and against the
third-party reference server `@modelcontextprotocol/server-everything` (Node)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from bot.ops import doctor
from bot.ops.cli import main
from tests.conftest import make_settings, require_system
from tests.mcp_helpers import REPO, plugin_bed, tool_names, tool_results

SERVER_SCRIPT = str(REPO / "tests" / "mcp_servers.py")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DISPATCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret-key")
    return tmp_path / "home"


def test_mcp_add_list_test_remove(home: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["mcp", "list"]) == 0
    assert "No plugins configured" in capsys.readouterr().out
    assert main(["mcp", "add", "notes", "--env", "NOTES_TOKEN=tok-secret-1", "--",
                 sys.executable, SERVER_SCRIPT, "notes"]) == 0
    assert "Added plugin notes" in capsys.readouterr().out
    assert main(["mcp", "add", "remote", "https://mcp.example.invalid/mcp",
                 "--header", "Authorization: Bearer hdr-secret-2"]) == 0
    assert main(["mcp", "add", "notes", "--", "other"]) == 2
    assert "already a plugin called notes" in capsys.readouterr().out
    saved = json.loads((home / "mcp.json").read_text())["mcpServers"]
    assert saved["notes"]["env"] == {"NOTES_TOKEN": "tok-secret-1"}
    assert saved["remote"] == {"url": "https://mcp.example.invalid/mcp", "headers": {"Authorization": "Bearer hdr-secret-2"}}

    assert main(["mcp", "list"]) == 0
    listing = capsys.readouterr().out
    assert "notes  [stdio]" in listing and "(env: NOTES_TOKEN)" in listing and "(headers: Authorization)" in listing
    assert "tok-secret-1" not in listing and "hdr-secret-2" not in listing

    assert main(["mcp", "test", "notes"]) == 0
    tested = capsys.readouterr().out
    assert tested.startswith("notes: stdio, 6 tools, resources, started in")
    assert "read_note  (runs at once)" in tested and "delete_note  (needs your approval: send, destructive)" in tested

    assert main(["mcp", "remove", "remote"]) == 0 and main(["mcp", "remove", "remote"]) == 1
    assert "There is no plugin called remote" in capsys.readouterr().out


def test_mcp_test_explains_a_server_that_will_not_start(home: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["mcp", "add", "broken", "--", sys.executable, SERVER_SCRIPT, "crash"]) == 0
    assert main(["mcp", "add", "ghost", "--", "/nonexistent/mcp-server"]) == 0
    capsys.readouterr()
    assert main(["mcp", "test", "broken"]) == 1
    out = capsys.readouterr().out
    assert "broken: ✗ The plugin broken could not start" in out and "refusing to start" in out
    assert main(["mcp", "test", "ghost"]) == 1
    assert "ghost: ✗ The plugin ghost could not start" in capsys.readouterr().out
    assert main(["mcp", "test", "nobody"]) == 1
    assert "there is no plugin called nobody" in capsys.readouterr().out


async def test_doctor_checks_every_plugin(tmp_path: Path, fake):
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "notes": {"command": sys.executable, "args": [SERVER_SCRIPT, "notes"]},
        "broken": {"command": sys.executable, "args": [SERVER_SCRIPT, "crash"]},
        "old": {"type": "sse", "url": "https://x.invalid/sse"},
    }}))
    settings = make_settings(tmp_path, fake.url, DISPATCH_MCP_CONFIG=str(config))
    checks = {name: (ok, msg) for name, ok, msg in await doctor.check_plugins(settings)}
    assert checks["Plugin notes"][0] and "6 tools" in checks["Plugin notes"][1]
    assert not checks["Plugin broken"][0] and "dispatch mcp test broken" in checks["Plugin broken"][1]
    assert not checks["Plugins"][0] and "SSE transport is not supported" in checks["Plugins"][1]
    none = make_settings(tmp_path / "other", fake.url)
    assert (await doctor.check_plugins(none))[0][1] is True


async def test_the_reference_server_everything_from_npm(tmp_path: Path, fake, monkeypatch: pytest.MonkeyPatch):
    require_system("npx", "nodejs npm")
    if shutil.which("mcp-server-everything") is None:  # CI pre-installs it (.ci/run): no download at run time
        reason = "mcp-server-everything not found (npm install -g @modelcontextprotocol/server-everything)"
        if os.environ.get("DISPATCH_REQUIRE_SYSTEM_TESTS") == "1":
            pytest.fail(reason + " and DISPATCH_REQUIRE_SYSTEM_TESTS=1")
        pytest.skip(reason)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
    async with plugin_bed(tmp_path, fake, {"everything": {"command": "mcp-server-everything", "args": ["stdio"]}}) as bed:
        fake.reply(tool_uses=[("find_tools", {"query": "echo sum tiny image env logging"})])
        fake.reply(tool_uses=[("mcp__everything__echo", {"message": "hello"}, "toolu_echo"),
                              ("mcp__everything__get-sum", {"a": 2, "b": 3}, "toolu_sum"),
                              ("mcp__everything__get-tiny-image", {}, "toolu_img"),
                              ("mcp__everything__get-env", {}, "toolu_env"),
                              ("mcp__everything__toggle-simulated-logging", {}, "toolu_log")])
        fake.reply(tool_uses=[("mcp__everything__list_resources", {})])
        fake.reply("Done.")
        task = await bed.run("try the everything server")
        assert task.state == "done"
        assert "mcp__everything__echo" in tool_names(fake.requests[1])
        echo, total, image, env, toggle = tool_results(fake.requests[2])
        assert echo["content"].endswith("Echo: hello") and "5" in total["content"]
        assert any(part.get("type") == "image" for part in image["content"])
        assert "sk-ant-must-not-leak" not in json.dumps(env["content"])
        assert "waiting for the owner's approval" in toggle["content"]  # no readOnlyHint: a draft
        assert "demo://resource/static/document/architecture.md" in tool_results(fake.requests[3])[0]["content"]

        # A draft that asks the owner a question when it runs (legacy protocol: mid-call elicitation).
        async def answer(q):
            assert q.server == "everything" and ("name", "string", True, []) in q.fields
            assert bed.manager.elicitations.answer(q.id, "accept", {"name": "Sam Owner"}) == ""

        bed.manager.elicitations.on_question = answer
        fake.reply(tool_uses=[("mcp__everything__trigger-elicitation-request", {})])
        fake.reply("It waits for you.")
        await bed.run("ask me for my details")
        card = bed.channel.cards[-1]
        assert card.tool == "mcp__everything__trigger-elicitation-request"
        decision = await bed.core.approve(card.approval_id, "test")
        assert decision.approval.state == "sent" and "Sam Owner" in decision.approval.outcome
