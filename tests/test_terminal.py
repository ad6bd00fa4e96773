"""`dispatch chat` at a real terminal (a pty, through pexpect), against the fake model:
Markdown rendered, cards as panels, a multi-line paste is one message (with and
without bracketed paste), `/edit N` opens $EDITOR on the draft's current text."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pexpect
import pytest

from agent import approvals
from store.db import Store
from tests.helpers import DISPATCH, env_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a pty")

EDITOR = """import sys
path = sys.argv[1]
old = open(path, encoding="utf-8").read()
open(path, "w", encoding="utf-8").write(old.replace("~/Finance", "~/Finance/2026") + "\\n")
"""


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z~]", "", text)


def last_user_text(request: dict) -> str:
    return json.dumps(request["messages"][-1]["content"], ensure_ascii=False)


async def test_the_terminal(tmp_path: Path, fake):
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    env = env_for(tmp_path, ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=fake.url, DISPATCH_TIMEZONE="UTC",
                  DISPATCH_MODEL_RETRIES="0", DISPATCH_POLICY="memory=ask", WAKEPY_FAKE_SUCCESS="1",
                  EDITOR=f"{sys.executable} {editor}", VISUAL="", TERM="xterm-256color")
    env.pop("TELEGRAM_BOT_TOKEN", None)
    env.pop("SLACK_BOT_TOKEN", None)
    child = pexpect.spawn(DISPATCH[0], DISPATCH[1:] + ["chat"], cwd=str(tmp_path), env=env, encoding="utf-8",
                          timeout=30, dimensions=(50, 120))
    seen: list[str] = []

    class Collect:
        def write(self, text: str) -> None:
            seen.append(text)

        def flush(self) -> None:
            pass

    child.logfile_read = Collect()

    async def expect(pattern: str) -> None:
        await asyncio.to_thread(child.expect, pattern)

    try:
        await expect("talking to your thread")

        # Markdown is rendered: bold without its asterisks, a list with bullets.
        fake.reply("**Off pace**: Acme is behind.\n\n- first point\n- second point")
        child.sendline("how are we doing?")
        await expect("second point")
        shown = "".join(seen)
        assert "**Off pace**" not in shown and "Off pace" in shown
        assert "• first point" in plain(shown)
        assert "\x1b[1m" in shown  # bold, as a terminal shows it

        # A paste with bracketed-paste markers, its last line without a newline: one message.
        calls = len(fake.requests)
        fake.reply("Three lines, one request.")
        child.send("\x1b[200~line one\rline two\rline three\x1b[201~")
        await asyncio.sleep(0.3)  # the last line sits in the terminal until Enter
        child.send("\r")
        await expect("Three lines, one request.")
        assert len(fake.requests) == calls + 1
        assert "line one\\nline two\\nline three" in last_user_text(fake.requests[-1])

        # A terminal without bracketed paste: lines arriving in one burst are one message.
        calls = len(fake.requests)
        fake.reply("Two lines, one request.")
        child.send("alpha\rbeta\r")
        await expect("Two lines, one request.")
        assert len(fake.requests) == calls + 1
        assert "alpha\\nbeta" in last_user_text(fake.requests[-1])

        # A card is a panel: the title and tool on its border, the preview, the question, the expiry.
        fake.reply("Saving that.", tool_uses=[("remember", {"note": "Quarterly numbers live in ~/Finance"})])
        fake.reply("I drafted a memory note for your approval.")
        child.sendline("remember where the quarterly numbers are")
        await expect("I drafted a memory note")
        shown = "".join(seen)
        shown = plain(shown)
        assert "╭─ Draft #1 — remember" in shown and "╰─ /approve 1 · /reject 1 [reason] · /edit 1" in shown
        assert "Quarterly numbers live in ~/Finance" in shown and "expires" in shown

        # /edit 1 alone: $EDITOR opens on the current text; what it saves is revision #2.
        child.sendline("/edit 1")
        await expect("Draft #2")
        child.sendline("/quit")
        await asyncio.to_thread(child.expect, pexpect.EOF)
    finally:
        child.close(force=True)
    store = Store(f"sqlite:///{tmp_path / 'home' / 'dispatch.db'}")
    try:
        row = approvals.get(store, 2)
        assert row is not None and row.revision_of == 1 and row.state == "pending"
        assert json.loads(row.args_json)["note"] == "Quarterly numbers live in ~/Finance/2026"
    finally:
        store.close()
    assert "Traceback" not in "".join(seen)
