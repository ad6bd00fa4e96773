"""One MCP server's life: started on first use, restarted with back-off after a crash,
stopped for good on close (a stdio server's whole process tree goes with it).

Each connection lives in its own asyncio task: the SDK's `Client` is an anyio context
whose task group must be entered and left in one task. A supervisor task starts those
attempts, waits at most `start_timeout` for one to come up, and decides what happens
when one ends: a server that was up and went away is restarted (at once, then 1, 2, 4 ...
60 s apart, at most MAX_RESTARTS failed restarts in a row); a server that never came up is `failed`, reported once,
and left alone for RETRY_FAILED_S before the next use tries again.

A crash while idle is noticed on the next call (the SDK answers "Connection closed").
Only a call that cannot have changed anything (a read-only tool, listing, reading a
resource) is retried after the restart; any other call that lost its server ends with
an outcome the owner must check, never a second attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tools.plugins.config import ConfigError, ServerSpec

if TYPE_CHECKING:  # the SDK (~20 MB, ~0.5 s) is imported when a plugin first starts, not with Dispatch
    from mcp import Client
    from mcp_types import CallToolResult

log = logging.getLogger("dispatch.plugins")

MAX_RESTARTS = 5
RETRY_FAILED_S = 300.0
MAX_LISTED_TOOLS = 500  # a server listing more is cut here (pages are followed until then)
MAX_SCHEMA_CHARS = 8_000  # a tool whose input schema is larger would bloat every request: not offered


class PluginFailure(Exception):
    """A plugin call that did not give a result. `unknown`: it may have had its effect
    (the server went away or stopped answering mid-call), so it must not be re-run."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


@dataclass(frozen=True)
class ListedTool:
    """A tool as the server listed it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool
    destructive: bool  # declared destructive (explicitly): at least "ask", whatever the policy


def leaves(exc: BaseException) -> list[BaseException]:
    """The real errors inside (nested) exception groups, which the SDK's task groups raise."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in leaves(e)]
    return [exc]


def explain(exc: BaseException) -> tuple[str, str]:
    """(kind, text) of an error from the SDK: kind is timeout, closed or error."""
    import anyio
    import httpx2
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

    found = leaves(exc)
    for e in found:
        if isinstance(e, MCPError) and e.error.code == REQUEST_TIMEOUT or isinstance(e, TimeoutError):
            return "timeout", str(e)
    for e in found:
        if isinstance(e, httpx2.TransportError):
            return "closed", f"could not reach it ({type(e).__name__}: {e})"[:300]
    for e in found:
        if isinstance(e, MCPError) and e.error.code == CONNECTION_CLOSED or isinstance(
                e, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, ConnectionError)):
            return "closed", "the server closed the connection"
    e = found[0]
    if isinstance(e, MCPError):
        return "error", e.error.message
    return "error", f"{type(e).__name__}: {e}"[:500]


