"""The control channel: how the one-shot commands reach the running Dispatch.

One running Dispatch owns the thread. `dispatch approve|reject|edit|pending|show|
policy|ask` connect to it over a Unix domain socket (DISPATCH_HOME/control.sock,
mode 0600, and the peer's uid is checked) and the running process acts: its front
ends redraw every card at once, and a revision or an `ask` runs there. When nothing
answers on the socket, the command acts on the store itself (`local`).

The protocol is JSON lines. The client sends one request
    {"op": "approve", "args": {"n": 3}, "by": "cli:sam"}
and reads events until the last:
    {"type": "text" | "card" | "progress", "text": "..."}
    {"type": "end", "ok": true, "text": "..."}
`run_op` is the one place that turns a request into calls on the core's API — the
server and the local fallback both use it, so the two behave the same.

Windows has no peer-credential check for AF_UNIX here, so there the commands act on
the store directly (the running Dispatch still redraws cards within a couple of
seconds through its sweep).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import struct
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.api import Button
from agent.cards import Card
from agent.reports import card_text
from store.models import Task

if TYPE_CHECKING:
    from agent.core import Core

log = logging.getLogger("dispatch.control")

PLATFORM = "control"
Emit = Callable[[dict[str, Any]], Awaitable[None]]
MAX_REQUEST = 1024 * 1024
TASK_POLL_S = 0.1


def socket_path(home: Path) -> Path:
    """DISPATCH_HOME/control.sock, or — when that is longer than AF_UNIX allows (~107
    bytes) — a private per-user folder keyed by the home's path."""
    path = home / "control.sock"
    if len(os.fsencode(path)) < 100:
        return path
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"dispatch-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    return base / (hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16] + ".sock")


def supported() -> bool:
    return hasattr(socket, "AF_UNIX") and sys.platform != "win32"


# The channel: what the core says to a one-shot command ------------------------------


class ControlChannel:
    """The channel protocol for `control:<n>` origins: each is one connected command
    (or, without a running Dispatch, the command's own stdout)."""

    platform = PLATFORM

    def __init__(self) -> None:
        self._emit: dict[str, Emit] = {}
        self._next = 0

    def open(self, emit: Emit) -> str:
        self._next += 1
        origin = f"{PLATFORM}:{os.getpid()}-{self._next}"
        self._emit[origin] = emit
        return origin

    def close(self, origin: str) -> None:
        self._emit.pop(origin, None)

    async def _say(self, origin: str, event: dict[str, Any]) -> bool:
        """Whether the command got it. A command that went away (Ctrl+C, a closed pipe) is
        not an error: what it started goes on, and its answer stays in the thread."""
        emit = self._emit.get(origin)
        if emit is not None:
            try:
                await emit(event)
                return True
            except (ConnectionError, OSError):
                self.close(origin)
        log.info("%s has gone: a %s for it stays in the thread only", origin, event.get("type"))
        return False

    async def send_text(self, origin: str, text: str) -> None:
        await self._say(origin, {"type": "text", "text": text})

    async def send_file(self, origin: str, path: Path, caption: str = "") -> str:
        shown = await self._say(origin, {"type": "text", "text": f"[file] {path}" + (f" — {caption}" if caption else "")})
        return f"shown to the command as {path}" if shown else f"not shown: the command had gone; it is at {path}"

    async def progress(self, origin: str, task_id: int, text: str, *, done: bool = False) -> None:
        if origin in self._emit and not done:
            await self._say(origin, {"type": "progress", "text": f"#{task_id} {text}"})

    async def show_card(self, origin: str, card: Card) -> dict[str, Any] | None:
        await self._say(origin, {"type": "card", "text": card_text(card)})
        return None  # a printed card is not redrawn

    async def update_card(self, ref: dict[str, Any], card: Card) -> None:
        return None

    def default_origin(self) -> str | None:
        return None  # a command is not a place to reach the owner later


# One request, run on the core's API ----------------------------------------------------


