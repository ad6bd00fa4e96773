"""Computer control on a real X server (Xvfb, started here on a free display) with a
real xterm: the scripted model takes a screenshot, clicks into the window and types,
and the text arrives. Plus: off by default, stopped at once by /computer off or
/cancel mid-action, a plain error without a display, /screenshot to the phone."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from agent import context, desktop, gate
from agent.channel import Inbound
from store.db import estimate_tokens
from tests.conftest import (
    make_settings,
    require_system,
    start_telegram_bot,
    task_state,
    telegram_values,
    until,
)
from tools import computer
from tools.desktop import screen
from tools.registry import ToolContext, ToolError
from tools.catalogue import default_registry

SCREEN = (1600, 1000)  # scaled to 1280x800 for the model: factor 0.8
XTERM_AT = (200, 150)


def _purge_gui_modules() -> None:
    """pyautogui binds the display at import; the next X server needs a fresh import."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("pyautogui", "mouseinfo", "pyscreeze", "pymsgbox")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def xdisplay(tmp_path_factory: pytest.TempPathFactory) -> Any:
    xvfb = require_system("Xvfb", "xvfb")
    require_system("xterm", "xterm")
    require_system("xdotool", "xdotool")
    proc, number = _start_xvfb(xvfb)
    auth = tmp_path_factory.mktemp("x11") / "Xauthority"
    auth.touch()  # python-xlib wants the file to exist; Xvfb runs without access control
    mp = pytest.MonkeyPatch()
    mp.setenv("DISPLAY", f":{number}")
    mp.setenv("XAUTHORITY", str(auth))
    _purge_gui_modules()
    yield f":{number}"
    mp.undo()
    proc.terminate()
    proc.wait(10)
    _purge_gui_modules()
    screen._size_cache.clear()


