"""Tool hooks the connectors build on: `prepare` + Hidden parameters (a Message-ID fixed
when the draft is made) and `ctx.deliver` (a file to the owner's own chat)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated

from agent import approvals
from agent.channel import Inbound
from tests.conftest import task_state, until
from tools.registry import Effect, Hidden, ToolContext, ToolError

POSTED: list[dict] = []


def _prepare(ctx: ToolContext, args: dict) -> dict:
    if "@" not in args["to"]:
        raise ToolError(f"{args['to']!r} is not an address")
    return {**args, "message_id": f"<{uuid.uuid4().hex}@dispatch>"}


async def post(to: str, text: str, message_id: Annotated[str, Hidden] = "") -> str:
    """Post a message.

    Args:
        to: Recipient address.
        text: The message.
    """
    POSTED.append({"to": to, "text": text, "message_id": message_id})
    return f"posted {message_id}"


async def run(core, text: str) -> None:
    task = await core.submit(Inbound(text, "console:local"))
    await until(lambda: task_state(core.store, task.id) not in ("queued", "running"))


async def test_prepare_fixes_hidden_values_at_draft_time_and_the_send_uses_them(core, fake):
    POSTED.clear()
    t = core.registry.add(post, connector="mail", effect=Effect.SEND, prepare=_prepare, edit_field="text")
    assert "message_id" not in t.input_schema["properties"]
    fake.reply(tool_uses=[("post", {"to": "bob@example.com", "text": "hi"})])
    fake.reply("drafted")
    await run(core, "post it")
    draft = approvals.pending(core.store)[0]
    stored = json.loads(draft.args_json)["message_id"]
    assert stored.startswith("<") and stored.endswith("@dispatch>")
    # An edit keeps the fixed value; the send uses exactly it.
    new = (await core.edit(draft.id, "console:sam", "hello")).approval
    assert json.loads(new.args_json)["message_id"] == stored
    await core.approve(new.id, "console:sam")
    assert POSTED == [{"to": "bob@example.com", "text": "hello", "message_id": stored}]


async def test_prepare_refusals_and_forged_hidden_values_reach_the_model(core, fake):
    POSTED.clear()
    core.registry.add(post, connector="mail", effect=Effect.SEND, prepare=_prepare)
    fake.reply(tool_uses=[("post", {"to": "nobody", "text": "x"}),
                          ("post", {"to": "a@b.c", "text": "x", "message_id": "<forged@x>"})])
    fake.reply("could not")
    await run(core, "post twice")
    results = fake.requests[1]["messages"][-1]["content"]
    assert results[0]["is_error"] and "'nobody' is not an address" in results[0]["content"]
    assert results[1]["is_error"] and "message_id cannot be set" in results[1]["content"]
    assert approvals.pending(core.store) == [] and POSTED == []


async def test_deliver_sends_a_file_to_the_owner_and_logs_it(core, fake, settings):
    async def hand_over(ctx: ToolContext, name: str) -> str:
        """Give the owner a file from the outbox.

        Args:
            name: File name in the outbox.
        """
        assert ctx.deliver is not None
        return await ctx.deliver(ctx.settings.outbox / name, "your report")

    core.registry.add(hand_over, connector="files", effect=Effect.WRITE)
    settings.outbox.mkdir(parents=True, exist_ok=True)
    (settings.outbox / "report.csv").write_text("a,b\n1,2\n")
    fake.reply(tool_uses=[("hand_over", {"name": "report.csv"})])
    fake.reply("sent you the report")
    await run(core, "send me the report")
    assert core.channel.files == [settings.outbox / "report.csv"]
    assert fake.requests[1]["messages"][-1]["content"][0]["content"] == "sent"
    entry = core.store.recent_actions(5, kinds=("file_sent",))[0]
    assert entry.ok and "report.csv" in entry.summary


async def test_a_failed_delivery_is_an_error_not_a_claim_of_success(core, fake, settings):
    async def broken_send_file(origin: str, path: Path, caption: str = "") -> str:
        raise ConnectionError("chat app unreachable")

    core.channel.send_file = broken_send_file

    async def hand_over(ctx: ToolContext) -> str:
        """Give the owner a file."""
        return await ctx.deliver(Path("/tmp/x.txt"), "")

    core.registry.add(hand_over, connector="files", effect=Effect.WRITE)
    fake.reply(tool_uses=[("hand_over", {})])
    fake.reply("sorry")
    await run(core, "send it")
    result = fake.requests[1]["messages"][-1]["content"][0]
    assert result["is_error"] and "Could not deliver x.txt" in result["content"]
    assert not core.store.recent_actions(5, kinds=("file_sent",))[0].ok
