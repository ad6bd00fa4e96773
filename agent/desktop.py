"""The owner's switches for the desktop itself: computer control on/off, keep-awake
on/off, and a screenshot on demand. Every front end (Telegram, the terminal, Slack)
calls these and shows the sentence they return, so the wording is the same
everywhere and the decisions live in one place.

Computer control is the `computer` connector's policy in the gate, nothing else:
`/computer on` sets it to `auto`, `/computer off` to `off`. Why auto and not ask:
an approval per click would be unusable (a task is dozens of actions, and an
approved click lands on a screen that has changed since — so the gate treats a
control tool under `ask` as off). Instead it runs only while the owner has it
on, every action is in the audit log, and `off` (or /cancel) stops it at once,
even in the middle of typing: the tool asks the gate again between steps.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agent import gate
from tools.desktop import screen
from tools.registry import ToolError

if TYPE_CHECKING:
    from agent.core import Core

CONNECTOR = "computer"
KEEP_SCREENSHOTS = 30  # /screenshot files kept in DISPATCH_HOME/screenshots


def computer_on(core: "Core") -> bool:
    tool = core.registry.get(CONNECTOR)
    if tool is None:
        return False
    return gate.decide(tool, gate.current_policies(core.store, core.settings.policy_overrides)) != "off"


async def computer_status(core: "Core") -> str:
    if core.registry.get(CONNECTOR) is None:
        return "Computer control is not available in this Dispatch."
    state = ("ON — the agent may use the screen, mouse and keyboard; every action is in /log. "
             "/computer off stops it at once.") if computer_on(core) else \
        "off — the agent can't touch the screen, mouse or keyboard. /computer on to allow it."
    return f"Computer control is {state}\n{await display_line(core)}"


async def display_line(core: "Core") -> str:
    problem = screen.display_problem()
    if problem:
        return f"Display: none. {problem}"
    try:
        g = await asyncio.to_thread(screen.geometry, core.settings)
    except ToolError as exc:
        return f"Display: not usable. {exc}"
    shown = "" if g.scale == 1 else f", shown to the model as {g.shown_width}x{g.shown_height}"
    return f"Display: {g.width}x{g.height}{shown}."


async def set_computer(core: "Core", on: bool) -> str:
    gate.set_policy(core.store, CONNECTOR, "auto" if on else "off")
    if not on:
        return ("Computer control is off. Anything it was doing stops now; the agent can't use the screen, "
                "mouse or keyboard until you turn it on again.")
    lines = ["Computer control is ON: the agent may use this desktop's screen, mouse and keyboard when a task "
             "needs an app without another way in. Every action is in /log; /computer off or /cancel stops it "
             "at once.", await display_line(core)]
    if screen.display_problem():
        lines.append("Until there is a display, the agent is not offered the computer tool.")
    return "\n".join(lines)


async def computer_command(core: "Core", arg: str) -> str:
    """`/computer`, `/computer on`, `/computer off`."""
    word = arg.strip().lower()
    if word in ("on", "yes", "enable", "true"):
        return await set_computer(core, True)
    if word in ("off", "no", "disable", "false", "stop"):
        return await set_computer(core, False)
    if word:
        return "Usage: /computer on | off (no argument: show the state)"
    return await computer_status(core)


async def awake_command(core: "Core", arg: str) -> str:
    """`/awake`, `/awake on`, `/awake off` — the status is what wakepy reports, never the wish."""
    word = arg.strip().lower()
    if word in ("on", "yes", "enable", "true"):
        return (await core.awake.set(True)).text()
    if word in ("off", "no", "disable", "false"):
        return (await core.awake.set(False)).text()
    if word:
        return "Usage: /awake on | off (no argument: show the state)"
    return (await core.awake.apply()).text()


async def screenshot(core: "Core", origin: str) -> Path:
    """The whole screen at its real size, saved as a PNG for the owner's phone. The
    owner asking to see their own screen is not computer control, so it works
    whatever the computer policy is. Raises ToolError with the reason."""
    image, _ = await asyncio.to_thread(screen.grab, core.settings, None, full=True)
    folder = core.settings.home / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"screen-{datetime.now():%Y%m%d-%H%M%S-%f}.png"
    await asyncio.to_thread(path.write_bytes, screen.png_bytes(image))
    for old in sorted(folder.glob("screen-*.png"))[:-KEEP_SCREENSHOTS]:
        old.unlink(missing_ok=True)
    core.store.log("control", f"screenshot ({image.width}x{image.height}) taken for {origin}", path=str(path))
    return path
