"""The terminal front end: `dispatch chat` talks to the same thread from the desktop.

It is a Channel like any other (the core does not know it is a terminal): text and
cards are printed, and the owner's lines are either a request or a command, each
one call on the core's API (agent.api), as on every other app —
/approve N, /reject N [reason], /edit N new text, /pending, /status, /cancel,
/log, /usage, /policy, /help, /quit.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

from agent.api import Button, CoreAPI
from agent.channel import Card
from agent.control import wait_task
from agent.core import Core
from agent.reports import card_text

ORIGIN = "console:local"
HELP = """Type a request and press Enter. Commands:
  /approve N           send draft N
  /reject N [reason]   don't send it (a reason makes me revise it)
  /edit N new text     replace the draft's text; you get a new draft to approve
  /pending             drafts waiting for you
  /status              what is running, queued, waiting
  /cancel              stop the running task
  /log                 recent actions (tools, files sent, sends, refusals)
  /usage               tokens and cost
  /policy [key value]  show or set a policy (auto, ask, off) for a connector or tool
  /awake [on|off]      keep this computer from sleeping (shows whether it really works)
  /computer [on|off]   let the agent use the screen, mouse and keyboard; off stops it at once
  /quit                leave (queued work resumes next time)"""


class ConsoleChannel:
    """Prints what the core says. `out` is any text stream (stdout in real use)."""

    platform = "console"

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._last_progress: dict[int, str] = {}

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def send_text(self, origin: str, text: str) -> None:
        self._print(f"\n{text}\n")

    async def send_file(self, origin: str, path: Path, caption: str = "") -> str:
        # The terminal is on the desktop itself: the path is the delivery.
        self._print(f"\n[file] {path}" + (f" — {caption}" if caption else ""))
        return f"shown in the terminal as {path}"

    async def progress(self, origin: str, task_id: int, text: str, *, done: bool = False) -> None:
        if done:
            self._last_progress.pop(task_id, None)
            return
        if self._last_progress.get(task_id) != text:
            self._last_progress[task_id] = text
            self._print(f"  · #{task_id} {text}")

    async def show_card(self, origin: str, card: Card) -> dict[str, Any]:
        n = card.approval_id
        self._print(card_text(card) + f"\n└ /approve {n}   ·   /reject {n} [reason]   ·   /edit {n} new text")
        return {"printed": True}

    async def update_card(self, ref: dict[str, Any], card: Card) -> None:
        self._print(f"  ▸ {card.status}")

    def default_origin(self) -> str | None:
        return ORIGIN


async def handle_line(core: Core, line: str, out: Callable[[str], None], submitted: list[int] | None = None) -> bool:
    """One line from the owner. Returns False when they want to leave."""
    api: CoreAPI = core.api
    line = line.strip()
    if not line:
        return True
    by = f"console:{_user()}"
    if not line.startswith("/"):
        task = await api.submit(line, ORIGIN)
        if task is not None and submitted is not None:
            submitted.append(task.id or 0)
        return True
    cmd, _, rest = line[1:].partition(" ")
    cmd, rest = cmd.lower(), rest.strip()
    if cmd in ("quit", "exit", "q"):
        return False
    if cmd in ("help", "h", "?"):
        out(HELP)
    elif cmd in ("approve", "reject", "edit"):
        num, _, tail = rest.partition(" ")
        if not num.lstrip("#").isdigit():
            out(f"Usage: /{cmd} N" + (" [reason]" if cmd == "reject" else " new text" if cmd == "edit" else ""))
            return True
        n = int(num.lstrip("#"))
        if cmd == "approve":
            press = await api.press(n, Button.APPROVE, by)
            out(press.toast)
            if press.sending is not None:
                await press.sending  # the card's outcome line follows
        elif cmd == "reject":
            out((await api.reject(n, by, tail)).text)
        elif not tail.strip():
            out("Usage: /edit N new text")
        else:
            out((await api.edit(n, by, tail, here=ORIGIN)).text)
    elif cmd == "pending":
        out(api.pending_text())
        for card in api.pending():
            out(card_text(card))
    elif cmd == "status":
        out(api.status())
    elif cmd == "cancel":
        out(await api.cancel())
    elif cmd == "log":
        out(api.log(30))
    elif cmd == "usage":
        out(api.usage())
    elif cmd == "policy":
        out(api.policy_command(rest))
    elif cmd == "awake":
        out(await api.awake(rest))
    elif cmd == "computer":
        out(await api.computer(rest))
    else:
        out(f"Unknown command /{cmd}. /help lists them.")
    return True


def attach(core: Core, out: TextIO | None = None) -> ConsoleChannel:
    channel = ConsoleChannel(out or sys.stdout)
    core.attach(channel)
    return channel


async def chat(core: Core, stdin: TextIO | None = None, out: TextIO | None = None) -> None:
    """Read the owner's lines until /quit or end of input (the core is already running).
    At the end of piped input, every request it made is finished before leaving."""
    out = out or sys.stdout
    interactive = (stdin or sys.stdin).isatty()
    print(f"Dispatch — talking to your thread ({core.settings.model}). /help for commands, /quit to leave.",
          file=out, flush=True)
    lines = await _line_reader(stdin or sys.stdin)
    submitted: list[int] = []
    quit_typed = False
    while True:
        line = await lines.readline()
        if not line:
            break
        if not await handle_line(core, line.decode("utf-8", "replace"), lambda t: print(t, file=out, flush=True),
                                 submitted):
            quit_typed = True
            break
    if not interactive and not quit_typed:
        for task_id in submitted:
            await wait_task(core, task_id)
    running = core.status().running
    if running is not None:
        print(f"Task #{running.id} was still running; it stops now and is reported as "
              "interrupted next time. Queued work resumes next time.", file=out, flush=True)


async def _line_reader(stream: TextIO) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
    return reader


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "owner"
