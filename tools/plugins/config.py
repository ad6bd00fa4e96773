"""The plugin config: MCP servers in the format Claude Desktop and Claude Code use.

    {"mcpServers": {
        "notes":  {"command": "npx", "args": ["-y", "some-server"], "env": {"TOKEN": "..."}},
        "github": {"url": "https://host/mcp", "headers": {"Authorization": "Bearer ${GH_TOKEN}"}}}}

so an owner can paste an existing file. A `"type"` of "stdio", "http" or
"streamable-http" is accepted and checked against the fields; "sse" (the transport the
spec retired) is refused with a clear reason. `${VAR}` in a value is read from the
environment when the server starts, so a token can stay out of the file. The file may
hold secrets (env values, headers): it is written with mode 0600 and values are never
printed (`describe` shows names only).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """The config file cannot be used as it is; the message says what to fix."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def describe(self) -> str:
        """One line for the owner, with no secret in it (env and header names only)."""
        if self.url:
            text = f"{self.url}"
            if self.headers:
                text += f" (headers: {', '.join(sorted(self.headers))})"
            return text
        text = " ".join([self.command, *self.args])
        if self.env:
            text += f" (env: {', '.join(sorted(self.env))})"
        return text

    def resolved(self) -> "ServerSpec":
        """The spec with ${VAR} filled in from the environment (a missing one is an error)."""
        def fill(value: str) -> str:
            def one(m: re.Match[str]) -> str:
                if m.group(1) not in os.environ:
                    raise ConfigError(f"plugin {self.name}: ${{{m.group(1)}}} is not set in the environment")
                return os.environ[m.group(1)]
            return _VAR_RE.sub(one, value)

        return ServerSpec(
            name=self.name, command=fill(self.command), args=tuple(fill(a) for a in self.args),
            env={k: fill(v) for k, v in self.env.items()}, cwd=fill(self.cwd), url=fill(self.url),
            headers={k: fill(v) for k, v in self.headers.items()},
        )

    def to_json(self) -> dict[str, Any]:
        if self.url:
            out: dict[str, Any] = {"url": self.url}
            if self.headers:
                out["headers"] = dict(self.headers)
            return out
        out = {"command": self.command, "args": list(self.args)}
        if self.env:
            out["env"] = dict(self.env)
        if self.cwd:
            out["cwd"] = self.cwd
        return out


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"{what} must be an object of strings")
    return dict(value)


def parse_server(name: str, entry: Any) -> ServerSpec:
    """One `mcpServers` entry, checked."""
    if not NAME_RE.match(name):
        raise ConfigError(f"plugin name {name!r}: use letters, digits, - and _ (at most 32, starting with a letter or digit)")
    if not isinstance(entry, dict):
        raise ConfigError(f"plugin {name}: expected an object with \"command\" or \"url\"")
    kind = entry.get("type", "")
    if kind == "sse":
        raise ConfigError(f"plugin {name}: the SSE transport is not supported; use the server's streamable HTTP URL")
    if kind not in ("", "stdio", "http", "streamable-http", "streamableHttp"):
        raise ConfigError(f"plugin {name}: unknown type {kind!r} (stdio or http)")
    url, command = entry.get("url"), entry.get("command")
    if bool(url) == bool(command):
        raise ConfigError(f"plugin {name}: give either \"command\" (a program to start) or \"url\" (an HTTP server)")
    if url:
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "${")):
            raise ConfigError(f"plugin {name}: url must start with http:// or https://")
        return ServerSpec(name=name, url=url, headers=_strings(entry.get("headers"), f"plugin {name}: headers"))
    args = entry.get("args") or []
    if not isinstance(command, str) or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"plugin {name}: command must be a string and args a list of strings")
    cwd = entry.get("cwd") or ""
    if not isinstance(cwd, str):
        raise ConfigError(f"plugin {name}: cwd must be a string")
    return ServerSpec(name=name, command=command, args=tuple(args), env=_strings(entry.get("env"), f"plugin {name}: env"),
                      cwd=cwd)


def load(path: Path) -> tuple[dict[str, ServerSpec], list[str]]:
    """The servers in the file, and a problem line for each entry that cannot be used
    (a bad entry does not stop the others). No file means no plugins."""
    if not path.is_file():
        return {}, []
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as exc:
        return {}, [f"{path}: not valid JSON ({exc})"]
    servers = data.get("mcpServers", {}) if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        return {}, [f"{path}: expected {{\"mcpServers\": {{...}}}}"]
    specs, problems = {}, []
    for name, entry in servers.items():
        try:
            specs[name] = parse_server(name, entry)
        except ConfigError as exc:
            problems.append(str(exc))
    return specs, problems


def _read_raw(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"mcpServers": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix it by hand first") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {{\"mcpServers\": {{...}}}}")
    data.setdefault("mcpServers", {})
    return data


def _write_raw(path: Path, data: dict[str, Any]) -> None:
    """Atomically, mode 0600 (the file may hold tokens); other top-level keys are kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, path)


def add(path: Path, spec: ServerSpec, *, replace: bool = False) -> None:
    data = _read_raw(path)
    if spec.name in data["mcpServers"] and not replace:
        raise ConfigError(f"there is already a plugin called {spec.name}; remove it first")
    data["mcpServers"][spec.name] = spec.to_json()
    _write_raw(path, data)


def remove(path: Path, name: str) -> bool:
    data = _read_raw(path)
    if name not in data["mcpServers"]:
        return False
    del data["mcpServers"][name]
    _write_raw(path, data)
    return True
