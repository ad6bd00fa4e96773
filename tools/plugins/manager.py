"""Every configured MCP server, by name: the config read once, one ServerConnection
each (nothing starts until first use), their status, and shutdown of them all."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from store.config import Settings
from tools.plugins import config
from tools.plugins.elicit import Elicitations
from tools.plugins.server import PluginFailure, ServerConnection

log = logging.getLogger("dispatch.plugins")


class PluginManager:
    def __init__(
        self,
        settings: Settings,
        *,
        on_up: Callable[[ServerConnection], None] | None = None,
        report: Callable[[str, bool], None] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.report = report
        self.elicitations = Elicitations()
        self.specs, self.problems = config.load(settings.mcp_config)
        for problem in self.problems:  # a bad entry is skipped, said once, and the others work
            log.error("plugin config: %s", problem)
            if report:
                report(f"Plugin config: {problem}", False)
        self.servers: dict[str, ServerConnection] = {
            name: ServerConnection(
                spec, timeout=settings.mcp_timeout, log_dir=settings.home / "logs", start_timeout=start_timeout,
                elicitation=self.elicitations.callback_for(name), on_up=on_up, report=report,
            )
            for name, spec in self.specs.items()
        }

    def get(self, name: str) -> ServerConnection | None:
        return self.servers.get(name)

    async def start_all(self, names: list[str] | None = None) -> dict[str, str]:
        """Start these servers (all by default) together; {name: why it failed}."""
        chosen = [self.servers[n] for n in (names if names is not None else list(self.servers)) if n in self.servers]
        results = await asyncio.gather(*(c.ensure() for c in chosen), return_exceptions=True)
        failed = {}
        for conn, result in zip(chosen, results):
            if isinstance(result, BaseException):
                failed[conn.name] = str(result) if isinstance(result, PluginFailure) else conn.failure_text()
        return failed

    def accepts_policy_key(self, key: str) -> bool:
        """Whether `key` names a plugin (`mcp:NAME`) or one of its tools (`mcp__NAME__TOOL`),
        started or not: for /policy and `dispatch policy`."""
        return any(key == f"mcp:{n}" or key.startswith(f"mcp__{n}__") for n in self.servers)

    def settings_lines(self, policies: dict[str, str]) -> list[str]:
        """For /settings: each plugin, its transport, its policy and its state."""
        return [f"{name} ({c.spec.transport}): policy {policies.get(f'mcp:{name}', 'default')} · {c.status().split(': ', 1)[1]}"
                for name, c in sorted(self.servers.items())]

    def status_lines(self) -> list[str]:
        """For /status and doctor: one line per plugin, and each config problem."""
        return [c.status() for c in self.servers.values()] + [f"config: {p}" for p in self.problems]

    async def close(self) -> None:
        """Stop every server; no child process is left behind."""
        await asyncio.gather(*(c.close() for c in self.servers.values()), return_exceptions=True)
