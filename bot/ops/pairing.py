"""Pairing the phone during `dispatch init`: a one-time code, and the chat app running
until the owner sends it.

The code comes from agent.owners (the same as `dispatch pair`). For `/pair CODE` to
be answered, something must be listening: when no Dispatch runs for this data
folder, the configured front ends are started here (as `dispatch run` does, without
the terminal) and stopped again once an owner exists; when one runs, it redeems the
code and this only watches the store. The wait ends when an owner exists, at the
timeout, or — at a terminal — when the owner presses Enter to skip.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from agent import owners
from store.config import Settings
from store.db import Store
from store.models import utcnow

POLL_S = 0.3


def platforms(settings: Settings) -> list[str]:
    return [p for p, on in (("telegram", settings.telegram_token), ("slack", settings.slack_token)) if on]


def paired(store: Store, settings: Settings) -> list[str]:
    allow = {"telegram": settings.telegram_owners, "slack": getattr(settings, "slack_owners", frozenset())}
    return [p for p in platforms(settings) if owners.owners(store, p) or allow[p]]


async def pair_now(settings: Settings, interactive: bool, timeout: float) -> bool:
    """True when an owner exists at the end."""
    if not platforms(settings):
        return False
    settings.home.mkdir(parents=True, exist_ok=True)
    store = Store(settings.db_url)
    try:
        if done := paired(store, settings):
            print(f"\n4. Your phone: already paired on {', '.join(done)}.", flush=True)
            return True
        code, expires = owners.new_pairing_code(store)
        minutes = max(1, round(min(timeout, (expires - utcnow()).total_seconds()) / 60))
        print(f"\n4. Pair your phone. Pairing code: {code}", flush=True)
        if settings.telegram_token:
            print(f"   In Telegram, open your bot and send:   /pair {code}", flush=True)
        if settings.slack_token:
            print(f"   In Slack, open the Dispatch app's Messages tab and send:   pair {code}", flush=True)
        print(f"   Waiting up to {minutes} min" + (" (Enter to skip)…" if interactive else "…"), flush=True)
        listening = await _start_listening(settings)
        try:
            ok = await _wait(store, settings, interactive, timeout)
        finally:
            await _stop_listening(listening)
    finally:
        store.close()
    if ok:
        print("   ✓ Paired: Dispatch answers you there now.", flush=True)
    else:
        print("   Not paired yet. Later: start Dispatch and run `dispatch pair`.", flush=True)
    return ok


async def _wait(store: Store, settings: Settings, interactive: bool, timeout: float) -> bool:
    skip = asyncio.Event()
    loop = asyncio.get_running_loop()
    watching = False
    if interactive:
        try:
            loop.add_reader(sys.stdin.fileno(), lambda: (sys.stdin.readline(), skip.set()))
            watching = True
        except (NotImplementedError, ValueError, OSError):  # Windows' loop has no add_reader
            pass
    try:
        deadline = loop.time() + timeout
        while loop.time() < deadline and not skip.is_set():
            if paired(store, settings):
                return True
            try:
                await asyncio.wait_for(skip.wait(), POLL_S)
            except asyncio.TimeoutError:
                pass
        return bool(paired(store, settings))
    finally:
        if watching:
            loop.remove_reader(sys.stdin.fileno())


def _held_elsewhere(home: Path) -> Any:
    """The instance lock, taken here (returned, to be released), or None when a Dispatch runs."""
    try:
        import fcntl
    except ImportError:
        return open(home / "dispatch.lock", "a+")
    fh = open(home / "dispatch.lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


async def _start_listening(settings: Settings) -> dict[str, Any]:
    lock = _held_elsewhere(settings.home)
    if lock is None:  # a running Dispatch answers /pair itself
        return {}
    from bot.ops.cli import _setup_logging  # what the front ends log goes to dispatch.log, not here
    from agent.core import Core

    _setup_logging(settings)
    core = Core(settings)
    fronts: list[Any] = []
    state: dict[str, Any] = {"lock": lock, "core": core, "fronts": fronts}
    try:
        if settings.telegram_token:
            from bot.telegram.app import TelegramFrontEnd

            fronts.append(TelegramFrontEnd(core))
            await fronts[-1].start()
        if settings.slack_token:
            from bot.slack.app import SlackFrontEnd

            fronts.append(SlackFrontEnd(core))
            await fronts[-1].start()
        await core.start()
    except BaseException:
        await _stop_listening(state)
        raise
    return state


async def _stop_listening(state: dict[str, Any]) -> None:
    if not state:
        return
    core = state["core"]
    try:
        await core.stop()
        for front in reversed(state["fronts"]):
            await front.stop()
        await core.model.aclose()
        core.store.close()
    finally:
        state["lock"].close()
