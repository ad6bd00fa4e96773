"""Computer control: Anthropic's computer-use tool, driving this desktop's mouse and
keyboard with pyautogui and seeing it through screenshots (tools.desktop.screen).

Off by default (effect `control`, whose policy is `off` until the owner turns it on
with `/computer on` or `DISPATCH_POLICY=computer=auto`); while off the model is not
even offered the tool. Decisions, and why:

- **Which tool version.** The computer tool is provider-defined: the request carries
  `{"type": "computer_YYYYMMDD", "name": "computer", "display_width_px": ...}` and a
  beta header, and the version must match the model (Anthropic's table: the newest
  models use `computer_20251124` with `computer-use-2025-11-24`; Sonnet 4.5, Haiku
  4.5, Opus 4.1 and Claude 4 use `computer_20250124` with `computer-use-2025-01-24`;
  Sonnet 3.5 used `computer_20241022`). `tool_version` picks by the model's name; an
  unknown (newer) model gets the newest version; `DISPATCH_COMPUTER_TOOL` overrides.
- **Stopping at once.** Before every action, and between the small steps a long one
  is split into (typing goes a few characters at a time, a drag in segments, a wait
  in slices), the tool asks `ctx.allowed()` — the gate, from the store — and whether
  the task was cancelled. `/computer off` or `/cancel` therefore stop it mid-action:
  held keys and buttons are released and the model is told how far it got.
- **One action at a time.** Actions from one model turn run in order under a lock;
  two clicks racing each other would land anywhere.
- **Lazy pyautogui.** `import pyautogui` connects to the X display at import time and
  crashes without one, so it is imported only when an action runs and a display
  exists; anything that goes wrong there becomes a plain ToolError.
- **A screenshot after each action** that changes the screen (after a short settle),
  as Anthropic's reference implementation does: the model sees the effect without
  spending a turn asking for it.
- **Audit.** Every action is written to the audit log (`dispatch log`, `/log`) with
  where it landed on the real screen, including actions that were stopped or failed.
  pyautogui's fail-safe stays on: whoever is at the desk can throw the mouse into a
  screen corner to stop it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable

from tools.desktop import screen
from tools.registry import Blocks, Effect, NativeSpec, ToolContext, ToolError, tool

if TYPE_CHECKING:
    from store.config import Settings

# (fragment of the model's name, tool type, beta header); the first match wins.
VERSIONS: list[tuple[str, str, str]] = [
    ("opus-4-7", "computer_20251124", "computer-use-2025-11-24"),
    ("opus-4-6", "computer_20251124", "computer-use-2025-11-24"),
    ("sonnet-4-6", "computer_20251124", "computer-use-2025-11-24"),
    ("opus-4-5", "computer_20251124", "computer-use-2025-11-24"),
    ("sonnet-4-5", "computer_20250124", "computer-use-2025-01-24"),
    ("haiku-4-5", "computer_20250124", "computer-use-2025-01-24"),
    ("opus-4-1", "computer_20250124", "computer-use-2025-01-24"),
    ("opus-4-0", "computer_20250124", "computer-use-2025-01-24"),
    ("opus-4-2025", "computer_20250124", "computer-use-2025-01-24"),
    ("sonnet-4-0", "computer_20250124", "computer-use-2025-01-24"),
    ("sonnet-4-2025", "computer_20250124", "computer-use-2025-01-24"),
    ("3-7-sonnet", "computer_20250124", "computer-use-2025-01-24"),
    ("3-5-sonnet", "computer_20241022", "computer-use-2024-10-22"),
]
NEWEST = ("computer_20251124", "computer-use-2025-11-24")

TYPE_CHUNK = 4  # characters typed between two checks of "may I go on?"
TYPE_INTERVAL_S = 0.01
SETTLE_S = 0.4  # after an action, before the screenshot that shows its effect
MAX_WAIT_S = 30.0
STEP_S = 0.05  # waits and held keys are sliced this fine, so a stop is felt at once

_SHOT_AFTER = {"left_click", "right_click", "middle_click", "double_click", "triple_click", "left_click_drag",
               "mouse_move", "left_mouse_down", "left_mouse_up", "type", "key", "hold_key", "scroll", "wait"}


def tool_version(settings: "Settings") -> tuple[str, str]:
    """(tool type, beta header) for the configured model, or DISPATCH_COMPUTER_TOOL."""
    forced = (getattr(settings, "computer_tool", "") or "").strip()
    if forced:
        m = re.fullmatch(r"computer_(\d{4})(\d{2})(\d{2})", forced)
        if not m:
            raise ValueError(f"DISPATCH_COMPUTER_TOOL={forced!r} is not a tool type like computer_20250124")
        return forced, f"computer-use-{m.group(1)}-{m.group(2)}-{m.group(3)}"
    model = settings.model.lower()
    for fragment, kind, beta in VERSIONS:
        if fragment in model:
            return kind, beta
    return NEWEST


def spec(settings: "Settings") -> NativeSpec:
    """The definition the model is offered: the version for its model, the screen's shown size."""
    kind, beta = tool_version(settings)
    width, height = screen.shown_size(settings)
    definition: dict[str, Any] = {"type": kind, "name": "computer",
                                  "display_width_px": width, "display_height_px": height}
    if kind >= "computer_20251124":
        definition["enable_zoom"] = True
    return NativeSpec(definition, (beta,))


