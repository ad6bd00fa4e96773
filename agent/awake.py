"""Keep-awake: while it is on, wakepy's `keep.running()` mode is held so the desktop
does not fall asleep (and out of reach) while the owner is away.

The owner turns it on and off from chat (`/awake on|off`, or the button in
/settings), which wins over `DISPATCH_KEEP_AWAKE` (default on: an always-on
desktop is the point of Dispatch). What the status says is what wakepy
reports — `Mode.active` and `Mode.active_method` — never what was asked for:
where no method works (a headless Linux box without a D-Bus session bus, a
service started outside the desktop session) the status says plainly that
nothing is keeping the machine awake, why, and what to do instead. While it is
wanted but not active it is retried every few minutes, since a service started
at login may come up before the desktop session's bus does; each distinct reason
is logged once, not at every retry.

wakepy modes must be entered and exited on the same thread, and activation may
block on D-Bus, so both happen on one dedicated worker thread.

Tests (and anyone trying this out) can set WAKEPY_FAKE_SUCCESS=1: wakepy then
"succeeds" with its WakepyFakeSuccess method, and the status names that method
and says it is simulated.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from store.config import Settings
from store.db import Store

log = logging.getLogger("dispatch.awake")

SETTING_KEY = "keep_awake"
RETRY_S = 300.0
FAKE_METHOD = "WakepyFakeSuccess"


@dataclass
class AwakeStatus:
    wanted: bool
    active: bool
    method: str = ""
    reason: str = ""  # why it is not active, with what to do

    @property
    def simulated(self) -> bool:
        return self.method == FAKE_METHOD

    def text(self) -> str:
        if not self.wanted:
            return ("Keep-awake is off: this computer may sleep as usual, and Dispatch can't be reached "
                    "while it sleeps. /awake on to keep it awake.")
        if self.active and self.simulated:
            return (f"Keep-awake is active (method: {self.method}) — simulated by WAKEPY_FAKE_SUCCESS; "
                    "nothing real is keeping this computer awake.")
        if self.active:
            return (f"Keep-awake is on and active: this computer is kept from sleeping (method: {self.method}). "
                    "The screen may still turn off or lock.")
        return ("Keep-awake is on but NOT active: nothing is keeping this computer awake. "
                + (self.reason or "No keep-awake method worked."))

    def line(self) -> str:
        """One short line for the start of `dispatch run`; `dispatch doctor` and /awake give the details."""
        if not self.wanted:
            return "Keep-awake is off."
        if self.active:
            return f"Keep-awake is active ({self.method})."
        return "Keep-awake can't work here, so this computer may sleep (`dispatch doctor` says why and what to do)."


class KeepAwake:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._pool: ThreadPoolExecutor | None = None
        self._mode: Any = None
        self._status = AwakeStatus(wanted=self.wanted(), active=False, reason="Not started yet.")
        self._retry: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._logged_reason = ""  # the failure last written to the log: a retry that fails alike stays quiet

    def wanted(self) -> bool:
        stored = self.store.get_setting(SETTING_KEY)
        return bool(getattr(self.settings, "keep_awake", True)) if stored is None else bool(stored)

    def status(self) -> AwakeStatus:
        return self._status

    async def start(self) -> AwakeStatus:
        return await self.apply()

    async def set(self, on: bool) -> AwakeStatus:
        """The owner's choice from chat; kept in the store, logged, applied now."""
        self.store.set_setting(SETTING_KEY, on)
        self.store.log("policy", f"keep-awake set to {'on' if on else 'off'}", key=SETTING_KEY, value=on)
        return await self.apply()

    async def apply(self) -> AwakeStatus:
        """Hold or release the mode to match what is wanted."""
        async with self._lock:
            wanted = self.wanted()
            if wanted and self._mode is None:
                self._status = await self._run(_activate)
                self._log_outcome("")
            elif not wanted and self._mode is not None:
                await self._run(_release)
                self._status = AwakeStatus(wanted=False, active=False)
            else:
                self._status.wanted = wanted
            if wanted and not self._status.active:
                self._ensure_retry()
            return self._status

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
            self._retry = None
        async with self._lock:
            if self._mode is not None:
                await self._run(_release)
                self._status = AwakeStatus(wanted=self.wanted(), active=False, reason="Dispatch stopped.")
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _ensure_retry(self) -> None:
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(self._retry_later(), name="keep-awake-retry")

    async def _retry_later(self) -> None:
        while self.wanted() and not self._status.active:
            await asyncio.sleep(RETRY_S)
            async with self._lock:
                if self._mode is None and self.wanted():
                    self._status = await self._run(_activate)
                    self._log_outcome(" after a retry")

    def _log_outcome(self, when: str) -> None:
        if self._status.active:
            log.info("keep-awake active%s (%s)", when, self._status.method)
            self._logged_reason = ""
        elif self._status.reason != self._logged_reason:
            log.warning("keep-awake not active: %s", self._status.reason)
            self._logged_reason = self._status.reason

    async def _run(self, fn: Any) -> Any:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keep-awake")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self)


