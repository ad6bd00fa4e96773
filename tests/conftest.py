"""Shared fixtures: a loopback fake of the Messages API, settings in a temp home,
a real Core with a recording front end, a tool context over one allowed folder, the
fake Telegram and Slack servers with a running Dispatch on them, and a guard that
fails any test that tries to reach beyond this machine."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import socket
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_asyncio

from agent.channel import Card
from agent.core import Core
from store.config import Settings
from store.db import Store
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import files_settings
from tools.registry import Effect, ToolContext, ToolError, tool
from tools.catalogue import default_registry

MODEL = "claude-sonnet-4-6"


# No test reaches the network ------------------------------------------------------

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = host == "localhost"
        if not ok:
            raise RuntimeError(f"test tried to reach the network: {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    for var in list(os.environ):  # and none picks up the owner's own settings or chat tokens
        if (var.startswith(("DISPATCH_", "ANTHROPIC_", "SLACK_", "TELEGRAM_")) or var == "DATABASE_URL") \
                and var != "DISPATCH_REQUIRE_SYSTEM_TESTS":  # CI's switch must survive into the tests
            monkeypatch.delenv(var, raising=False)
    warnings.filterwarnings("ignore", message=".*deprecated and will reach end-of-life.*")


# System packages ------------------------------------------------------------------


def require_system(binary: str, package: str) -> str:
    """Skip when a Debian package is missing, unless CI demands the system tests."""
    path = shutil.which(binary)
    if path:
        return path
    reason = f"{binary} not found (apt-get install {package})"
    if os.environ.get("DISPATCH_REQUIRE_SYSTEM_TESTS") == "1":
        pytest.fail(reason + " and DISPATCH_REQUIRE_SYSTEM_TESTS=1")
    pytest.skip(reason)


# The fake model and settings ------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(server: Any) -> AsyncIterator[Any]:
    """A loopback fake server (model, Bot API, Slack), started and stopped."""
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def fake() -> Any:
    async with serving(FakeAnthropic()) as server:
        yield server


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir()
    return root


def make_settings(tmp_path: Path, base_url: str, roots: Path | None = None, **extra: Any) -> Settings:
    values: dict[str, Any] = dict(
        ANTHROPIC_API_KEY="sk-ant-test-secret-key",
        ANTHROPIC_BASE_URL=base_url,
        DISPATCH_MODEL=MODEL,
        DISPATCH_HOME=str(tmp_path / "home"),
        DISPATCH_ROOTS=str(roots) if roots else "",
        DISPATCH_MODEL_RETRIES=1,
        DISPATCH_MODEL_TIMEOUT=5.0,
        DISPATCH_TIMEZONE="Europe/Berlin",
        DISPATCH_OWNER_NAME="Sam",
    )
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, fake: FakeAnthropic, roots: Path) -> Settings:
    return make_settings(tmp_path, fake.url, roots)


# Tools called directly: one allowed folder and a context over it --------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "Documents"
    r.mkdir()
    return r


@pytest.fixture
def ctx(tmp_path: Path, root: Path) -> Any:
    settings = files_settings(tmp_path, root)
    store = Store(settings.db_url)
    yield ToolContext(settings, store, task_id=1, origin="console:local")
    store.close()


# A send-effect tool that records what it was asked to send ----------------------

SENT: list[dict[str, Any]] = []


def _preview(args: dict[str, Any]) -> str:
    return f"To: {args['to']}\n\n{args['text']}"


@tool(connector="notes", effect=Effect.SEND, preview=_preview, edit_field="text")
async def send_note(to: str, text: str) -> str:
    """Send a short note to someone.

    Args:
        to: The recipient's address.
        text: What the note says.
    """
    if to == "fail@example.com":
        raise ToolError("the note service refused the recipient")
    SENT.append({"to": to, "text": text})
    return f"note sent to {to}"


def build_test_registry() -> Any:
    reg = default_registry()
    reg.add(send_note)
    return reg


@pytest.fixture
def sent() -> list[dict[str, Any]]:
    SENT.clear()
    return SENT


# A front end that records what the core says ------------------------------------


class RecordingChannel:
    platform = "console"

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.progress_lines: list[tuple[int, str, bool]] = []
        self.cards: list[Card] = []
        self.updates: list[Card] = []
        self.files: list[Path] = []

    async def send_text(self, origin: str, text: str) -> None:
        self.texts.append(text)

    async def send_file(self, origin: str, path: Path, caption: str = "") -> str:
        self.files.append(path)
        return "sent"

    async def progress(self, origin: str, task_id: int, text: str, *, done: bool = False) -> None:
        self.progress_lines.append((task_id, text, done))

    async def show_card(self, origin: str, card: Card) -> dict[str, Any]:
        self.cards.append(card)
        return {"card": len(self.cards)}

    async def update_card(self, ref: dict[str, Any], card: Card) -> None:
        self.updates.append(card)

    def default_origin(self) -> str | None:
        return "console:local"


async def make_core(settings: Settings, *, start: bool = True) -> tuple[Core, RecordingChannel]:
    core = Core(settings, registry=build_test_registry())
    channel = RecordingChannel()
    core.attach(channel)
    if start:
        await core.start()
    return core, channel


async def close_core(core: Core) -> None:
    await core.stop()
    await core.model.aclose()
    core.store.close()


@pytest_asyncio.fixture
async def core(settings: Settings, sent: list[dict[str, Any]]) -> Any:
    c, ch = await make_core(settings)
    c.channel = ch  # type: ignore[attr-defined]
    yield c
    await close_core(c)


async def until(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Wait for `cond()` to be truthy (the worker runs in the background)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        value = cond()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def task_state(store: Store, task_id: int) -> str:
    from store.models import Task

    with store.session() as s:
        row = s.get(Task, task_id)
        return row.state if row else ""


# Chat front ends: the fake Telegram and Slack servers, and Dispatch running on them ----

TG_OWNER = 1001  # the owner's Telegram user id


@pytest_asyncio.fixture
async def tg_fake() -> Any:
    async with serving(FakeTelegram()) as server:
        yield server


@pytest_asyncio.fixture
async def sl_fake() -> Any:
    async with serving(FakeSlack()) as server:
        yield server


def telegram_values(tg_fake: FakeTelegram, owner: int | None = TG_OWNER) -> dict[str, Any]:
    """The settings that point Dispatch at the fake Bot API (owner None: nobody paired)."""
    values: dict[str, Any] = {"TELEGRAM_BOT_TOKEN": tg_fake.token, "TELEGRAM_API_URL": tg_fake.url}
    if owner is not None:
        values["DISPATCH_TELEGRAM_OWNERS"] = str(owner)
    return values


def slack_values(sl_fake: FakeSlack) -> dict[str, Any]:
    """The settings that point Dispatch at the fake Slack (no owner, no user token)."""
    return {"SLACK_BOT_TOKEN": sl_fake.bot_token, "SLACK_APP_TOKEN": sl_fake.app_token,
            "SLACK_API_URL": sl_fake.api_url}


class Bot:
    """One running Dispatch: the core and its front end (and maybe Telegram beside Slack),
    as `dispatch run` starts them."""

    def __init__(self, core: Core, front: Any, tg: Any = None) -> None:
        self.core, self.front, self.tg = core, front, tg

    async def stop(self) -> None:
        await self.core.stop()
        await self.front.stop()
        if self.tg is not None:
            await self.tg.stop()
        await self.core.model.aclose()
        self.core.store.close()


async def start_telegram_bot(settings: Settings, **options: Any) -> Bot:
    from bot.telegram.app import TelegramFrontEnd

    core = Core(settings, registry=build_test_registry())
    front = TelegramFrontEnd(core, poll_timeout=1, **options)
    front.channel.progress_every = 0.05
    await front.start()
    await core.start()
    return Bot(core, front)