async def run_op(core: "Core", channel: ControlChannel, request: dict[str, Any], emit: Emit) -> None:
    op, args, by = str(request.get("op")), dict(request.get("args") or {}), str(request.get("by") or "cli")
    api = core.api

    async def end(ok: bool, text: str) -> None:
        await emit({"type": "end", "ok": ok, "text": text})

    if op == "approve":
        n = int(args["n"])
        press = await api.press(n, Button.APPROVE, by)
        if not press.won:
            await end(False, press.toast)
            return
        final = await press.sending
        await end(final.state == "sent", f"Draft #{n} approved and {core.sent_words(final)}.")
    elif op == "reject":
        reply = await api.reject(int(args["n"]), by, str(args.get("reason") or ""))
        await end(reply.ok, reply.text)
    elif op == "edit":
        reply = await api.edit(int(args["n"]), by, str(args["text"]))
        await end(reply.ok, reply.text)
    elif op == "pending":
        await emit({"type": "text", "text": api.pending_text()})
        for c in api.pending():
            await emit({"type": "card", "text": "\n" + card_text(c)})
        await end(True, "")
    elif op == "show":
        card = api.card(int(args["n"]))
        await end(card is not None, card_text(card) if card else f"There is no draft #{args['n']}.")
    elif op == "policy":
        await end(True, api.policy_command(str(args.get("setting") or "")))
    elif op == "ask":
        await _ask(core, channel, str(args.get("text") or ""), bool(args.get("wait", True)), emit, end)
    else:
        await end(False, f"Unknown request {op!r}.")


async def _ask(core: "Core", channel: ControlChannel, text: str, wait: bool, emit: Emit,
               end: Callable[[bool, str], Awaitable[None]]) -> None:
    if not text.strip():
        await end(False, "Nothing to ask.")
        return
    origin = channel.open(emit)
    try:
        task = await core.api.submit(text, origin)
        if task is None:  # refused (the budget): the reason was sent as text
            await end(False, "The task was not started.")
            return
        if not wait:
            await end(True, f"Queued as task #{task.id}.")
            return
        state = await wait_task(core, task.id or 0)
        await end(state == "done", f"Task #{task.id} {state}.")
    finally:
        channel.close(origin)


async def wait_task(core: "Core", task_id: int) -> str:
    """Until the task has ended (done, failed, cancelled, interrupted); its state."""
    while True:
        with core.store.session() as s:
            row = s.get(Task, task_id)
            state = row.state if row else "gone"
        if state not in ("queued", "running") and core.running_id != task_id:
            return state  # ended, and its last words have gone out
        await asyncio.sleep(TASK_POLL_S)


# The server (in the running Dispatch) ----------------------------------------------------


class ControlServer:
    def __init__(self, core: "Core") -> None:
        self.core = core
        self.path = socket_path(core.settings.home)
        self.channel = ControlChannel()
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        if not supported():
            log.info("no Unix sockets here: one-shot commands act on the store directly")
            return
        self.core.attach(self.channel)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a Dispatch that crashed (the instance lock says none runs)
        old = os.umask(0o177)  # the socket is born 0600: no window in which others may connect
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for client in list(self._clients):
                client.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        if me is not None:
            self._clients.add(me)
        try:
            if not _same_user(writer):
                self.core.store.log("refusal", "control socket: a connection from another user", ok=False)
                return
            line = await reader.readline()
            request = json.loads(line or b"{}")

            async def emit(event: dict[str, Any]) -> None:
                writer.write(json.dumps(event, ensure_ascii=False).encode() + b"\n")
                await writer.drain()

            await run_op(self.core, self.channel, request, emit)
        except (ValueError, KeyError, TypeError) as exc:
            with contextlib.suppress(Exception):
                writer.write(json.dumps({"type": "end", "ok": False, "text": f"Bad request: {exc}"}).encode() + b"\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the command went away (Ctrl+C); what it started goes on
        except asyncio.CancelledError:
            # Dispatch is stopping (stop() cancels the clients); the command is told by the
            # closed connection. Not re-raised: Python 3.11's stream server asks a finished
            # handler task for its exception, which raises, with a traceback in the log, for
            # a cancelled one.
            pass
        except Exception:
            log.exception("control request failed")
        finally:
            if me is not None:
                self._clients.discard(me)
            with contextlib.suppress(Exception):
                writer.close()


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True  # the socket file's 0600 mode is the guard
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


# The client (a one-shot command) ---------------------------------------------------------


async def request(home: Path, op: str, args: dict[str, Any], by: str, on_event: Emit) -> dict[str, Any] | None:
    """Send one request to the running Dispatch and hand each event to `on_event`;
    the final event, or None when no Dispatch is running here."""
    if not supported():
        return None
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path(home)), limit=MAX_REQUEST)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    try:
        writer.write(json.dumps({"op": op, "args": args, "by": by}).encode() + b"\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return {"type": "end", "ok": False, "text": "Dispatch closed the connection (it is stopping?)."}
            event = json.loads(line)
            if event.get("type") == "end":
                return event
            await on_event(event)
    finally:
        writer.close()