def ready(settings: "Settings") -> bool:
    """Offered only where there is a display to control (see tools.registry.add_module)."""
    return screen.has_display()


class Stopped(ToolError):
    pass


_locks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()


def _serial() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


@tool(connector="computer", effect=Effect.CONTROL, native=spec, untrusted=True)
async def computer(
    ctx: ToolContext,
    action: str,
    coordinate: list[int] | None = None,
    start_coordinate: list[int] | None = None,
    text: str | None = None,
    scroll_direction: str | None = None,
    scroll_amount: int | None = None,
    duration: float | None = None,
    region: list[int] | None = None,
    key: str | None = None,
) -> Any:
    """Use the desktop's screen, mouse and keyboard (Anthropic's computer-use tool).

    Args:
        action: screenshot, left_click, right_click, middle_click, double_click, triple_click, mouse_move, left_click_drag, left_mouse_down, left_mouse_up, type, key, hold_key, scroll, wait, cursor_position or zoom.
        coordinate: [x, y] in screenshot pixels.
        start_coordinate: [x, y] where a drag starts.
        text: The text to type, the key(s) to press (xdotool names, e.g. ctrl+s), or modifier keys held during a click or scroll.
        scroll_direction: up, down, left or right.
        scroll_amount: How many wheel clicks to scroll.
        duration: Seconds to wait or to hold a key.
        region: [x1, y1, x2, y2] to zoom into.
        key: Alternative to text for key and hold_key.
    """
    stop = threading.Event()

    def halted() -> str | None:
        if stop.is_set():
            return "the task was cancelled"
        if ctx.allowed is not None and not ctx.allowed():
            return "computer control was turned off by the owner"
        return None

    args = dict(coordinate=coordinate, start_coordinate=start_coordinate, text=text if text is not None else key,
                scroll_direction=scroll_direction, scroll_amount=scroll_amount, duration=duration, region=region)
    async with _serial():
        worker = asyncio.ensure_future(asyncio.to_thread(_act, ctx, action, args, halted))
        worker.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even after a cancel
        try:
            return await asyncio.shield(worker)
        except asyncio.CancelledError:
            stop.set()  # the thread notices before its next step, lets go of keys and buttons
            raise


def _act(ctx: ToolContext, action: str, args: dict[str, Any], halted: Callable[[], str | None]) -> Any:
    """One action, in a worker thread: checks, does it, audits it, shows the result."""
    where = ""
    try:
        geo = screen.geometry(ctx.settings)  # ToolError when there is no display
        reason = halted()
        if reason:
            raise Stopped(f"Not done: {reason}.")
        if action in ("screenshot", "zoom"):
            region = _region(args["region"]) if action == "zoom" else None
            image, _ = screen.grab(ctx.settings, region)
            _audit(ctx, action, "screenshot taken" if action == "screenshot" else f"zoomed into {region}")
            return Blocks([screen.image_block(image)])
        gui = load_gui()
        done, where = _perform(gui, geo, action, args, halted)
    except Stopped as exc:
        _audit(ctx, action, f"stopped: {exc}", ok=False, where=where)
        raise
    except ToolError as exc:
        _audit(ctx, action, f"failed: {exc}", ok=False, where=where)
        raise
    except Exception as exc:
        name = type(exc).__name__
        message = ("Stopped by PyAutoGUI's fail-safe: the mouse is in a corner of the screen (someone at the "
                   "desk may have put it there to stop me). Move it away from the corner to go on."
                   if name == "FailSafeException" else f"The {action} action failed ({name}: {exc}).")
        _audit(ctx, action, f"failed: {message}", ok=False, where=where)
        raise ToolError(message) from None
    _audit(ctx, action, done, where=where)
    if action not in _SHOT_AFTER:
        return done
    time.sleep(SETTLE_S)
    try:
        image, _ = screen.grab(ctx.settings)
    except ToolError as exc:
        return f"{done} (No screenshot afterwards: {exc})"
    return Blocks([{"type": "text", "text": done}, screen.image_block(image)])


