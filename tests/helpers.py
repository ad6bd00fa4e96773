"""Plain helpers shared by several test modules (the fixtures are in conftest.py):
settings for the file tools, calling a tool as the runner does, and `dispatch` run
as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from store.config import Settings
from tools.registry import ToolContext, ToolError
from tools.catalogue import default_registry

# Settings for the file tools: a home and the allowed roots, no model ----------------


def files_settings(tmp_path: Path, *roots: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "DISPATCH_HOME": str(tmp_path / "home"),
        "DISPATCH_ROOTS": os.pathsep.join(str(r) for r in roots),
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# A tool called through `Tool.call`, exactly as the runner calls it ------------------


async def call(ctx: ToolContext, name: str, /, **args: Any) -> str:
    t = default_registry().get(name)
    assert t is not None, name
    return await t.call(ctx, args)


async def refused(ctx: ToolContext, name: str, /, **args: Any) -> str:
    """What the tool says when it refuses (it must raise ToolError)."""
    with pytest.raises(ToolError) as info:
        await call(ctx, name, **args)
    return str(info.value)


# `dispatch` in a subprocess, as the owner runs it -----------------------------------

DISPATCH = [sys.executable, "-m", "bot.ops.cli"]
REPO = Path(__file__).resolve().parents[1]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISPATCH_", "ANTHROPIC_")) and k != "DATABASE_URL"}
    env.update(DISPATCH_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO), **extra)
    return env


@contextlib.asynccontextmanager
async def dispatch_run(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`dispatch run` without a terminal; killed on the way out if it is still running."""
    proc = await asyncio.create_subprocess_exec(
        *DISPATCH, "run", cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
