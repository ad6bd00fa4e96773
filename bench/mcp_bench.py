"""Plugin benchmark: the real Core (default tools) with `tools.mcp.install`, the real
`anthropic` client against the loopback fake Messages API, and real MCP servers
(tests/mcp_servers.py, the SDK's MCPServer) over stdio. Run: `python -m bench.mcp_bench`.

1. First request of a task (target <= 2,500 tokens with 3 servers and 60+ tools): tools +
   system of a one-turn task's first request, chars/4 of compact JSON (the fake's estimate;
   anthropic 2.x has no local tokenizer), with 0, 1 and 3 servers configured, once with no
   connector set up and once with mail and Slack configured too. Also the request after
   `find_tools` loaded the matches for one plugin, and the same with the mail and Slack
   tools deferred too (the on-demand loading applied to our own connectors; not the default).
2. Tool call to result through a stdio server (framework share): 300 calls of a read-only
   tool after 20 warm-ups. "Dispatch" is `Tool.call` on the registry tool (argument check
   against the JSON schema, ServerConnection, the SDK, the server process, rendering);
   "SDK + server" is the SDK's `Client.call_tool` on the same connection. The framework's
   share is the difference of the medians.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from bench.core_bench import Channel, compact_chars, run_task
from agent.core import Core
from tests.conftest import _guarded_connect, make_settings
from tests.fakes.anthropic_api import FakeAnthropic
from tools import mcp

REPO = Path(__file__).resolve().parent.parent
SCRIPT = str(REPO / "tests" / "mcp_servers.py")
TARGET = 2500
CONNECTORS = dict(EMAIL_ADDRESS="sam@example.com", EMAIL_PASSWORD="app-password", SLACK_BOT_TOKEN="xoxb-1",
                  SLACK_APP_TOKEN="xapp-1")


def entry(kind: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": [SCRIPT, kind]}


SETUPS = {
    0: {},
    1: {"notes": entry("notes")},
    3: {"notes": entry("notes"), "alpha": entry("many:alpha"), "beta": entry("many:beta")},
}


def tokens(request: dict[str, Any]) -> tuple[int, int]:
    tools = request.get("tools", [])
    return (compact_chars(tools) + compact_chars(request["system"])) // 4, len(tools)


async def first_request(tmp: Path, servers: dict[str, Any], extra: dict[str, Any],
                        defer: bool = False) -> tuple[int, int, int, int, int]:
    fake = FakeAnthropic()
    await fake.start()
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "mcp.json"
    config.write_text(json.dumps({"mcpServers": servers}))
    core, channel = Core(make_settings(tmp, fake.url, None, DISPATCH_MCP_CONFIG=str(config), **extra)), Channel()
    core.attach(channel)
    # defer: the same on-demand loading for our own connectors, found through find_tools too.
    manager = mcp.install(core.registry, core.settings, core.store,
                          defer_connectors=("email", "slack") if defer else ())
    await core.start()
    try:
        if servers or defer:
            fake.reply(tool_uses=[("find_tools", {"query": "notes"})])
        fake.reply("Hello Sam!")
        await run_task(core, channel, "Hi, are you there?")
        listed = sum(len(c.tools) for c in manager.servers.values())
        base, count = tokens(fake.requests[0])
        after, after_count = tokens(fake.requests[1]) if servers or defer else (base, count)
        return base, count, listed, after, after_count
    finally:
        await manager.close()
        await core.stop()
        await core.model.aclose()
        core.store.close()
        await fake.stop()


async def fig_prompt(tmp: Path) -> list[str]:
    rows = []
    print("1. First request (tools + system, ~tokens = chars/4):")
    for label, extra, defer in (("no connector", {}, False), ("mail + Slack", CONNECTORS, False),
                                ("mail + Slack deferred", CONNECTORS, True)):
        for n, servers in SETUPS.items():
            base, count, listed, after, after_count = await first_request(
                tmp / f"{label[:2].strip()}{n}{defer}", servers, extra, defer)
            ok = base <= TARGET
            note = f"; after find_tools('notes'): ~{after:,} tokens, {after_count} tools" if servers else ""
            print(f"   {label:21s} {n} server(s), {listed:3d} plugin tools listed: ~{base:,} tokens, {count} tools "
                  f"offered{note}  {'ok' if ok else 'over ' + str(TARGET)}")
            if n == 3:
                rows.append(f"first request, 3 servers ({listed} tools), {label}: ~{base:,} tokens "
                            f"(target <= {TARGET:,}) {'ok' if ok else 'MISS'}")
    return rows


async def fig_call(tmp: Path) -> list[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    settings = make_settings(tmp, "http://127.0.0.1:9", None, DISPATCH_MCP_CONFIG=str(tmp / "mcp.json"))
    (tmp / "mcp.json").write_text(json.dumps({"mcpServers": {"notes": entry("notes")}}))
    from tools.registry import Registry

    registry = Registry()
    manager = mcp.install(registry, settings)
    try:
        conn = manager.servers["notes"]
        started = time.perf_counter()
        client = await conn.ensure()
        start_ms = (time.perf_counter() - started) * 1000
        tool = registry.get("mcp__notes__read_note")
        assert tool is not None

        async def ours() -> None:
            await tool.call(None, {"name": "budget"})  # type: ignore[arg-type]

        async def raw() -> None:
            await client.call_tool("read_note", {"name": "budget"})

        timings: dict[str, list[float]] = {"ours": [], "raw": []}
        for i in range(320):  # interleaved, so both see the same machine load
            for label, fn in (("ours", ours), ("raw", raw)):
                t0 = time.perf_counter()
                await fn()
                if i >= 20:
                    timings[label].append((time.perf_counter() - t0) * 1000)
    finally:
        await manager.close()
    ours_p50, raw_p50 = statistics.median(timings["ours"]), statistics.median(timings["raw"])
    share = ours_p50 - raw_p50
    print(f"2. Tool call -> result through a stdio server (300 calls): server start {start_ms:.0f} ms (first use);\n"
          f"   Dispatch p50 {ours_p50:.2f} ms, SDK + server p50 {raw_p50:.2f} ms -> framework share "
          f"{share:.2f} ms ({share / ours_p50 * 100:.0f}%)")
    return [f"tool call via stdio p50 {ours_p50:.2f} ms, framework share {share:.2f} ms"]


async def main() -> None:
    for var in list(os.environ):
        if var.startswith(("DISPATCH_", "ANTHROPIC_", "SLACK_", "EMAIL_")) or var == "DATABASE_URL":
            del os.environ[var]
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]  # loopback only
    print(f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; fake Messages API and MCP servers local")
    with tempfile.TemporaryDirectory(prefix="dispatch-mcp-bench-") as tmp:
        rows = await fig_prompt(Path(tmp) / "prompt")
        rows += await fig_call(Path(tmp) / "call")
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