def _start_xvfb(xvfb: str) -> tuple[subprocess.Popen, str]:
    """Xvfb on the first free display number from :90 (another X server, or a parallel
    test run, may hold the lower ones); ready once its socket accepts connections."""
    for n in range(90, 190):
        if Path(f"/tmp/.X11-unix/X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists():
            continue
        proc = subprocess.Popen([xvfb, f":{n}", "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp",
                                 "-noreset"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(f"/tmp/.X11-unix/X{n}")
                    return proc, str(n)
                except OSError:
                    time.sleep(0.05)
        proc.kill()
        proc.wait()
    pytest.fail("could not start Xvfb on any display from :90 to :189")


@pytest.fixture
def xterm(xdisplay: str, tmp_path: Path) -> Any:
    """An xterm whose keyboard input goes to a file (echo off, so only typed text arrives)."""
    out = tmp_path / "typed.txt"
    proc = subprocess.Popen(["xterm", "-geometry", f"80x10+{XTERM_AT[0]}+{XTERM_AT[1]}", "-e", "sh", "-c",
                             f"stty -echo; exec cat > '{out}'"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--class", "xterm",
                            "getwindowgeometry", "--shell"], capture_output=True, text=True, timeout=30)
    info = dict(line.split("=", 1) for line in found.stdout.split() if "=" in line)
    if "X" not in info:
        proc.kill()
        pytest.fail(f"the xterm did not appear on {xdisplay}: {found.stdout!r} {found.stderr!r}")
    yield out, (int(info["X"]), int(info["Y"]), int(info["WIDTH"]), int(info["HEIGHT"]))
    proc.terminate()
    proc.wait(10)


def mouse() -> tuple[int, int]:
    out = subprocess.run(["xdotool", "getmouselocation", "--shell"], capture_output=True, text=True).stdout
    info = dict(line.split("=", 1) for line in out.split() if "=" in line)
    return int(info["X"]), int(info["Y"])


def decode(block: dict) -> Image.Image:
    assert block["type"] == "image" and block["source"]["media_type"] == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(block["source"]["data"])))


def result_of(request: dict) -> dict:
    return request["messages"][-1]["content"][0]


async def run_task(core: Any, text: str, timeout: float = 20) -> int:
    task = await core.submit(Inbound(text, "console:local"))
    await until(lambda: task_state(core.store, task.id) in ("done", "failed", "cancelled"), timeout=timeout,
                what="the task")
    return task.id


async def test_screenshot_click_into_an_xterm_and_type(core, fake, xterm):
    out, (x, y, w, h) = xterm
    await desktop.set_computer(core, True)
    target = (round((x + w / 2) * 0.8), round((y + h / 2) * 0.8))  # the window's middle, in screenshot pixels
    fake.reply("Looking.", tool_uses=[("computer", {"action": "screenshot"})])
    fake.reply(tool_uses=[("computer", {"action": "left_click", "coordinate": list(target)})])
    fake.reply(tool_uses=[("computer", {"action": "type", "text": "Hello from Dispatch!\n"})])
    fake.reply("Typed it into the terminal.")
    task_id = await run_task(core, "type a greeting into the terminal window")
    assert task_state(core.store, task_id) == "done"

    # The model was offered Anthropic's computer tool for its model, at the scaled size, with the beta header.
    first = fake.requests[0]
    tool_def = next(t for t in first["tools"] if t.get("name") == "computer")
    assert tool_def == {"type": "computer_20251124", "name": "computer", "display_width_px": 1280,
                        "display_height_px": 800, "enable_zoom": True}
    assert fake.headers[0]["anthropic-beta"] == "computer-use-2025-11-24"

    # It saw the screen, scaled down, with the xterm (white) where it is.
    shot = decode(result_of(fake.requests[1])["content"][0])
    assert shot.size == (1280, 800)
    assert min(shot.convert("RGB").getpixel(target)) > 200
    # The click landed at the mapped-back point on the real screen...
    mx, my = mouse()
    assert abs(mx - round(target[0] / 0.8)) <= 1 and abs(my - round(target[1] / 0.8)) <= 1
    clicked = result_of(fake.requests[2])["content"]
    assert clicked[0]["text"] == f"Left click at ({target[0]}, {target[1]})." and clicked[1]["type"] == "image"
    # ...and the typed text arrived in the window.
    await until(lambda: out.exists() and out.read_text() == "Hello from Dispatch!\n", what="the typed text")
    # Every action is in the audit log.
    audit = [a.summary for a in reversed(core.store.recent_actions(20, kinds=("control",)))]
    assert [a.split(":")[0] for a in audit] == ["computer screenshot", "computer left_click", "computer type"]


async def test_computer_off_stops_typing_midway(core, fake, xterm):
    await desktop.set_computer(core, True)
    fake.reply(tool_uses=[("computer", {"action": "type", "text": "x" * 400})])
    fake.reply("It was stopped.")
    task = await core.submit(Inbound("type a lot", "console:local"))
    await until(lambda: core.store.recent_actions(1, kinds=("tool",)) or len(fake.requests) >= 1)
    await asyncio.sleep(0.6)  # mid-typing
    said = await desktop.set_computer(core, False)
    assert "Anything it was doing stops now" in said
    await until(lambda: task_state(core.store, task.id) == "done", timeout=5, what="the stop")
    result = result_of(fake.requests[1])
    assert result["is_error"] and "computer control was turned off by the owner" in result["content"]
    typed = int(result["content"].split("Stopped after typing ")[1].split(" ")[0])
    assert 0 < typed < 400
    assert "computer" not in [t.get("name") for t in fake.requests[1]["tools"]]  # no longer offered
    assert not core.store.recent_actions(1, kinds=("control",))[0].ok


async def test_cancel_stops_an_action_at_once(core, fake, xdisplay):
    await desktop.set_computer(core, True)
    fake.reply(tool_uses=[("computer", {"action": "wait", "duration": 20})])
    task = await core.submit(Inbound("wait a while", "console:local"))
    await until(lambda: core.status().running is not None and len(fake.requests) >= 1)
    await asyncio.sleep(0.3)
    started = asyncio.get_running_loop().time()
    assert await core.cancel() == f"Cancelled task #{task.id}."
    assert asyncio.get_running_loop().time() - started < 2
    assert task_state(core.store, task.id) == "cancelled"
    await until(lambda: [a for a in core.store.recent_actions(5, kinds=("control",)) if "stopped" in a.summary],
                what="the worker thread to stop")
    assert "the task was cancelled" in core.store.recent_actions(1, kinds=("control",))[0].summary


async def test_screenshot_from_telegram(tmp_path, fake, roots, xdisplay, tg_fake):
    b = await start_telegram_bot(make_settings(tmp_path, fake.url, roots, **telegram_values(tg_fake)))
    core = b.core
    try:
        tg_fake.send_message("/screenshot")
        await tg_fake.wait_for_call("sendDocument", timeout=10)
        upload = tg_fake.uploads[-1]
        assert upload.file_name.endswith(".png")
        assert Image.open(io.BytesIO(upload.content)).size == SCREEN  # the real size, for the owner
        tg_fake.send_message("/computer on")
        await tg_fake.wait_for_call("sendMessage", where=lambda c: "Computer control is ON" in c.params.get("text", ""))
        assert "Display: 1600x1000, shown to the model as 1280x800." in tg_fake.calls_to("sendMessage")[-1].params["text"]
        assert desktop.computer_on(core)
        tg_fake.send_message("/computer off")
        await tg_fake.wait_for_call("sendMessage", where=lambda c: "Computer control is off" in c.params.get("text", ""))
        assert not desktop.computer_on(core)
    finally:
        await b.stop()


# Without a display, and the pieces ---------------------------------------------------


async def test_no_display_is_a_plain_error_and_the_tool_is_not_offered(settings, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    from store.db import Store

    store = Store(settings.db_url)
    try:
        reg = default_registry()
        offered = [t["name"] for t in context.offered_tools(reg, {"computer": "auto"}, settings)]
        assert "computer" not in offered  # nothing to control: not offered
        with pytest.raises(ToolError, match=r"no display: \$DISPLAY is not set"):
            await reg.get("computer").call(ToolContext(settings, store), {"action": "screenshot"})
        assert "$DISPLAY is not set" in store.recent_actions(1, kinds=("control",))[0].summary
    finally:
        store.close()


def test_off_by_default_and_ask_means_off(settings, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":4242")  # "has a display" (the size falls back to the configured one)
    reg = default_registry()
    t = reg.get("computer")
    assert gate.decide(t, {}) == "off" and gate.decide(t, {"computer": "ask"}) == "off"
    assert "computer" not in [d.get("name") for d in context.offered_tools(reg, {}, settings)]
    defs = context._offered(reg, {"computer": "auto"}, settings)
    native = [(d, b) for d, b in defs if d.get("name") == "computer"]
    assert native == [({"type": "computer_20251124", "name": "computer", "display_width_px": 1280,
                        "display_height_px": 800, "enable_zoom": True}, ("computer-use-2025-11-24",))]


@pytest.mark.parametrize("model,version", [
    ("claude-sonnet-4-6", ("computer_20251124", "computer-use-2025-11-24")),
    ("claude-opus-4-5-20251101", ("computer_20251124", "computer-use-2025-11-24")),
    ("claude-sonnet-4-5-20250929", ("computer_20250124", "computer-use-2025-01-24")),
    ("claude-haiku-4-5", ("computer_20250124", "computer-use-2025-01-24")),
    ("claude-opus-4-1-20250805", ("computer_20250124", "computer-use-2025-01-24")),
    ("claude-sonnet-4-20250514", ("computer_20250124", "computer-use-2025-01-24")),
    ("claude-3-5-sonnet-20241022", ("computer_20241022", "computer-use-2024-10-22")),
    ("claude-future-9", ("computer_20251124", "computer-use-2025-11-24")),
])
def test_tool_version_matches_the_model(tmp_path, model, version):
    s = make_settings(tmp_path, "http://127.0.0.1:9", DISPATCH_MODEL=model)
    assert computer.tool_version(s) == version
    forced = make_settings(tmp_path, "http://127.0.0.1:9", DISPATCH_MODEL=model, DISPATCH_COMPUTER_TOOL="computer_20250124")
    assert computer.tool_version(forced) == ("computer_20250124", "computer-use-2025-01-24")


def test_coordinates_scale_both_ways():
    g = screen.Geometry(0, 0, 2560, 1440, *screen.fit(2560, 1440, (1280, 800)))
    assert (g.shown_width, g.shown_height) == (1280, 720)
    assert g.to_screen(640, 360) == (1280, 720) and g.to_shown(1280, 720) == (640, 360)
    assert g.to_screen(1279, 719) == (2558, 1438)
    with pytest.raises(ToolError, match="outside the screen"):
        g.to_screen(1280, 10)
    small = screen.Geometry(100, 0, 1024, 768, *screen.fit(1024, 768, (1280, 800)))
    assert small.scale == 1 and small.to_screen(10, 10) == (110, 10)  # never upscaled; monitor offset kept


def test_old_screenshots_leave_the_context_a_few_at_a_time():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 200_000}}
    messages = []
    for i in range(7):
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "computer",
                                                           "input": {"action": "screenshot"}}]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}",
                                                      "content": [image]}]})
    originals = [m["content"][0] for m in messages if m["role"] == "user"]
    context.thin_images(messages)
    kinds = [m["content"][0]["content"][0]["type"] for m in messages if m["role"] == "user"]
    assert kinds == ["text"] * 3 + ["image"] * 4  # 3 dropped at once; the newest stay
    assert all(o["content"][0] is image for o in originals)  # shared blocks untouched
    assert 1_600 <= estimate_tokens([image]) < 1_700  # an image counts as what it costs, not its base64


def test_a_busy_screen_goes_as_jpeg():
    import random

    rnd = random.Random(7)
    noisy = Image.frombytes("RGB", (640, 400), bytes(rnd.getrandbits(8) for _ in range(640 * 400 * 3)))
    assert screen.image_block(noisy)["source"]["media_type"] == "image/jpeg"
    plain = Image.new("RGB", (1280, 800), "white")
    assert screen.image_block(plain)["source"]["media_type"] == "image/png"
