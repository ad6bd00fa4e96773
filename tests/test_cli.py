"""The `dispatch` command as the owner runs it: real subprocesses, real terminal I/O,
the real model client talking to the loopback fake."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent import approvals
from store.db import Store
from tests.helpers import DISPATCH, REPO, env_for


async def run_cli(tmp_path: Path, *args: str, stdin: bytes = b"", **extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *DISPATCH, *args, cwd=tmp_path, env=env_for(tmp_path, **extra),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    return proc.returncode, out.decode(), err.decode()


async def test_no_configuration_explains_what_to_set(tmp_path):
    code, out, err = await run_cli(tmp_path)
    assert code == 2
    assert "ANTHROPIC_API_KEY is not set" in err and ".env" in err
    assert "Traceback" not in err + out


async def test_a_bad_setting_is_named_not_a_traceback(tmp_path):
    code, _, err = await run_cli(tmp_path, "chat", ANTHROPIC_API_KEY="k", DISPATCH_DAILY_BUDGET_USD="ten dollars",
                                 DISPATCH_ROOTS="/no/such/folder")
    assert code == 2 and "DISPATCH_DAILY_BUDGET_USD" in err and "Traceback" not in err
    code, _, err = await run_cli(tmp_path, "chat", ANTHROPIC_API_KEY="k", DISPATCH_ROOTS="/no/such/folder",
                                 DISPATCH_TIMEZONE="Mars/Olympus")
    assert code == 2 and "/no/such/folder" in err and "Mars/Olympus" in err


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str], timeout: float = 15) -> str:
    async def go() -> str:
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"output ended before {needle!r}:\n{''.join(seen)}")
            seen.append(line)
            if needle in line:
                return line
    return await asyncio.wait_for(go(), timeout)


async def test_chat_in_the_terminal_with_a_draft_approved_from_another_process(tmp_path, fake):
    env = dict(ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=fake.url, DISPATCH_MODEL_RETRIES="0",
               DISPATCH_POLICY="memory=ask", DISPATCH_TIMEZONE="UTC")
    fake.reply("Saving that.", tool_uses=[("remember", {"note": "Quarterly numbers live in ~/Finance"})])
    fake.reply("I drafted a memory note for your approval.")
    proc = await asyncio.create_subprocess_exec(
        *DISPATCH, "chat", cwd=tmp_path, env=env_for(tmp_path, **env),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    seen: list[str] = []
    try:
        await read_until(proc.stdout, "Dispatch", seen)
        proc.stdin.write(b"remember where the quarterly numbers are\n")
        await proc.stdin.drain()
        await read_until(proc.stdout, "needs your approval", seen)
        await read_until(proc.stdout, "/approve 1", seen)
        await read_until(proc.stdout, "I drafted a memory note", seen)

        # A second Dispatch on the same data folder is refused: it would answer twice.
        code, _, err = await run_cli(tmp_path, "chat", **env)
        assert code == 2 and "already running" in err

        # The owner decides from another terminal with the one-shot command.
        code, out, _ = await run_cli(tmp_path, "pending", **env)
        assert "#1 remember" in out
        code, out, _ = await run_cli(tmp_path, "approve", "1", **env)
        assert code == 0 and "approved and saved" in out
        code, out, _ = await run_cli(tmp_path, "approve", "1", **env)
        assert code == 1 and "already decided: ✅ saved" in out

        proc.stdin.write(b"/status\n/quit\n")
        await proc.stdin.drain()
        await read_until(proc.stdout, "Nothing is running", seen)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    store = Store(f"sqlite:///{tmp_path / 'home' / 'dispatch.db'}")
    assert [n.text for n in store.memory_notes()] == ["Quarterly numbers live in ~/Finance"]
    assert approvals.get(store, 1).decided_by.startswith("cli:")
    store.close()

    code, out, _ = await run_cli(tmp_path, "log", **env)
    assert "draft #1 approved" in out and "task #1 done" in out
    assert "by: cli:" not in out  # the details only with -v
    code, out, _ = await run_cli(tmp_path, "log", "-v", **env)
    approved = out[out.index("draft #1 approved"):]
    assert approved.splitlines()[1].strip() == "draft: New memory note (it will be part of every future conversation):"
    assert approved.splitlines()[2].strip().startswith("by: cli:")
    assert "outcome: Remembered as note 1." in out
    code, out, _ = await run_cli(tmp_path, "usage", **env)
    assert "model calls" in out and "cache read" in out
    stderr = (await proc.stderr.read()).decode()
    assert "Traceback" not in stderr and "sk-ant-test" not in stderr
    assert "sk-ant-test" not in (tmp_path / "home" / "dispatch.log").read_text()


async def test_terminal_commands(tmp_path, fake):
    env = dict(ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=fake.url, DISPATCH_TIMEZONE="UTC")
    lines = b"/help\n/pending\n/approve x\n/reject 99 no\n/policy files ask\n/policy files maybe\n/bogus\n/quit\n"
    code, out, err = await run_cli(tmp_path, "chat", stdin=lines, **env)
    assert code == 0, err
    assert "/approve N" in out  # help
    assert "No drafts are waiting" in out
    assert "Usage: /approve N" in out
    assert "There is no draft #99." in out
    assert "files is now ask" in out and "read_text=ask" in out
    assert "A policy is auto, ask or off, not 'maybe'." in out
    assert "Unknown command /bogus" in out
    code, out, _ = await run_cli(tmp_path, "reject", "5", "nope", **env)
    assert code == 1 and "There is no draft #5." in out


def test_env_example_documents_every_setting_and_loads_as_is(tmp_path, monkeypatch):
    from store.config import Settings

    text = (REPO / ".env.example").read_text()
    for field in Settings.model_fields.values():
        for name in field.validation_alias.choices:  # type: ignore[union-attr]
            assert f"\n{name}=" in text, f"{name} is missing from .env.example"
    # Copied as is (with the key filled in), it gives the documented defaults.
    env = tmp_path / ".env"
    env.write_text(text.replace("ANTHROPIC_API_KEY=\n", "ANTHROPIC_API_KEY=sk-ant-x\n"))
    s = Settings(_env_file=env)  # type: ignore[call-arg]
    assert s.problems() == []
    assert s.home.is_absolute() and s.home.name == "dispatch"
    assert s.daily_budget_usd is None and s.roots == [] and s.model == "claude-sonnet-4-6"


async def test_policy_says_the_effective_policy_and_warns_when_approval_goes(tmp_path):
    code, out, _ = await run_cli(tmp_path, "policy", "send_email", "auto")
    assert code == 0
    assert out.splitlines()[0] == ("send_email stays ask: a tool's setting can only make it stricter than its "
                                   "connector (email is at its default).")
    assert "Now: send_email=ask" in out and "without asking" not in out
    code, out, _ = await run_cli(tmp_path, "policy", "email", "auto")
    assert out.splitlines()[0] == "email is now auto."
    assert "send_email=auto" in out and "reply_email=auto" in out and "read_mail=auto" in out
    assert ("⚠ email: auto — mail will be sent without asking you (forward_email, reply_email, send_email). "
            "`dispatch policy email ask` puts approval back.") in out
    code, out, _ = await run_cli(tmp_path, "policy", "email", "ask")
    assert "send_email=ask" in out and "without asking" not in out


def test_every_subcommand_explains_itself_with_an_example():
    import argparse

    from bot.ops.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"init", "run", "pending", "approve", "log", "policy", "service"} <= set(sub.choices)
    for name, parser in sub.choices.items():
        text = parser.format_help()
        assert parser.description and len(parser.description) > 30, name
        assert "\nexample" in text and f"  dispatch {name}" in text, name
    log_help = sub.choices["log"].format_help()
    assert "-v, --verbose" in log_help and "dispatch log -v" in log_help
