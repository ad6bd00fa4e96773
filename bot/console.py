"""The terminal front end: `dispatch chat` talks to the same thread from the desktop.

It is a Channel like any other (the core does not know it is a terminal): text and
cards are printed, and the owner's lines are either a request or a command, each
one call on the core's API (agent.api), as on every other app —
/approve N, /reject N [reason], /edit N [new text], /pending, /status, /cancel,
/log, /usage, /policy, /help, /quit.

At a terminal, answers are Markdown rendered by `rich` and cards are panels (title,
the whole preview, the question or outcome, the expiry); a multi-line paste is one
message and `/edit N` alone opens $EDITOR on the draft's text (bot.terminal). Piped
or redirected, everything is plain text and each line is its own message.
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
from bot import terminal

ORIGIN = "console:local"
HELP = """Type a request and press Enter. Commands:
  /approve N           send draft N
  /reject N [reason]   don't send it (a reason makes me revise it)
  /edit N [new text]   replace the draft's text (alone: opens $EDITOR on it); a new draft to approve
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
    """Prints what the core says. `out` is any text stream (stdout in real use); at a
    terminal through `rich`, otherwise as plain text."""

    platform = "console"

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._last_progress: dict[int, str] = {}
        self.rich = None
        if self.out.isatty():
            from rich.console import Console

            self.rich = Console(file=self.out, highlight=False)

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def send_text(self, origin: str, text: str) -> None:
        if self.rich is None:
            self._print(f"\n{text}\n")
            return
        from rich.markdown import Markdown

        self.rich.print()
        self.rich.print(Markdown(text))
        self.rich.print()

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
            if self.rich is None:
                self._print(f"  · #{task_id} {text}")
            else:
                self.rich.print(f"  · #{task_id} {text}", style="dim", markup=False)

    async def show_card(self, origin: str, card: Card) -> dict[str, Any]:
        n = card.approval_id
        if self.rich is None:
            self._print(card_text(card) + f"\n└ /approve {n}   ·   /reject {n} [reason]   ·   /edit {n} [new text]")
        else:
            self.rich.print(card_panel(card))
        return {"printed": True}

    async def update_card(self, ref: dict[str, Any], card: Card) -> None:
        if self.rich is None:
            self._print(f"  ▸ {card.status}")
        else:
            self.rich.print(f"  ▸ {card.status}", style="bold" if card.state == "sent" else "", markup=False)

    def default_origin(self) -> str | None:
        return ORIGIN


def card_panel(card: Card) -> Any:
    """A card as a `rich` panel: the title and tool on the border, the whole preview,
    then the question (with the expiry) while pending, or the outcome once decided."""
    from rich.panel import Panel
    from rich.text import Text

    n = card.approval_id
    body = Text(card.preview)
    body.append("\n\n")
    if card.pending:
        body.append(card.status, style="bold")
        if card.expires:
            body.append(f"\nexpires {card.expires} if not decided", style="dim")
        subtitle = f"/approve {n} · /reject {n} [reason]" + (f" · /edit {n}" if card.editable else "")
    else:
        body.append(card.status, style="bold")
        subtitle = None
    return Panel(body, title=Text(f"{card.title} — {card.tool}"), title_align="left",  # Text: no markup
                 subtitle=Text(subtitle) if subtitle else None,
                 subtitle_align="left", border_style="yellow" if card.pending else "dim")


async def handle_line(core: Core, line: str, out: Callable[[str], None], submitted: list[int] | None = None,
                      reader: terminal.MessageReader | None = None) -> bool:
    """One message from the owner (a line, or a whole paste). Returns False when they want to leave."""
    api: CoreAPI = core.api
    line = line.strip()
    if not line:
        return True
    by = f"console:{_user()}"
    if "\n" in line and all(ln.strip().startswith("/") for ln in line.splitlines() if ln.strip()):
        # several commands pasted at once run one after another; `/edit 3` + a pasted text stays one
        for one in line.splitlines():
            if not await handle_line(core, one, out, submitted, reader):
                return False
        return True
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
            await _edit_in_editor(api, n, by, out, reader)
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


async def _edit_in_editor(api: CoreAPI, n: int, by: str, out: Callable[[str], None],
                          reader: terminal.MessageReader | None) -> None:
    """`/edit N` alone: the draft's current text in $EDITOR; what is saved becomes the new revision."""
    press = await api.press(n, Button.EDIT, by)
    if press.ask is None:
        out(press.toast)
        return
    current = press.ask.current or ""
    if reader is None or not reader.interactive:
        out("Usage: /edit N new text (an editor opens only at a terminal)")
        return
    edited = await terminal.edit_text(current, reader)
    if edited is None:
        out(f"The editor ({' '.join(terminal.editor_command())}) did not finish; draft #{n} is unchanged. "
            "Set $EDITOR to the editor you use.")
    elif edited.strip() == current.strip() or not edited.strip():
        out(f"Unchanged: draft #{n} stays as it is.")
    else:
        out((await api.edit(n, by, edited.rstrip("\n"), here=ORIGIN)).text)


async def chat(core: Core, stdin: TextIO | None = None, out: TextIO | None = None) -> None:
    """Read the owner's messages until /quit or end of input (the core is already running).
    At the end of piped input, every request it made is finished before leaving."""
    out = out or sys.stdout
    stdin = stdin or sys.stdin
    interactive = stdin.isatty()
    print(f"Dispatch — talking to your thread ({core.settings.model}). /help for commands, /quit to leave.",
          file=out, flush=True)
    reader = await terminal.open_reader(stdin)
    submitted: list[int] = []
    quit_typed = False
    with terminal.paste_mode(stdin, out):
        while True:
            message = await reader.read()
            if message is None:
                break
            if not await handle_line(core, message, lambda t: print(t, file=out, flush=True), submitted, reader):
                quit_typed = True
                break
    if not interactive and not quit_typed:
        for task_id in submitted:
            await wait_task(core, task_id)
    running = core.status().running
    if running is not None:
        print(f"Task #{running.id} was still running; it stops now and is reported as "
              "interrupted next time. Queued work resumes next time.", file=out, flush=True)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "owner"