def _perform(gui: Any, geo: screen.Geometry, action: str, a: dict[str, Any],
             halted: Callable[[], str | None]) -> tuple[str, str]:
    """Do it; returns (what happened, where on the real screen)."""

    def point(name: str = "coordinate", required: bool = True) -> tuple[int, int] | None:
        value = a.get(name)
        if value is None:
            if required:
                raise ToolError(f"{action} needs {name} [x, y].")
            return None
        if len(value) != 2:
            raise ToolError(f"{name} must be [x, y].")
        return geo.to_screen(int(value[0]), int(value[1]))

    def check() -> None:
        reason = halted()
        if reason:
            raise Stopped(f"Stopped: {reason}.")

    if action in ("left_click", "right_click", "middle_click", "double_click", "triple_click"):
        at = point(required=False)
        button = {"right_click": "right", "middle_click": "middle"}.get(action, "left")
        clicks = {"double_click": 2, "triple_click": 3}.get(action, 1)
        mods = _keys(a["text"])[0] if a.get("text") else []
        with _held(gui, mods):
            if at is not None:
                gui.moveTo(*at)
            check()
            gui.click(button=button, clicks=clicks, interval=0.08)
        pos = at or tuple(gui.position())
        return f"{action.replace('_', ' ').capitalize()} at {_shown(geo, pos)}.", f"{pos[0]},{pos[1]}"
    if action == "mouse_move":
        at = point()
        gui.moveTo(*at)
        return f"Moved the mouse to {_shown(geo, at)}.", f"{at[0]},{at[1]}"
    if action == "left_click_drag":
        start, end = point("start_coordinate"), point()
        assert start is not None and end is not None
        gui.moveTo(*start)
        gui.mouseDown(button="left")
        try:
            for i in range(1, 11):  # in segments, so a stop is felt mid-drag
                check()
                gui.moveTo(start[0] + (end[0] - start[0]) * i // 10, start[1] + (end[1] - start[1]) * i // 10)
        finally:
            gui.mouseUp(button="left")
        return f"Dragged from {_shown(geo, start)} to {_shown(geo, end)}.", f"{start[0]},{start[1]}->{end[0]},{end[1]}"
    if action in ("left_mouse_down", "left_mouse_up"):
        at = point(required=False)
        if at is not None:
            gui.moveTo(*at)
        (gui.mouseDown if action == "left_mouse_down" else gui.mouseUp)(button="left")
        return f"Left mouse button {'pressed' if action == 'left_mouse_down' else 'released'}.", ""
    if action == "type":
        text = a.get("text")
        if not text:
            raise ToolError("type needs text.")
        typed = _type(gui, text, halted)
        return f"Typed {typed} characters.", ""
    if action == "key":
        if not a.get("text"):
            raise ToolError("key needs text, e.g. Return or ctrl+s.")
        for combo in _keys(a["text"]):
            check()
            gui.hotkey(*combo) if len(combo) > 1 else gui.press(combo[0])
        return f"Pressed {a['text']}.", ""
    if action == "hold_key":
        if not a.get("text"):
            raise ToolError("hold_key needs text (the key) and duration.")
        keys = _keys(a["text"])[0]
        with _held(gui, keys):
            _sleep(_duration(a), check)
        return f"Held {a['text']} for {_duration(a):g} s.", ""
    if action == "scroll":
        at = point(required=False)
        direction = (a.get("scroll_direction") or "down").lower()
        amount = int(a.get("scroll_amount") or 3)
        if direction not in ("up", "down", "left", "right"):
            raise ToolError("scroll_direction must be up, down, left or right.")
        if at is not None:
            gui.moveTo(*at)
        mods = _keys(a["text"])[0] if a.get("text") else []
        with _held(gui, mods):
            for _ in range(amount):
                check()
                if direction in ("up", "down"):
                    gui.scroll(1 if direction == "up" else -1)
                else:
                    gui.hscroll(1 if direction == "right" else -1)
        return f"Scrolled {direction} by {amount}.", ""
    if action == "wait":
        _sleep(_duration(a), check)
        return f"Waited {_duration(a):g} s.", ""
    if action == "cursor_position":
        x, y = gui.position()
        sx, sy = geo.to_shown(x, y)
        return f"X={sx},Y={sy}", f"{x},{y}"
    raise ToolError(f"Unknown action {action!r}.")


def _type(gui: Any, text: str, halted: Callable[[], str | None]) -> int:
    """Types a few characters at a time, asking before each piece whether to go on.
    Characters PyAutoGUI cannot type (beyond US ASCII) go through xdotool on X11."""
    typed = 0
    for i in range(0, len(text), TYPE_CHUNK):
        reason = halted()
        if reason:
            raise Stopped(f"Stopped after typing {typed} of {len(text)} characters: {reason}.")
        chunk = text[i:i + TYPE_CHUNK]
        if all(gui.isValidKey(ch) for ch in chunk):
            gui.write(chunk, interval=TYPE_INTERVAL_S)
        elif sys.platform.startswith("linux") and shutil.which("xdotool"):
            subprocess.run(["xdotool", "type", "--delay", "10", "--", chunk], check=True, timeout=30,
                           capture_output=True)
        else:
            bad = "".join(sorted({ch for ch in chunk if not gui.isValidKey(ch)}))
            raise ToolError(f"Typed {typed} of {len(text)} characters; I can't type {bad!r} on this system "
                            "(PyAutoGUI types US-ASCII only). Paste it another way, or spell it differently.")
        typed += len(chunk)
    return typed


# xdotool key names (what the model uses) -> PyAutoGUI names.
_KEY_NAMES = {
    "return": "enter", "kp_enter": "enter", "escape": "esc", "control": "ctrl", "control_l": "ctrlleft",
    "control_r": "ctrlright", "alt_l": "altleft", "alt_r": "altright", "shift_l": "shiftleft",
    "shift_r": "shiftright", "super": "win", "super_l": "winleft", "super_r": "winright", "meta": "win",
    "cmd": "command", "page_up": "pageup", "prior": "pageup", "page_down": "pagedown", "next": "pagedown",
    "print": "printscreen", "caps_lock": "capslock", "num_lock": "numlock", "menu": "apps",
    "minus": "-", "plus": "+", "equal": "=", "comma": ",", "period": ".", "slash": "/", "backslash": "\\",
    "semicolon": ";", "apostrophe": "'", "grave": "`", "bracketleft": "[", "bracketright": "]",
    "space": "space", "kp_add": "add", "kp_subtract": "subtract",
}


def _keys(text: str) -> list[list[str]]:
    """"ctrl+shift+t Return" -> [["ctrl", "shift", "t"], ["enter"]]."""
    from_names = _KEY_NAMES
    combos = []
    for combo in text.split():
        parts = ["+"] if combo == "+" else [p for p in combo.split("+") if p]
        names = []
        for p in parts:
            low = p.lower()
            name = from_names.get(low, low if len(p) > 1 else p)
            names.append(name)
        combos.append(names)
    if not combos:
        raise ToolError("No key given.")
    gui = load_gui()
    unknown = [n for combo in combos for n in combo if len(n) > 1 and not gui.isValidKey(n)]
    if unknown:
        raise ToolError(f"Unknown key name(s): {', '.join(unknown)} (use names like Return, ctrl, alt, Tab, F5).")
    return combos


class _held:
    """Keys held down for the length of a block, always released."""

    def __init__(self, gui: Any, keys: list[str]) -> None:
        self.gui, self.keys = gui, keys

    def __enter__(self) -> None:
        for k in self.keys:
            self.gui.keyDown(k)

    def __exit__(self, *exc: object) -> None:
        for k in reversed(self.keys):
            self.gui.keyUp(k)


def _duration(a: dict[str, Any]) -> float:
    d = float(a.get("duration") or 1.0)
    if not 0 <= d <= MAX_WAIT_S:
        raise ToolError(f"duration must be between 0 and {MAX_WAIT_S:g} seconds.")
    return d


def _sleep(seconds: float, check: Callable[[], None]) -> None:
    end = time.monotonic() + seconds
    while True:
        check()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(STEP_S, left))


