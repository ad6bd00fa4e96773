"""Defect 8: an unexpected exception in the executor after the side effect may have
happened ends the draft `unknown` ("may have gone out"), never `failed` ("not sent");
a refusal before anything ran stays `failed`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent import approvals
from store.db import Store
from tests.helpers import files_settings
from tools.registry import Effect, Registry, ToolContext, ToolError, tool

HANDED: list[str] = []


@tool(connector="notes", effect=Effect.SEND)
async def flaky_send(to: str, how: str) -> str:
    """Send a note, failing in the way asked.

    Args:
        to: Recipient.
        how: ok | bug-after-handover | refused-before | hang
    """
    if how == "refused-before":
        raise ToolError("the server refused the recipient; nothing was sent")
    HANDED.append(to)  # the message has left: from here on nobody knows
    if how == "bug-after-handover":
        raise KeyError("resp")  # e.g. a library answer of an unexpected shape
    if how == "hang":
        await asyncio.sleep(60)
    return "sent"


@pytest.fixture
def setup(tmp_path: Path):
    settings = files_settings(tmp_path)
    store = Store(settings.db_url)
    reg = Registry()
    reg.add(flaky_send)
    HANDED.clear()
    yield store, reg, ToolContext(settings, store)
    store.close()


def _approved(store: Store, args: dict) -> int:
    row = approvals.create_draft(store, tool="flaky_send", connector="notes", args=args, preview="p",
                                 thread_id=store.thread_id(), task_id=None, origin="console:local")
    assert approvals.approve(store, row.id, "owner").won
    return row.id


async def test_unexpected_error_after_handover_is_unknown_not_failed(setup):
    store, reg, ctx = setup
    aid = _approved(store, {"to": "bob@example.com", "how": "bug-after-handover"})
    final = await approvals.execute(store, reg, ctx, aid)
    assert HANDED == ["bob@example.com"]
    assert final.state == "unknown"
    assert "may or may not have gone out" in final.outcome and "KeyError" in final.outcome
    # and it is never sent again: a second approve/execute is refused
    assert not approvals.approve(store, aid, "owner").won
    assert (await approvals.execute(store, reg, ctx, aid)).state == "unknown"
    assert HANDED == ["bob@example.com"]


async def test_tool_error_before_sending_stays_failed(setup):
    store, reg, ctx = setup
    aid = _approved(store, {"to": "bob@example.com", "how": "refused-before"})
    final = await approvals.execute(store, reg, ctx, aid)
    assert final.state == "failed" and "nothing was sent" in final.outcome and HANDED == []


async def test_invalid_stored_arguments_fail_before_anything_runs(setup):
    store, reg, ctx = setup
    aid = _approved(store, {"to": "bob@example.com", "how": "ok"})
    bad, digest = approvals.canonical({"to": "bob@example.com", "how": "ok", "extra": 1})
    with store.engine.begin() as conn:  # arguments that no longer fit the tool (e.g. after an upgrade)
        conn.execute(sa.text("UPDATE approval SET args_json = :a, args_sha256 = :h WHERE id = :i"),
                     {"a": bad, "h": digest, "i": aid})
    final = await approvals.execute(store, reg, ctx, aid)
    assert final.state == "failed" and "Invalid arguments" in final.outcome and HANDED == []


async def test_cancelled_mid_send_is_unknown(setup):
    store, reg, ctx = setup
    aid = _approved(store, {"to": "bob@example.com", "how": "hang"})
    running = asyncio.create_task(approvals.execute(store, reg, ctx, aid))
    while not HANDED:
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    row = approvals.get(store, aid)
    assert row.state == "unknown" and "may or may not have gone out" in row.outcome
    assert json.loads(row.args_json)["to"] == "bob@example.com"
