"""`dispatch init` as a new owner runs it: a real subprocess, at a real terminal (a pty,
through pexpect) and from a script, with the key tried against the fake model and the
token against the fake Bot API; pairing answered by the bot it starts; the `.env` it
writes is one `dispatch doctor` accepts."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import sys
from pathlib import Path

import pexpect
import pytest

from bot.ops import envfile
from tests.helpers import DISPATCH, env_for

KEY = "sk-ant-init-secret-key"


def init_env(tmp_path: Path, fake, tg_fake, **extra: str) -> dict[str, str]:
    home = tmp_path / "user"
    for name in ("Documents", "Downloads"):  # Desktop does not exist: it is not suggested
        (home / name).mkdir(parents=True, exist_ok=True)
    env = env_for(tmp_path, HOME=str(home), ANTHROPIC_BASE_URL=fake.url, TELEGRAM_API_URL=tg_fake.url,
                  WAKEPY_FAKE_SUCCESS="1", XDG_CONFIG_HOME=str(tmp_path / "config"), DISPATCH_TIMEZONE="UTC",
                  DISPATCH_MODEL_RETRIES="0", **extra)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
                 "EMAIL_ADDRESS", "EMAIL_PASSWORD"):
        if name not in extra:
            env.pop(name, None)
    return env


async def run(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *DISPATCH, *args, cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def secret_free(text: str, *secrets: str) -> bool:
    return not any(s in text for s in secrets)


async def test_init_from_a_script_writes_a_working_env_that_doctor_accepts(tmp_path, fake, tg_fake):
    env = init_env(tmp_path, fake, tg_fake)
    (tmp_path / ".env").write_text("# my own notes stay\nDISPATCH_TELEGRAM_OWNERS=1001\nANTHROPIC_API_KEY=old\n")
    for _ in range(3):
        fake.reply("p")
    code, out, err = await run(tmp_path, env, "init", "--yes", "--api-key", KEY,
                               "--telegram-token", tg_fake.token, "--no-pair")
    assert code == 0, out + err
    assert "✓ Model: claude" in out and "✓ Telegram: token works: @dispatch_test_bot" in out
    assert fake.requests[0]["max_tokens"] == 1  # the key was tried with a one-token call
    assert tg_fake.calls_to("getMe")
    assert "Everything checked out." in out
    assert secret_free(out + err, KEY, tg_fake.token)

    path = tmp_path / ".env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# my own notes stay\nDISPATCH_TELEGRAM_OWNERS=1001\n")  # merged, not replaced
    values = envfile.read(path)
    assert values["ANTHROPIC_API_KEY"] == KEY and text.count("ANTHROPIC_API_KEY=") == 1
    assert values["TELEGRAM_BOT_TOKEN"] == tg_fake.token
    user = tmp_path / "user"
    assert values["DISPATCH_ROOTS"] == os.pathsep.join([str(user / "Documents"), str(user / "Downloads")])

    fake.reply("p")
    code, out, _ = await run(tmp_path, env, "doctor")  # the .env works on its own
    assert code == 0, out
    assert f"✓ Folders: {user / 'Documents'}, {user / 'Downloads'}" in out


async def test_a_check_that_fails_in_a_script_writes_nothing(tmp_path, fake, tg_fake):
    env = init_env(tmp_path, fake, tg_fake)
    fake.error(401, message="invalid x-api-key")
    code, out, err = await run(tmp_path, env, "init", "--yes", "--api-key", "sk-ant-wrong", "--no-pair")
    assert code == 2 and "The API key was not accepted" in err and "Traceback" not in err
    assert not (tmp_path / ".env").exists()
    fake.reply("p")
    code, out, err = await run(tmp_path, env, "init", "--yes", "--api-key", KEY, "--telegram-token",
                               "123456:WRONG", "--no-pair")
    assert code == 2 and "Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized)" in err
    assert not (tmp_path / ".env").exists()
    fake.reply("p")
    code, _, err = await run(tmp_path, env, "init", "--yes", "--api-key", KEY, "--roots", "/no/such/folder")
    assert code == 2 and "/no/such/folder is not a folder" in err
    assert secret_free(out + err, KEY, "sk-ant-wrong")


async def test_doctor_says_when_no_folder_is_shared(tmp_path, fake, tg_fake):
    env = init_env(tmp_path, fake, tg_fake, ANTHROPIC_API_KEY=KEY)
    fake.reply("p")
    code, out, _ = await run(tmp_path, env, "doctor")
    assert code == 1
    assert "✗ Folders: none shared: the agent can't see any of your files" in out
    assert "DISPATCH_ROOTS=" in out and "dispatch init" in out


@pytest.mark.skipif(sys.platform == "win32", reason="a pty")
async def test_init_at_a_terminal_asks_checks_pairs_and_ends_with_doctor(tmp_path, fake, tg_fake):
    env = init_env(tmp_path, fake, tg_fake)
    fake.error(401, message="invalid x-api-key")  # the first key typed is wrong
    for _ in range(4):
        fake.reply("p")
    child = pexpect.spawn(DISPATCH[0], DISPATCH[1:] + ["init"], cwd=str(tmp_path), env=env,
                          encoding="utf-8", timeout=30, dimensions=(40, 200))
    seen: list[str] = []
    child.logfile_read = _Collect(seen)

    def converse() -> None:
        child.expect("API key: ")
        child.sendline("sk-ant-typo")
        child.expect("✗ ")
        child.expect("API key: ")
        child.sendline(KEY)
        child.expect("Folders")
        child.sendline("")  # the suggestion: Documents and Downloads
        child.expect(r"Telegram \(t\), Slack \(s\)")
        child.sendline("t")
        child.expect("Bot token: ")
        child.sendline("123456:WRONG")
        child.expect("Telegram refused")
        child.expect("Bot token: ")
        child.sendline(tg_fake.token)
        child.expect("Email address")
        child.sendline("")  # no mail
        child.expect(r"send:\s+/pair (\S+)\r?\n")

    await asyncio.to_thread(converse)
    code = child.match.group(1)
    tg_fake.send_message(f"/pair {code}")  # from the phone, to the bot init started
    await asyncio.to_thread(child.expect, "Paired")
    await asyncio.to_thread(child.expect, pexpect.EOF, 60)
    child.close()
    out = "".join(seen)
    assert child.exitstatus == 0, out
    assert "Everything checked out." in out and "✓ Telegram owner: Dispatch answers 1001" in out
    assert secret_free(out, KEY, "sk-ant-typo", tg_fake.token)  # hidden input: never echoed
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert envfile.read(tmp_path / ".env")["ANTHROPIC_API_KEY"] == KEY


@pytest.mark.skipif(sys.platform == "win32", reason="a pty")
async def test_dispatch_unconfigured_at_a_terminal_offers_init(tmp_path, fake, tg_fake):
    env = init_env(tmp_path, fake, tg_fake)
    child = pexpect.spawn(DISPATCH[0], DISPATCH[1:], cwd=str(tmp_path), env=env, encoding="utf-8", timeout=30)
    await asyncio.to_thread(child.expect, re.escape("Set it up now (dispatch init)? [Y/n]: "))
    child.sendline("n")
    await asyncio.to_thread(child.expect, pexpect.EOF)
    child.close()
    assert child.exitstatus == 2 and "ANTHROPIC_API_KEY is not set" in child.before


class _Collect:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def write(self, text: str) -> None:
        self.seen.append(text)

    def flush(self) -> None:
        pass


async def test_a_mail_login_that_fails_in_a_script_writes_nothing(tmp_path, fake, tg_fake):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = init_env(tmp_path, fake, tg_fake, EMAIL_PASSWORD="mail-secret-pw", IMAP_HOST="127.0.0.1",
                   IMAP_PORT=str(port), SMTP_HOST="127.0.0.1", SMTP_PORT=str(port))
    fake.reply("p")
    code, out, err = await run(tmp_path, env, "init", "--yes", "--api-key", KEY, "--email", "sam@example.com",
                               "--no-pair")
    assert code == 2, out + err
    assert "✗ IMAP login: 127.0.0.1:" in out and "The mail login did not work" in err
    assert not (tmp_path / ".env").exists()
    assert secret_free(out + err, KEY, "mail-secret-pw")


async def test_init_with_slack_from_a_script(tmp_path, fake, tg_fake, sl_fake):
    env = init_env(tmp_path, fake, tg_fake, SLACK_API_URL=sl_fake.api_url, DISPATCH_SLACK_OWNERS="U0OWNER")
    for _ in range(3):  # the key, tried by each run, and doctor's check
        fake.reply("p")
    code, out, err = await run(tmp_path, env, "init", "--yes", "--api-key", KEY, "--slack-bot-token",
                               sl_fake.bot_token, "--slack-app-token", "not-an-app-token", "--no-pair")
    assert code == 2 and "The Slack app token starts with xapp-" in err
    assert not (tmp_path / ".env").exists()
    code, out, err = await run(tmp_path, env, "init", "--yes", "--api-key", KEY, "--slack-bot-token",
                               sl_fake.bot_token, "--slack-app-token", sl_fake.app_token, "--no-pair")
    assert "✓ Slack: token works" in out, out + err
    values = envfile.read(tmp_path / ".env")
    assert values["SLACK_BOT_TOKEN"] == sl_fake.bot_token and values["SLACK_APP_TOKEN"] == sl_fake.app_token
    assert "✓ Slack owner: Dispatch answers U0OWNER" in out and code == 0, out
    assert secret_free(out + err, KEY, sl_fake.bot_token, sl_fake.app_token)


@pytest.mark.skipif(sys.platform == "win32", reason="a pty")
async def test_accepting_the_offer_sets_up_then_starts(tmp_path, fake, tg_fake):
    env = init_env(tmp_path, fake, tg_fake)
    for _ in range(3):
        fake.reply("p")
    child = pexpect.spawn(DISPATCH[0], DISPATCH[1:], cwd=str(tmp_path), env=env, encoding="utf-8", timeout=30,
                          dimensions=(40, 200))

    def converse() -> None:
        child.expect(re.escape("Set it up now (dispatch init)? [Y/n]: "))
        child.sendline("")
        child.expect("API key: ")
        child.sendline(KEY)
        child.expect("Folders")
        child.sendline("")
        child.expect(r"Telegram \(t\), Slack \(s\)")
        child.sendline("n")
        child.expect("Email address")
        child.sendline("")
        child.expect("Dispatch doctor")
        child.expect("talking to your thread")  # set up, it starts
        child.sendline("/quit")
        child.expect(pexpect.EOF)

    try:
        await asyncio.to_thread(converse)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert envfile.read(tmp_path / ".env")["ANTHROPIC_API_KEY"] == KEY