def _region(value: list[int] | None) -> tuple[int, int, int, int]:
    if not value or len(value) != 4:
        raise ToolError("zoom needs region [x1, y1, x2, y2].")
    x1, y1, x2, y2 = (int(v) for v in value)
    if x1 == x2 or y1 == y2:
        raise ToolError("The zoom region is empty.")
    return x1, y1, x2, y2


def _shown(geo: screen.Geometry, pos: Any) -> str:
    x, y = geo.to_shown(int(pos[0]), int(pos[1]))
    return f"({x}, {y})"


_gui_lock = threading.Lock()


def load_gui() -> Any:
    """PyAutoGUI, imported on first use (it opens the display when imported)."""
    problem = screen.display_problem()
    if problem:
        raise ToolError(problem)
    with _gui_lock:
        try:
            import pyautogui
        except Exception as exc:  # Xlib/Xauthority errors, missing libraries, ...
            raise ToolError(f"Can't control the mouse and keyboard here ({type(exc).__name__}: {exc}). "
                            "On Linux the desktop session's $DISPLAY and $XAUTHORITY must reach Dispatch.") from None
        pyautogui.PAUSE = 0.02  # its default 0.1 s after every call makes typing crawl
    return pyautogui


def _audit(ctx: ToolContext, action: str, summary: str, *, ok: bool = True, where: str = "") -> None:
    try:
        ctx.store.log("control", f"computer {action}: {summary}"[:300], tool="computer", task_id=ctx.task_id,
                      ok=ok, action=action, screen_at=where)
    except Exception:  # the audit must never be why an action "failed"
        pass
