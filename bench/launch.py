"""Shared by the start-up and memory benchmarks: loopback servers and a `dispatch run` child.

`Servers(kind)` starts the fakes and real local servers the tests use, all on 127.0.0.1:
the fake Messages API and Telegram Bot API always; for kind "all" also the fake Slack
Web API with its Socket Mode websocket, a real SMTP server (aiosmtpd) and a real IMAP
server (Dovecot, when installed; otherwise IMAP points at a closed loopback port, which
changes nothing at start: mail is only opened when a mail tool runs). One allowed
folder (DISPATCH_ROOTS) of FILES small notes is made, so the live file index runs as it
would on a desktop. `env()` is the environment for `dispatch run` against them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.telegram_api import FakeTelegram

REPO = Path(__file__).resolve().parents[1]
OWNER = 1001
FILES = 500
_OURS = ("DISPATCH_", "ANTHROPIC_", "TELEGRAM_", "SLACK_", "EMAIL_", "IMAP_", "SMTP_", "GOOGLE_")


def compile_bytecode() -> None:
    """Write the project's .pyc files, as `pip install` does for an installed Dispatch (and
    for python-telegram-bot in site-packages). Without them (PYTHONDONTWRITEBYTECODE=1,
    as on some development machines) every start compiles ~80 modules from source, about
    0.2 s that a real install never pays. Children run without that variable too."""
    import compileall

    for package in ("agent", "bot", "store", "tools", "bench"):
        compileall.compile_dir(str(REPO / package), quiet=1)


class Servers:
    def __init__(self, kind: str, home: Path) -> None:
        assert kind in ("telegram", "all")
        self.kind, self.home = kind, home
        self.model, self.tg = FakeAnthropic(), FakeTelegram()
        self.slack: Any = None
        self.smtp: Any = None
        self.dovecot: Any = None
        self.imap_port = 0
        self.roots = home.parent / f"{home.name}-Documents"

    async def __aenter__(self) -> "Servers":
        for i in range(FILES):
            folder = self.roots / f"project-{i % 20}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"note-{i}.txt").write_text(f"Meeting note {i}: budget, plans and people.\n" * 20)
        await self.model.start()
        await self.tg.start()
        if self.kind == "all":
            from tests.fakes.slack_api import FakeSlack
            from tests.mail_servers import Dovecot, SmtpServer, free_port

            self.slack = FakeSlack()
            await self.slack.start()
            self.smtp = SmtpServer("sam@example.com").start()
            binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
            if binary:
                self.dovecot = Dovecot(binary, Path(tempfile.mkdtemp(prefix="bench-dovecot-")))
                await asyncio.to_thread(self.dovecot.start)
                self.imap_port = self.dovecot.port
            else:
                self.imap_port = free_port()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.dovecot is not None:
            await asyncio.to_thread(self.dovecot.stop)
        if self.smtp is not None:
            self.smtp.stop()
        if self.slack is not None:
            await self.slack.stop()
        await self.tg.stop()
        await self.model.stop()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS) and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(ANTHROPIC_API_KEY="sk-ant-bench", ANTHROPIC_BASE_URL=self.model.url,
                   TELEGRAM_BOT_TOKEN=self.tg.token, TELEGRAM_API_URL=self.tg.url,
                   DISPATCH_TELEGRAM_OWNERS=str(OWNER), DISPATCH_TIMEZONE="UTC",
                   DISPATCH_HOME=str(self.home), DISPATCH_ROOTS=str(self.roots), PYTHONPATH=str(REPO))
        if self.kind == "all":
            from tests.fakes.slack_api import OWNER as SLACK_OWNER

            env.update(SLACK_BOT_TOKEN=self.slack.bot_token, SLACK_APP_TOKEN=self.slack.app_token,
                       SLACK_API_URL=self.slack.api_url, DISPATCH_SLACK_OWNERS=SLACK_OWNER,
                       EMAIL_ADDRESS="sam@example.com", EMAIL_USERNAME="sam@example.com",
                       EMAIL_PASSWORD="imap-app-password-4821", IMAP_HOST="127.0.0.1",
                       IMAP_PORT=str(self.imap_port), IMAP_SECURITY="none", SMTP_HOST="127.0.0.1",
                       SMTP_PORT=str(self.smtp.port), SMTP_SECURITY="none")
        return env

    async def polling(self, t0: float, proc: asyncio.subprocess.Process, timeout: float = 60) -> float:
        """Seconds from t0 to the first getUpdates the fake received (and, with Slack, a socket)."""
        await _wait(lambda: bool(self.tg.calls_to("getUpdates")) and (self.slack is None or self.slack.open_connections),
                    t0, proc, timeout, "start polling")
        return self.tg.calls_to("getUpdates")[0].at - t0

    async def answered(self, t0: float, proc: asyncio.subprocess.Process, timeout: float = 60) -> float:
        """Seconds from t0 to the first message the bot sent (the answer to one queued before start)."""
        await _wait(lambda: bool(self.tg.calls_to("sendMessage")), t0, proc, timeout, "answer")
        return self.tg.calls_to("sendMessage")[0].at - t0


async def _wait(ready: Any, t0: float, proc: asyncio.subprocess.Process, timeout: float, what: str) -> None:
    while not ready():
        if proc.returncode is not None:
            raise RuntimeError(f"the bot exited with {proc.returncode} before it could {what}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"the bot did not {what} within {timeout:.0f} s")
        await asyncio.sleep(0.002)

async def spawn_dispatch(env: dict[str, str], cwd: Path, *python_flags: str,
                         stderr: Any = asyncio.subprocess.DEVNULL) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, *python_flags, "-m", "bot.ops.cli", "run", cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=stderr)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


def tree_memory(pid: int) -> tuple[float, float, int]:
    """(RSS MB, PSS MB, processes) of pid and all its descendants, from /proc."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            kids = []
        pids += [int(k) for k in kids]
        frontier += [int(k) for k in kids]
    rss = pss = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024, len(pids)