class ServerConnection:
    def __init__(
        self,
        spec: ServerSpec,
        *,
        timeout: float,
        log_dir: Path,
        start_timeout: float = 30.0,
        elicitation: Any = None,  # an SDK ElicitationFnT, or None (the client then declines to offer it)
        on_up: Callable[["ServerConnection"], None] | None = None,
        report: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.log_dir = log_dir
        self.elicitation = elicitation
        self.on_up = on_up
        self.report = report
        self.state = "idle"  # idle | starting | up | restarting | failed | closed
        self.error = ""
        self.tools: list[ListedTool] = []
        self.has_resources = False
        self.starts = 0
        self._client: Client | None = None
        self._down = asyncio.Event()
        self._closed = asyncio.Event()
        self._attempt_over = asyncio.Event()  # replaced after each start attempt (see _pulse)
        self._supervisor: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._reported = ""

    # Starting and waiting -----------------------------------------------------------

    async def ensure(self) -> Client:
        """The connected client, starting the server if need be."""
        if self.state == "up" and self._client is not None:
            return self._client
        if self.state == "closed":
            raise PluginFailure(f"The plugin {self.name} is shut down.")
        if self.state == "failed" and time.monotonic() < self._retry_at:
            raise PluginFailure(self.failure_text())
        wait = self._retry_at - time.monotonic()
        if self.state == "restarting" and wait > 2:  # in back-off: say so rather than make the task wait
            raise PluginFailure(f"The plugin {self.name} stopped ({self.error}); it is restarted in {wait:.0f} s.")
        if self._supervisor is None or self._supervisor.done():
            self.state = "starting"
            self._supervisor = asyncio.create_task(self._supervise(), name=f"mcp-{self.name}")
        attempt_over = self._attempt_over  # a caller waits for one start attempt, never a whole back-off chain
        try:
            await asyncio.wait_for(attempt_over.wait(), self.start_timeout + 5)
        except asyncio.TimeoutError:
            raise PluginFailure(f"The plugin {self.name} is still starting; try again in a minute.") from None
        if self.state == "up" and self._client is not None:
            return self._client
        if self.state == "restarting":
            raise PluginFailure(f"The plugin {self.name} stopped ({self.error}); it is being restarted.")
        raise PluginFailure(self.failure_text())

    def failure_text(self) -> str:
        return f"The plugin {self.name} could not start: {self.error or 'no reason given'}."

    async def _supervise(self) -> None:
        failures, was_up = 0, False
        while self.state != "closed":
            up = asyncio.Event()
            self._down = asyncio.Event()
            attempt = asyncio.create_task(self._connect(up), name=f"mcp-{self.name}-connection")
            waiter = asyncio.create_task(up.wait())
            await asyncio.wait({attempt, waiter}, timeout=self.start_timeout, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if up.is_set():
                failures, was_up = 0, True
                self.state, self.error = "up", ""
                if self.on_up:
                    self.on_up(self)
                self._pulse()
                await asyncio.wait({attempt})
                self._client = None
                error = self._ended(attempt) or "the server stopped"
            else:
                if not attempt.done():
                    attempt.cancel()
                    error = f"it did not finish starting within {self.start_timeout:g} s"
                else:
                    error = self._ended(attempt) or "it stopped while starting"
                await asyncio.gather(attempt, return_exceptions=True)
            if self.state == "closed":
                return
            failures += 1
            self.error = error + self._stderr_tail()
            if not was_up or failures > MAX_RESTARTS:
                self._fail()
                self._pulse()
                return
            self.state = "restarting"
            # The first restart is at once (a call may be waiting for it); then 1, 2, 4 ... 60 s.
            delay = 0.0 if failures == 1 else min(60.0, 2.0 ** (failures - 2))
            self._retry_at = time.monotonic() + delay
            if failures > 1:  # a restart that failed: whoever waited for it hears so now
                self._pulse()
            log.warning("plugin %s stopped (%s); restarting in %g s", self.name, self.error, delay)
            try:
                await asyncio.wait_for(self._closed.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def _pulse(self) -> None:
        """A start attempt is over (up, failed, or failed and backing off): wake its waiters."""
        self._attempt_over.set()
        self._attempt_over = asyncio.Event()

    def _ended(self, attempt: asyncio.Task[None]) -> str:
        if attempt.cancelled():
            return ""
        exc = attempt.exception()
        return explain(exc)[1] if exc else ""

    def _fail(self) -> None:
        self.state = "failed"
        self._retry_at = time.monotonic() + RETRY_FAILED_S
        if self.error != self._reported:  # reported once, not at every use
            self._reported = self.error
            log.error("plugin %s: %s", self.name, self.failure_text())
            if self.report:
                self.report(self.failure_text(), False)

    async def _connect(self, up: asyncio.Event) -> None:
        """One connection, from start to end, in one task (the SDK's contexts need that)."""
        from mcp import Client
        from mcp_types import Implementation

        async with AsyncExitStack() as stack:
            client = Client(self._transport(stack), elicitation_callback=self.elicitation,
                            read_timeout_seconds=self.timeout, cache=None,
                            client_info=Implementation(name="dispatch", version="0.1"))
            await stack.enter_async_context(client)
            tools: list[ListedTool] = []
            cursor: str | None = None
            while len(tools) < MAX_LISTED_TOOLS:
                page = await client.list_tools(cursor=cursor)
                for t in page.tools:
                    size = len(json.dumps(t.input_schema or {}, ensure_ascii=False))
                    if size > MAX_SCHEMA_CHARS:
                        log.warning("plugin %s: tool %s not offered: its input schema is %d characters",
                                    self.name, t.name[:80], size)
                        continue
                    tools.append(_listed(t))
                cursor = page.next_cursor
                if not cursor:
                    break
            self.tools = tools[:MAX_LISTED_TOOLS]
            self.has_resources = client.server_capabilities.resources is not None
            self._client = client
            self.starts += 1
            up.set()
            await self._down.wait()

    def _transport(self, stack: AsyncExitStack) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        spec = self.spec.resolved()
        if spec.url:
            http = create_mcp_http_client(headers=spec.headers or None)
            stack.push_async_callback(http.aclose)
            return streamable_http_client(spec.url, http_client=http)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The server's stderr goes to its own log file, not our terminal; its tail explains a failed start.
        errlog = stack.enter_context(open(self._stderr_path(), "a", encoding="utf-8"))
        params = StdioServerParameters(command=spec.command, args=list(spec.args), env=spec.env or None,
                                       cwd=spec.cwd or None)
        from mcp.client.stdio import stdio_client

        return stdio_client(params, errlog=errlog)

    def _stderr_path(self) -> Path:
        return self.log_dir / f"mcp-{self.name}.log"

    def _stderr_tail(self) -> str:
        if self.spec.url:
            return ""
        try:
            lines = [ln.strip() for ln in self._stderr_path().read_text(encoding="utf-8", errors="replace").splitlines()]
        except OSError:
            return ""
        last = next((ln for ln in reversed(lines) if ln), "")
        return f" (its last message: {last[:200]})" if last else ""

    # Calls ------------------------------------------------------------------------------

    async def call_tool(self, name: str, args: dict[str, Any], *, may_change: bool) -> CallToolResult:
        """Call a tool. A read-only one is retried once on a restarted server; any other
        call that lost its server or timed out raises PluginFailure(unknown=True)."""
        for attempt in (1, 2):
            client = await self.ensure()
            try:
                return await client.call_tool(name, args, read_timeout_seconds=self.timeout)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                kind, text = explain(exc)
                if kind == "timeout":
                    raise PluginFailure(
                        f"The plugin {self.name} did not answer {name} within {self.timeout:g} s, so the call "
                        f"was stopped (timed out). Try again later or with a smaller request.", unknown=may_change
                    ) from None
                if kind == "closed":
                    self.mark_down()
                    if not may_change and attempt == 1:
                        continue
                    raise PluginFailure(f"The plugin {self.name} stopped during {name}; it is being restarted.",
                                        unknown=may_change) from None
                raise PluginFailure(f"The plugin {self.name} refused {name}: {text}") from None
        raise AssertionError("unreachable")

    async def request(self, what: str, fn: Callable[[Client], Any]) -> Any:
        """A request that changes nothing (listing, reading a resource): retried once after a restart."""
        import anyio

        for attempt in (1, 2):
            client = await self.ensure()
            try:
                with anyio.fail_after(self.timeout):
                    return await fn(client)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                kind, text = explain(exc)
                if kind == "closed" and attempt == 1:
                    self.mark_down()
                    continue
                if kind == "timeout":
                    raise PluginFailure(f"The plugin {self.name} did not answer ({what}) within {self.timeout:g} s "
                                        "(timed out).") from None
                raise PluginFailure(f"The plugin {self.name} could not {what}: {text}") from None
        raise AssertionError("unreachable")

    def mark_down(self) -> None:
        """The connection is gone: end it, so the supervisor restarts the server."""
        if self.state == "up":
            self.state = "restarting"
            self._client = None
        self._down.set()

    async def close(self) -> None:
        """Stop the server for good (SIGTERM, then SIGKILL to its whole process tree)."""
        self.state = "closed"
        self._closed.set()
        self._pulse()
        self._down.set()
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._supervisor), 10)
            except (asyncio.TimeoutError, Exception):
                self._supervisor.cancel()
                await asyncio.gather(self._supervisor, return_exceptions=True)
        self._client = None

    def status(self) -> str:
        """One line for /status and doctor."""
        if self.state == "up":
            return f"{self.name}: running, {len(self.tools)} tools"
        if self.state == "failed":
            return f"{self.name}: {self.failure_text()}"
        return f"{self.name}: {'not started yet (starts on first use)' if self.state == 'idle' else self.state}"


def _listed(t: Any) -> ListedTool:
    hints = t.annotations
    read_only = bool(hints and hints.read_only_hint is True)
    destructive = bool(hints and hints.destructive_hint is True and not read_only)
    return ListedTool(name=t.name, description=(t.description or t.title or "").strip(),
                      input_schema=dict(t.input_schema or {"type": "object"}), read_only=read_only,
                      destructive=destructive)


__all__ = ["ConfigError", "ListedTool", "PluginFailure", "ServerConnection", "explain"]
