"""Files from the phone are usable: the inbox (DISPATCH_HOME/inbox) is a root the
tools read and attach from, and nothing else of DISPATCH_HOME opens up. Through the
real Core, the fake model and a real SMTP server."""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot

from agent.channel import Inbound
from bot import inbox as inbox_mod
from bot.inbox import download_with_retry, inbox_path
from store.models import Task
from tests.conftest import task_state, until
from tests.helpers import call, files_settings, refused
from tests.mail_servers import QUIET, login, send_core, send_settings, smtp  # noqa: F401 - fixtures
from store.db import Store
from tools.registry import ToolContext

ORDERS = "order,customer,amount\n1001,Acme,1200.50\n1002,Globex,310.00\n1003,Acme,88.25\n"


async def run(core: Any, inbound: Inbound) -> Task:
    task = await core.submit(inbound)
    await until(lambda: task_state(core.store, task.id) not in ("queued", "running"), timeout=20, what="task")
    with core.store.session() as s:
        return s.get(Task, task.id)


async def test_a_csv_from_the_phone_is_read_and_summarised(core, fake):
    path = inbox_path(core.settings.inbox, "orders Q3.csv")
    path.write_text(ORDERS)
    fake.reply(tool_uses=[("read_text", {"path": str(path)})])
    fake.reply("Three orders, **1,598.75** in all; Acme placed two.")
    task = await run(core, Inbound("summarise this", "console:local", files=[str(path)]))

    assert task.state == "done"
    first = fake.requests[0]["messages"][-1]["content"]
    listed = "\n".join(b["text"] for b in first if b["type"] == "text")
    assert f"{path} (CSV, {len(ORDERS)} B)" in listed  # name, type and size reach the task
    result = fake.requests[1]["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and not result.get("is_error")
    assert "1002,Globex,310.00" in str(result["content"])
    assert core.channel.texts[-1].startswith("Three orders")


async def test_the_inbox_is_readable_not_writable_and_the_rest_of_home_stays_shut(tmp_path):
    settings = files_settings(tmp_path)
    store = Store(settings.db_url)
    try:
        ctx = ToolContext(settings, store)
        path = inbox_path(settings.inbox, "notes.txt")
        path.write_text("from the phone")
        assert await call(ctx, "read_text", path=str(path)) == "from the phone"
        assert "notes.txt" in await call(ctx, "find_files", name="notes")
        # Tools write only to the outbox and workspace; what the phone sent stays as it was.
        assert "may write only to" in await refused(ctx, "make_document", name=str(settings.inbox / "x.md"),
                                                    markdown="# overwritten")
        assert "outside the folders" in await refused(ctx, "read_text", path=str(settings.home / "dispatch.db"))
        # A link planted in the inbox cannot reach beyond it.
        secret = tmp_path / "elsewhere.txt"
        secret.write_text("not for tools")
        os.symlink(secret, settings.inbox / "link.txt")
        assert "outside the folders" in await refused(ctx, "read_text", path=str(settings.inbox / "link.txt"))
    finally:
        store.close()


@QUIET
async def test_a_file_from_the_phone_is_attached_to_an_approved_mail_byte_identical(send_core, fake, smtp):
    data = os.urandom(40_000) + b"%PDF-not-really, just bytes that must arrive exactly"
    path = inbox_path(send_core.settings.inbox, "Kim contract.pdf")
    path.write_bytes(data)
    fake.reply(tool_uses=[("send_email", {"to": ["kim@example.com"], "subject": "The contract",
                                           "body": "Kim, here it is.", "attachments": [str(path)]})])
    fake.reply("Draft ready for your approval.")
    task = await run(send_core, Inbound("email this to Kim (kim@example.com)", "console:local", files=[str(path)]))
    assert task.state == "done"
    (card,) = send_core.channel.cards
    assert "Kim contract.pdf (39.1 KB)" in card.preview and smtp.received == []

    final = (await send_core.approve(card.approval_id, "console:sam")).approval
    assert final.state == "sent"
    (got,) = smtp.received
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    (att,) = list(msg.iter_attachments())
    assert att.get_filename() == "Kim contract.pdf"
    body = att.get_content()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()


# Downloads from the phone's platform are retried ------------------------------------------------


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox_mod, "RETRY_DELAYS", (0.01, 0.01))


async def _telegram_file(tg_fake: Any, data: bytes, name: str) -> tuple[Bot, str]:
    msg = tg_fake.send_document(data, name)
    bot = Bot(tg_fake.token, base_url=tg_fake.base_url, base_file_url=tg_fake.base_file_url)
    await bot.initialize()
    return bot, msg["document"]["file_id"]


async def test_a_5xx_from_the_telegram_file_server_is_retried(tg_fake, tmp_path, quick, caplog):
    bot, file_id = await _telegram_file(tg_fake, ORDERS.encode(), "orders Q3.csv")

    async def fetch(target: Path) -> None:  # what the Telegram handler passes: getFile, then the download
        tg_file = await bot.get_file(file_id)
        await tg_file.download_to_drive(target)

    try:
        tg_fake.fail_next("download", status=502, times=2)
        path = inbox_path(tmp_path / "inbox", "orders Q3.csv")
        assert await download_with_retry(fetch, path, "orders Q3.csv") is None
        assert path.read_bytes() == ORDERS.encode() and len(tg_fake.failed_downloads) == 2
        ours = [r.getMessage() for r in caplog.records if r.name == "dispatch.inbox"]
        assert len(ours) == 2 and all("Bad Gateway (502)" in m and "nginx" not in m for m in ours)

        tg_fake.fail_next("download", status=500, times=3)
        again = inbox_path(tmp_path / "inbox", "orders Q3.csv")
        said = await download_with_retry(fetch, again, "orders Q3.csv")
        assert said == ("I couldn't download orders Q3.csv from Telegram (Internal Server Error; tried 3 times). "
                        "Nothing was started; send the file again in a minute.")
        assert not again.exists()  # no partial file left behind

        tg_fake.fail_next("getFile", status=400, description="Bad Request: file is too big")
        said = await download_with_retry(fetch, again, "orders Q3.csv")
        assert said == "I couldn't download orders Q3.csv from Telegram: File is too big. Nothing was started."  # a refusal is final: not tried again
    finally:
        await bot.shutdown()


async def test_connection_errors_are_retried_and_unknown_errors_are_not(tmp_path, quick):
    import aiohttp

    calls: list[int] = []

    async def flaky(target: Path) -> None:
        calls.append(1)
        target.write_bytes(b"partial")
        if len(calls) < 3:
            raise aiohttp.ClientConnectionError("Connection reset by peer")
        target.write_bytes(b"whole file")

    path = tmp_path / "a.bin"
    assert await download_with_retry(flaky, path, "a.bin", where="Slack") is None
    assert path.read_bytes() == b"whole file" and len(calls) == 3

    async def broken(target: Path) -> None:
        raise ValueError("the server sent its login page")

    said = await download_with_retry(broken, tmp_path / "b.bin", "b.bin", where="Slack")
    assert said == "I couldn't download b.bin from Slack: the server sent its login page. Nothing was started."
