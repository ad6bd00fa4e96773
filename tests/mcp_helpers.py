"""Plugins in the tests: a Dispatch core with real MCP servers (tests/mcp_servers.py over
stdio, or over streamable HTTP on 127.0.0.1), and what those servers recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.channel import Inbound
from store.models import Task
from tests.conftest import close_core, make_core, make_settings, task_state, until
from tools import mcp

REPO = Path(__file__).resolve().parent.parent


def stdio_entry(kind: str, log: Path | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"command": sys.executable, "args": ["-m", "tests.mcp_servers", kind], "cwd": str(REPO)}
    if log is not None:
        entry["env"] = {"MCP_TEST_LOG": str(log)}
    return entry


def calls(log: Path, tool: str | None = None) -> list[dict[str, Any]]:
    """What the server(s) writing to `log` actually ran."""
    if not log.is_file():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in rows if tool is None or r["tool"] == tool]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def http_server(kind: str, log: Path, port: int = 0) -> AsyncIterator[str]:
    """The test server over streamable HTTP on 127.0.0.1; yields its URL."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.mcp_servers", kind, "--http", str(port)], cwd=REPO,
                            env={**_base_env(), "MCP_TEST_LOG": str(log)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the HTTP MCP server did not start")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "SYSTEMROOT")}


class PluginBed:
    """A running core with plugins installed, as the lead's Core will have them."""

    def __init__(self, core: Any, channel: Any, manager: mcp.PluginManager) -> None:
        self.core, self.channel, self.manager = core, channel, manager

    async def run(self, text: str, timeout: float = 30.0) -> Task:
        task = await self.core.submit(Inbound(text, "console:local"))
        await until(lambda: task_state(self.core.store, task.id) not in ("queued", "running"),
                    timeout=timeout, what=f"task {task.id}")
        with self.core.store.session() as s:
            return s.get(Task, task.id)


@contextlib.asynccontextmanager
async def plugin_bed(tmp_path: Path, fake: Any, servers: dict[str, Any], **extra: Any) -> AsyncIterator[PluginBed]:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": servers}))
    settings = make_settings(tmp_path, fake.url, None, DISPATCH_MCP_CONFIG=str(config), **extra)
    core, channel = await make_core(settings)
    manager = core.plugins  # the core installs the configured plugins itself
    try:
        yield PluginBed(core, channel, manager)
    finally:
        await manager.close()
        await close_core(core)


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in request["messages"][-1]["content"] if b.get("type") == "tool_result"]


def tool_names(request: dict[str, Any]) -> list[str]:
    return [t["name"] for t in request.get("tools", [])]
