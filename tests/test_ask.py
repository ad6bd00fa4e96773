"""`dispatch ask`, `dispatch show` and piped `dispatch chat` as the owner runs them: real
subprocesses, with and without a running Dispatch (whose control socket they then use)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from pathlib import Path

from agent import approvals
from agent.control import socket_path
from store.db import Store
from store.models import Message, Task
from tests.conftest import telegram_values, until
from tests.helpers import DISPATCH, dispatch_run, env_for
from tests.test_cli import run_cli


def model_env(fake) -> dict[str, str]:
    return dict(ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=fake.url, DISPATCH_MODEL_RETRIES="0",
                DISPATCH_TIMEZONE="UTC", DISPATCH_POLICY="memory=ask")


def tasks(tmp_path: Path) -> list[Task]:
    store = Store(f"sqlite:///{tmp_path / 'home' / 'dispatch.db'}")
    with store.session() as s:
        return list(s.query(Task).order_by(Task.id))


async def test_ask_without_a_running_dispatch_prints_the_answer(tmp_path, fake):
    fake.reply("Hello there, Sam.")
    code, out, err = await run_cli(tmp_path, "ask", "say hello", **model_env(fake))
    assert code == 0, err
    assert out.strip() == "Hello there, Sam."  # only the answer on stdout; progress went to stderr
    assert "Task #1 done" in err
    assert [(t.text, t.state) for t in tasks(tmp_path)] == [("say hello", "done")]


async def test_ask_reads_stdin_and_exits_1_when_the_task_fails(tmp_path, fake):
    fake.error(400, message="prompt is too long")
    code, out, err = await run_cli(tmp_path, "ask", stdin=b"summarise the quarter\n", **model_env(fake))
    assert code == 1
    assert "stopped" in out and "Traceback" not in err
    assert tasks(tmp_path)[0].text == "summarise the quarter"


async def test_ask_no_wait_only_queues(tmp_path, fake):
    code, out, err = await run_cli(tmp_path, "ask", "--no-wait", "later please", **model_env(fake))
    assert code == 0, err
    assert "Queued as task #1" in out + err
    assert [(t.text, t.state) for t in tasks(tmp_path)] == [("later please", "queued")]
    assert fake.requests == []


async def test_piped_chat_handles_every_line_before_it_exits(tmp_path, fake):
    fake.reply("Hello.")
    fake.reply("Goodbye.")
    code, out, err = await run_cli(tmp_path, "chat", stdin=b"say hello\nsay goodbye\n", **model_env(fake))
    assert code == 0, err
    assert "Hello." in out and "Goodbye." in out
    assert [t.state for t in tasks(tmp_path)] == ["done", "done"]  # none left "interrupted after 0 steps"


async def test_ask_and_decide_through_a_running_dispatch(tmp_path, fake, tg_fake):
    env = env_for(tmp_path, **model_env(fake), **{k: str(v) for k, v in telegram_values(tg_fake).items()})
    async with dispatch_run(tmp_path, env) as proc:
        sock = socket_path(tmp_path / "home")
        await until(sock.exists, timeout=20, what="the control socket")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        fake.reply("Saving that.", tool_uses=[("remember", {"note": "Reports live in ~/Finance"})])
        fake.reply("I made a draft for your approval.")
        code, out, err = await run_cli(tmp_path, "ask", "remember where reports are", **model_env(fake))
        assert code == 0, err
        assert "Draft #1" in out and "Reports live in ~/Finance" in out and "I made a draft" in out

        code, out, _ = await run_cli(tmp_path, "show", "1", **model_env(fake))
        assert code == 0 and "New memory note" in out and "Reports live in ~/Finance" in out
        assert "needs your approval" in out

        code, out, _ = await run_cli(tmp_path, "approve", "1", **model_env(fake))
        assert code == 0 and "Draft #1 approved and saved." in out  # a memory note is saved, not sent
        code, out, _ = await run_cli(tmp_path, "approve", "1", **model_env(fake))
        assert code == 1 and "already decided: ✅ saved" in out
        assert proc.returncode is None  # the running Dispatch did all of it, and runs on
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    store = Store(f"sqlite:///{tmp_path / 'home' / 'dispatch.db'}")
    assert [n.text for n in store.memory_notes()] == ["Reports live in ~/Finance"]
    assert approvals.get(store, 1).decided_by.startswith("cli:")
    assert not socket_path(tmp_path / "home").exists()  # removed on the way out


async def test_an_ask_that_goes_away_leaves_its_task_running_and_the_log_clean(tmp_path, fake, tg_fake):
    """Ctrl+C on `dispatch ask` while its task runs: the task finishes, its answer stays in
    the thread, and the running Dispatch logs one line, not a traceback per message."""
    env = env_for(tmp_path, **model_env(fake), **{k: str(v) for k, v in telegram_values(tg_fake).items()})
    async with dispatch_run(tmp_path, env) as proc:
        await until(socket_path(tmp_path / "home").exists, timeout=20, what="the control socket")
        fake.reply("Still working on it, Sam.", delay=1.5)
        ask = await asyncio.create_subprocess_exec(
            *DISPATCH, "ask", "summarise my week", cwd=tmp_path, env=env_for(tmp_path, **model_env(fake)),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await until(lambda: [t.state for t in tasks(tmp_path)] == ["running"], timeout=20, what="the task to run")
        ask.send_signal(signal.SIGINT)
        await asyncio.wait_for(ask.communicate(), 20)
        await until(lambda: [t.state for t in tasks(tmp_path)] == ["done"], timeout=20, what="the task to finish")
        assert proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    store = Store(f"sqlite:///{tmp_path / 'home' / 'dispatch.db'}")
    with store.session() as s:
        rows = list(s.query(Message).filter(Message.role == "assistant").order_by(Message.id))
    said = [b.get("text") for m in rows for b in m.content]
    assert "Still working on it, Sam." in said
    log = (tmp_path / "home" / "dispatch.log").read_text()
    assert "has gone: a text for it stays in the thread only" in log
    assert "Traceback" not in log, log[-3000:]


async def test_a_socket_of_another_user_is_not_trusted(tmp_path):
    """The socket is created 0600 under a 0177 umask; a stale file from a crash is replaced."""
    from agent.control import ControlServer
    from tests.conftest import make_core, make_settings, close_core

    settings = make_settings(tmp_path, "http://127.0.0.1:9")
    core, _ = await make_core(settings, start=False)
    path = socket_path(settings.home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("stale")
    server = ControlServer(core)
    await server.start()
    try:
        assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        await server.stop()
        await close_core(core)
