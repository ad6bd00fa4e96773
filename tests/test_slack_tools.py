"""The Slack connector (tools/slack.py) against the loopback fake Slack Web API, through
the real slack_sdk client: reading, searching, and posting exactly once behind the gate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent import approvals
from agent.channel import Inbound
from store.db import Store
from tests.conftest import close_core, make_core, make_settings, slack_values, until
from tests.fakes.slack_api import GENERAL, OWNER, RANDOM, SECRET, THREAD_TS, FakeSlack
from tools.registry import ToolContext, ToolError, ToolOutcomeUnknown
from tools.catalogue import default_registry

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
REG = default_registry()
REPLY_TS = "1714567990.000200"  # the owner's reply in Ann's kickoff thread


# `sl_fake` (the fake Slack) is in conftest.py.


@pytest.fixture
def ctx_for(tmp_path, sl_fake):
    stores: list[Store] = []

    def make(*, user_token: bool = False, configured: bool = True) -> ToolContext:
        values: dict[str, Any] = {}
        if configured:
            values = slack_values(sl_fake)
            if user_token:
                values["SLACK_USER_TOKEN"] = sl_fake.user_token
        settings = make_settings(tmp_path, "http://127.0.0.1:1", None, **values)
        stores.append(Store(settings.db_url))
        return ToolContext(settings, stores[-1])

    yield make
    for s in stores:
        s.close()


async def run_tool(ctx: ToolContext, name: str, **args: Any) -> str:
    tool = REG.get(name)
    assert tool is not None
    return await tool.call(ctx, await tool.prepared(ctx, args))


async def prepare(ctx: ToolContext, **args: Any) -> dict[str, Any]:
    return await REG.get("slack_post").prepared(ctx, args)


def posts(sl_fake: FakeSlack, channel: str = GENERAL) -> list:
    return [c for c in sl_fake.calls_to("chat.postMessage") if c.params.get("channel") == channel]


# Reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, args", [
    ("slack_channels", {}), ("slack_read", {"channel": "#general"}), ("slack_search", {"query": "budget"}),
    ("slack_post", {"channel": "#general", "text": "hi"}),
])
async def test_every_tool_says_plainly_when_slack_is_not_set_up(ctx_for, name, args):
    with pytest.raises(ToolError, match="Slack is not set up: set SLACK_BOT_TOKEN"):
        await run_tool(ctx_for(configured=False), name, **args)


async def test_channels_as_the_bot_and_as_the_owner(ctx_for):
    as_bot = await run_tool(ctx_for(), "slack_channels")
    assert "#general (C0GENERAL; public, the bot is a member, 3 members) — Company-wide" in as_bot
    assert "#random (C0RANDOM; public, 2 members)" in as_bot and "#secret" not in as_bot
    as_owner = await run_tool(ctx_for(user_token=True), "slack_channels", query="plans")
    assert as_owner == "#secret (G0SECRET; private, you are a member, 1 members) — Plans"


async def test_read_a_channel_oldest_first_and_readable(ctx_for):
    out = await run_tool(ctx_for(), "slack_read", channel="general")
    lines = out.splitlines()
    assert lines[0] == "The last 2 messages in #general (C0GENERAL), oldest first:"
    assert "Ann Lee: Kickoff notes for Q3: budget review on Friday (ts 1714567890.000100, 1 replies)" in lines[1]
    assert "Ann Lee: Lunch at 1? <3 & see the menu (https://example.com/menu)" in lines[2]


async def test_read_a_thread_by_ts_or_by_link(ctx_for):
    by_ts = await run_tool(ctx_for(), "slack_read", channel=GENERAL, thread_ts=THREAD_TS)
    link = f"https://fake.slack.com/archives/{GENERAL}/p{THREAD_TS.replace('.', '')}"
    by_link = await run_tool(ctx_for(), "slack_read", channel=link)
    assert by_ts == by_link
    assert by_ts.splitlines()[0] == f"Thread {THREAD_TS} in #general (2 messages, oldest first):"
    assert "Sam Lee: Thanks @Ann Lee, I'll bring the numbers" in by_ts


async def test_reading_where_the_bot_is_not_a_member_says_so(ctx_for):
    with pytest.raises(ToolError, match="not a member of that channel; invite it"):
        await run_tool(ctx_for(), "slack_read", channel=RANDOM)
    assert "There is no channel #nope" in str(await _error(run_tool(ctx_for(), "slack_read", channel="#nope")))


async def _error(coro: Any) -> Exception:
    try:
        await coro
    except Exception as exc:
        return exc
    raise AssertionError("no error")


async def test_search_needs_the_owners_token(ctx_for):
    with pytest.raises(ToolError, match="SLACK_USER_TOKEN"):
        await run_tool(ctx_for(), "slack_search", query="budget")
    out = await run_tool(ctx_for(user_token=True), "slack_search", query="budget")
    assert out.splitlines()[0] == "2 message(s) matching 'budget', newest first:"
    assert "#secret (G0SECRET) sam: Budget draft is in the shared folder" in out
    assert "#general (C0GENERAL) ann: Kickoff notes" in out


# Posting: the draft --------------------------------------------------------------------------------


async def test_prepare_fixes_channel_thread_and_identity_for_the_card(ctx_for):
    args = await prepare(ctx_for(), channel="general", text="I'll bring the Q3 deck.", thread_ts=REPLY_TS)
    assert (args["channel_id"], args["channel_name"], args["thread_ts"]) == (GENERAL, "general", THREAD_TS)
    assert (args["identity"], args["author"]) == ("bot", "dispatch")
    preview = REG.get("slack_post").render_preview(args)
    assert preview.splitlines() == [
        "Slack post to #general",
        "In the thread of Ann Lee's message (2024-05-01 14:51): \u201cKickoff notes for Q3: budget review on Friday\u201d",
        "As: the Dispatch bot (@dispatch)", "", "I'll bring the Q3 deck."]
    mine = await prepare(ctx_for(user_token=True), channel="<#G0SECRET|secret>", text="Plans attached.")
    assert (mine["channel_id"], mine["identity"], mine["author"], mine["thread_ts"]) == (SECRET, "owner", "sam", "")
    bot = await prepare(ctx_for(user_token=True), channel="#general", text="From the bot.", as_bot=True)
    assert bot["identity"] == "bot"


@pytest.mark.parametrize("args, message", [
    (dict(channel="#nope", text="hi"), "There is no channel #nope"),
    (dict(channel="#general", text="  "), "The post has no text."),
    (dict(channel="#general", text="x" * 40_001), "Slack takes at most 40,000"),
    (dict(channel="#general", text="hi", thread_ts="yesterday"), "is not a message ts"),
    (dict(channel="#general", text="hi", thread_ts="1714567890.999999"), "There is no message 1714567890.999999"),
    (dict(channel="#general", text="hi", channel_id="C0EVIL"), "channel_id cannot be set"),
])
async def test_prepare_refuses_what_cannot_be_posted(ctx_for, sl_fake, args, message):
    with pytest.raises(ToolError, match=message):
        await prepare(ctx_for(), **args)
    assert posts(sl_fake) == []


# Posting: the send -----------------------------------------------------------------------------------


async def test_a_post_goes_out_once_as_prepared(ctx_for, sl_fake):
    ctx = ctx_for()
    out = await run_tool(ctx, "slack_post", channel="#general", text="Hello all", thread_ts=THREAD_TS)
    assert out.startswith("Posted to #general (in the thread) as the Dispatch bot (ts ")
    [call] = posts(sl_fake)
    assert (call.params["text"], call.params["thread_ts"], call.token) == ("Hello all", THREAD_TS, sl_fake.bot_token)


async def test_a_429_is_retried_after_retry_after_and_posts_once(ctx_for, sl_fake):
    ctx = ctx_for()
    args = await prepare(ctx, channel="#general", text="Once")
    sl_fake.fail_next("chat.postMessage", status=429, retry_after=1)
    await REG.get("slack_post").call(ctx, args)
    assert [c.status for c in posts(sl_fake)] == [429, 200]
    assert posts(sl_fake)[1].at - posts(sl_fake)[0].at >= 0.9
    assert [m["text"] for m in sl_fake.messages_in(GENERAL)].count("Once") == 1


async def test_a_connection_cut_after_the_post_is_unknown_not_retried(ctx_for, sl_fake):
    ctx = ctx_for()
    args = await prepare(ctx, channel="#general", text="Maybe")
    sl_fake.drop_next("chat.postMessage")
    with pytest.raises(ToolOutcomeUnknown, match="may or may not have been posted. Look in #general"):
        await REG.get("slack_post").call(ctx, args)
    assert len(posts(sl_fake)) == 1  # never sent twice
    assert [m["text"] for m in sl_fake.messages_in(GENERAL)].count("Maybe") == 1


@pytest.mark.parametrize("failure, raised, words", [
    (dict(status=200, error="channel_not_found"), ToolError, "There is no such channel"),
    (dict(status=200, error="is_archived"), ToolError, "That channel is archived."),
    (dict(status=500), ToolOutcomeUnknown, "Slack answered 500"),
])
async def test_send_failures_say_whether_anything_went_out(ctx_for, sl_fake, failure, raised, words):
    ctx = ctx_for()
    args = await prepare(ctx, channel="#general", text="Careful")
    sl_fake.fail_next("chat.postMessage", **failure)
    with pytest.raises(raised, match=words) as exc:
        await REG.get("slack_post").call(ctx, args)
    assert raised is ToolOutcomeUnknown or type(exc.value) is ToolError
    assert len(posts(sl_fake)) == 1 and "Careful" not in [m["text"] for m in sl_fake.messages_in(GENERAL)]


async def test_an_unprepared_or_orphaned_post_is_refused(ctx_for, sl_fake):
    tool = REG.get("slack_post")
    with pytest.raises(ToolError, match="never prepared"):
        await tool.call(ctx_for(), {"channel": "#general", "text": "sneaky"})
    as_owner = await prepare(ctx_for(user_token=True), channel="#general", text="as me")
    with pytest.raises(ToolError, match="SLACK_USER_TOKEN is no longer set; nothing was posted"):
        await tool.call(ctx_for(), as_owner)
    assert posts(sl_fake) == []


# Through the gate ---------------------------------------------------------------------------------------


async def test_a_post_through_the_approval_gate_goes_out_once_with_the_edited_text(tmp_path, fake, sl_fake, sent):
    settings = make_settings(tmp_path, fake.url, None, **slack_values(sl_fake),
                             SLACK_USER_TOKEN=sl_fake.user_token, DISPATCH_SLACK_OWNERS=OWNER)
    core, channel = await make_core(settings)
    try:
        fake.reply(tool_uses=[("slack_post", {"channel": "#general", "text": "Draft one", "thread_ts": THREAD_TS})])
        fake.reply("Waiting for you.")
        await core.submit(Inbound("reply in the kickoff thread", "console:local"))
        await until(lambda: channel.cards, what="a card")
        card = channel.cards[-1]
        assert card.editable and "Slack post to #general" in card.preview and "As: you (@sam)" in card.preview
        assert posts(sl_fake) == []  # a draft, not a post
        edited = await core.edit(card.approval_id, "console:sam", "Draft two, better")
        assert edited.won and "Slack post to #general" in edited.approval.preview
        assert "Draft two, better" in edited.approval.preview
        first = await core.approve(edited.approval.id, "console:sam")
        again = await core.approve(edited.approval.id, "console:sam")
        assert first.won and not again.won
        [call] = posts(sl_fake)
        assert (call.params["text"], call.params["thread_ts"], call.token) == (
            "Draft two, better", THREAD_TS, sl_fake.user_token)
        row = approvals.get(core.store, edited.approval.id)
        assert row.state == "sent" and json.loads(row.args_json)["identity"] == "owner"
    finally:
        await close_core(core)


def test_slack_tools_are_offered_only_when_slack_is_set_up(ctx_for):
    for name in ("slack_channels", "slack_read", "slack_post"):
        tool = REG.get(name)
        assert tool.ready(ctx_for().settings) and not tool.ready(ctx_for(configured=False).settings)
    # Searching needs the owner's token: with the bot token alone it could only fail.
    search = REG.get("slack_search")
    assert not search.ready(ctx_for().settings) and not search.ready(ctx_for(configured=False).settings)
    assert search.ready(ctx_for(user_token=True).settings)


async def test_a_post_into_a_dm_names_the_person_on_the_card(ctx_for, sl_fake):
    from tests.fakes.slack_api import ANN

    dm = sl_fake.dm_of(ANN)
    args = await prepare(ctx_for(), channel=f"<#{dm}>", text="The numbers you asked for.")
    preview = REG.get("slack_post").render_preview(args)
    assert preview.splitlines()[0] == f"Slack post to a direct message to Ann Lee ({ANN})"  # not a bare D… id
