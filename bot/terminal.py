"""What the terminal front end needs from the terminal itself: messages read whole
(a multi-line paste is one message), rendering with `rich`, and $EDITOR.

Reading. At a terminal, bracketed paste is switched on (`ESC[?2004h`): the terminal
wraps a paste in `ESC[200~ … ESC[201~`, and everything between the markers is one
message, however many lines it has — including a last line without a newline,
which arrives when the owner presses Enter. Terminals without bracketed paste are
covered by a short settle window: lines that arrive within SETTLE_S of each other
came from one paste (nobody types a line and presses Enter that fast). The echo of
control characters is turned off meanwhile so the markers don't show as `^[[200~`;
both are undone on exit. Piped input is not a terminal: each line is its own
message, as before (`dispatch chat < requests.txt`).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
SETTLE_S = 0.04


class MessageReader:
    """Whole messages from a stream: a line, or at a terminal a whole paste."""

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport, interactive: bool) -> None:
        self.reader, self.transport, self.interactive = reader, transport, interactive

    async def _line(self) -> str:
        return (await self.reader.readline()).decode("utf-8", "replace")

    async def read(self) -> str | None:
        """The next message ('' for an empty line), or None at the end of input."""
        raw = await self._line()
        if not raw:
            return None
        if not self.interactive:
            return raw.rstrip("\r\n")
        if PASTE_START in raw:
            while PASTE_END not in raw:
                more = await self._line()
                if not more:
                    break
                raw += more
        else:
            while True:  # no markers: gather what arrives in a burst
                try:
                    more = await asyncio.wait_for(self._line(), SETTLE_S)
                except asyncio.TimeoutError:
                    break
                if not more:
                    break
                raw += more
        return raw.replace(PASTE_START, "").replace(PASTE_END, "").replace("\r\n", "\n").strip("\n")

    def pause(self) -> None:
        self.transport.pause_reading()  # type: ignore[attr-defined]

    def resume(self) -> None:
        self.transport.resume_reading()  # type: ignore[attr-defined]


async def open_reader(stream: TextIO) -> MessageReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
    return MessageReader(reader, transport, stream.isatty())


@contextmanager
def paste_mode(stdin: TextIO, out: TextIO) -> Iterator[None]:
    """Bracketed paste on, control-character echo off, at a terminal; both restored after."""
    if not (stdin.isatty() and out.isatty()):
        yield
        return
    saved = None
    try:
        import termios

        fd = stdin.fileno()
        saved = termios.tcgetattr(fd)
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~termios.ECHOCTL
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (ImportError, OSError, AttributeError):
        saved = None
    out.write("\x1b[?2004h")
    out.flush()
    try:
        yield
    finally:
        out.write("\x1b[?2004l")
        out.flush()
        if saved is not None:
            import termios

            termios.tcsetattr(stdin.fileno(), termios.TCSANOW, saved)


def editor_command() -> list[str]:
    chosen = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if chosen:
        return shlex.split(chosen)
    if sys.platform == "win32":
        return ["notepad"]
    for name in ("editor", "nano", "vi"):  # Debian's `editor` is the system's choice
        if any((Path(d) / name).exists() for d in os.environ.get("PATH", "").split(os.pathsep) if d):
            return [name]
    return ["vi"]


async def edit_text(text: str, reader: MessageReader | None = None) -> str | None:
    """Open $EDITOR on `text`; the edited text, or None when the editor failed. Reading
    from the terminal pauses meanwhile, so the keys go to the editor, not to Dispatch."""
    fd, name = tempfile.mkstemp(prefix="dispatch-draft-", suffix=".txt")
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if reader is not None:
            reader.pause()
        try:
            done = await asyncio.to_thread(subprocess.run, [*editor_command(), str(path)])
        except OSError:
            return None
        finally:
            if reader is not None:
                reader.resume()
        if done.returncode != 0:
            return None
        return path.read_text(encoding="utf-8")
    finally:
        path.unlink(missing_ok=True)