def _activate(self: KeepAwake) -> AwakeStatus:
    """On the keep-awake thread: enter keep.running(); keep it only if it is really active."""
    try:
        from wakepy import keep

        mode = keep.running(on_fail="pass")
        mode.__enter__()
    except Exception as exc:  # wakepy missing or broken: say so, never crash Dispatch
        return AwakeStatus(True, False, reason=f"wakepy could not be used ({type(exc).__name__}: {exc}).")
    if mode.active and mode.active_method is not None:
        self._mode = mode
        return AwakeStatus(True, True, method=mode.active_method.name)
    reason = explain_failure(mode.result)
    mode.__exit__(None, None, None)
    return AwakeStatus(True, False, reason=reason)


def _release(self: KeepAwake) -> None:
    mode, self._mode = self._mode, None
    if mode is not None:
        try:
            mode.__exit__(None, None, None)
        except Exception:
            log.exception("releasing keep-awake failed")


def explain_failure(result: Any) -> str:
    """Why wakepy found no working method, and what the owner can do instead."""
    tried = []
    try:
        for r in result.list_methods(ignore_platform_fails=True, ignore_unused=True):
            if r.success is False:
                tried.append(f"{r.method_name}: {_first_sentence(r.failure_reason).rstrip('!.')}")
    except Exception:
        pass
    head = ("Tried " + "; ".join(tried) + ".") if tried else "wakepy has no keep-awake method for this system."
    if sys.platform.startswith("linux"):
        if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            fix = ("There is no D-Bus session bus here (DBUS_SESSION_BUS_ADDRESS is not set): this is a headless "
                   "machine, or Dispatch runs outside the desktop session. Run it from the desktop session (the "
                   "systemd user service does, once you are logged in), or turn sleep off system-wide: "
                   "`sudo systemctl mask sleep.target suspend.target hibernate.target hybrid-sleep.target`.")
        else:
            fix = ("No desktop power manager accepted the request (GNOME, KDE and XFCE do). Turn automatic "
                   "suspend off in the system settings, or with "
                   "`sudo systemctl mask sleep.target suspend.target hibernate.target hybrid-sleep.target`.")
    elif sys.platform == "darwin":
        fix = "Check that /usr/bin/caffeinate exists, or turn sleep off in System Settings -> Energy/Battery."
    else:
        fix = "Turn automatic sleep off in the system's power settings."
    return f"{head} {fix}"


def _first_sentence(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    if "failed with message:" in text:  # wakepy's D-Bus errors: the useful part comes last
        text = text.split("failed with message:", 1)[1].strip()
    for mark in ("! ", ". "):
        if mark in text:
            text = text.split(mark, 1)[0] + mark.strip()
            break
    return text if len(text) <= limit else text[: limit - 1] + "…"
