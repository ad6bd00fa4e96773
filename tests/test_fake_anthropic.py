"""The fake Anthropic server must be faithful to the real SDK, or every test built on it lies."""

from __future__ import annotations

import time

import anthropic
import pytest
import pytest_asyncio
from anthropic.types import Message, TextBlock, ToolUseBlock

from tests.fakes.anthropic_api import FakeAnthropic

MODEL = "claude-sonnet-4-5"
# anthropic 2.11 warns that claude-sonnet-4-5 is deprecated; the fake does not care which model.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
LONG_SYSTEM = "You are Dispatch, a careful desktop agent. " * 60  # ~2600 chars


# `fake` (the fake Messages API, started) is in conftest.py.


_open_clients: list[anthropic.AsyncAnthropic] = []


@pytest_asyncio.fixture(autouse=True)
async def _close_clients():
    """Unclosed SDK clients leak pooled sockets (ResourceWarning) into later tests."""
    yield
    while _open_clients:
        await _open_clients.pop().close()


def client(fake: FakeAnthropic, **kw) -> anthropic.AsyncAnthropic:
    kw.setdefault("max_retries", 0)
    c = anthropic.AsyncAnthropic(api_key="test", base_url=fake.url, **kw)
    _open_clients.append(c)
    return c


async def create(c: anthropic.AsyncAnthropic, messages, **kw) -> Message:
    return await c.messages.create(model=MODEL, max_tokens=100, messages=messages, **kw)


def user(text: str, **block_kw) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text, **block_kw}]}


EPHEMERAL = {"cache_control": {"type": "ephemeral"}}


async def test_text_reply(fake):
    fake.reply("hello there")
    msg = await create(client(fake), [user("hi")])
    assert isinstance(msg, Message)
    assert msg.model == MODEL
    assert msg.stop_reason == "end_turn"
    assert isinstance(msg.content[0], TextBlock) and msg.content[0].text == "hello there"
    assert msg.usage.output_tokens >= 1
    assert fake.requests[0]["messages"][0]["content"][0]["text"] == "hi"
    assert fake.pending == 0


async def test_tool_use_reply_and_valid_follow_up(fake):
    fake.reply("let me look", tool_uses=[("screenshot", {}), ("click", {"x": 1, "y": 2})])
    fake.reply("done")
    c = client(fake)
    first = await create(c, [user("click it")])
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if isinstance(b, ToolUseBlock)]
    assert [u.name for u in uses] == ["screenshot", "click"]
    assert uses[1].input == {"x": 1, "y": 2}
    assert len({u.id for u in uses}) == 2 and all(u.id.startswith("toolu_") for u in uses)

    history = [
        user("click it"),
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "ok"} for u in uses]},
    ]
    second = await create(c, history)
    assert second.content[0].text == "done"


async def test_429_is_retried_by_the_sdk(fake):
    fake.error(429, message="slow down")
    fake.reply("after retry")
    started = time.monotonic()
    msg = await create(client(fake, max_retries=2), [user("hi")])
    assert msg.content[0].text == "after retry"
    assert len(fake.requests) == 2
    assert time.monotonic() - started < 1.0  # retry-after-ms: 1 overrides the SDK's 0.5s+ backoff


async def test_529_without_retries_is_overloaded_error(fake):
    fake.error(529, message="Overloaded")
    with pytest.raises(anthropic.OverloadedError) as info:
        await create(client(fake), [user("hi")])
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"


async def test_hang_times_out(fake):
    fake.hang(5)
    with pytest.raises(anthropic.APITimeoutError):
        await create(client(fake, timeout=0.3), [user("hi")])


async def test_empty_queue_fails_loudly_without_retrying(fake):
    with pytest.raises(anthropic.InternalServerError, match="no scripted response left"):
        await create(client(fake, max_retries=3), [user("hi")])
    assert len(fake.requests) == 1  # x-should-retry: false


async def test_respond_with_default_responder(fake):
    async def answer(body):
        last = body["messages"][-1]["content"][0]["text"]
        return {"error": 400, "message": "nope"} if last == "bad" else {"text": f"echo {last}"}

    fake.respond_with(answer)
    c = client(fake)
    assert (await create(c, [user("one")])).content[0].text == "echo one"
    with pytest.raises(anthropic.BadRequestError, match="nope"):
        await create(c, [user("bad")])


async def test_prompt_caching_write_then_read_then_extend(fake):
    c = client(fake)
    system = [{"type": "text", "text": "Rules."}, {"type": "text", "text": LONG_SYSTEM, **EPHEMERAL}]
    for _ in range(3):
        fake.reply("ok")

    first = await create(c, [user("task")], system=system)
    assert first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    assert fake.cache_entries == 1

    second = await create(c, [user("task")], system=system)
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens  # the uncached tail, "task"

    longer = [user("task"), {"role": "assistant", "content": "ok"}, user("next step please", **EPHEMERAL)]
    third = await create(c, longer, system=system)
    assert third.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert third.usage.cache_creation_input_tokens > 0
    assert third.usage.input_tokens == 0  # nothing after the last breakpoint
    assert fake.cache_entries == 2


async def test_cache_misses_when_prefix_changes_or_is_too_small(fake):
    small = FakeAnthropic(min_cache_tokens=1024)
    await small.start()
    try:
        small.reply("a")
        msg = await create(client(small), [user("short", **EPHEMERAL)])
        assert msg.usage.cache_creation_input_tokens == 0 and small.cache_entries == 0
    finally:
        await small.stop()

    c = client(fake)
    fake.reply("a")
    fake.reply("b")
    await create(c, [user("x" * 400, **EPHEMERAL)])
    changed = await create(c, [user("y" * 400, **EPHEMERAL)])
    assert changed.usage.cache_read_input_tokens == 0
    assert changed.usage.cache_creation_input_tokens > 0


async def test_lookback_window_is_20_blocks(fake):
    c = client(fake)
    base = [user("a" * 100, **EPHEMERAL)]
    fake.reply("w")
    await create(c, base)
    near = [user("a" * 100)] + [user(f"n{i}") for i in range(18)] + [user("end", **EPHEMERAL)]
    far = [user("a" * 100)] + [user(f"n{i}") for i in range(19)] + [user("end", **EPHEMERAL)]
    fake.reply("near")
    fake.reply("far")
    assert (await create(c, near)).usage.cache_read_input_tokens > 0  # hit 19 boundaries back
    assert (await create(c, far)).usage.cache_read_input_tokens == 0  # 20 back is out of reach


async def test_top_level_cache_control_marks_last_block(fake):
    fake.reply("a")
    msg = await create(client(fake), [user("z" * 200)], cache_control={"type": "ephemeral"})
    assert msg.usage.cache_creation_input_tokens > 0


async def test_five_breakpoints_rejected(fake):
    fake.reply("never")
    msgs = [user(f"m{i}", **EPHEMERAL) for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control may be provided. Found 5."):
        await create(client(fake), msgs)
    assert fake.pending == 1  # invalid requests do not consume the script
    assert len(fake.requests) == 1


async def test_tool_use_without_result_rejected(fake):
    history = [
        user("go"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "t", "input": {}}]},
        user("what happened?"),
    ]
    with pytest.raises(anthropic.BadRequestError, match="messages.1: tool_use ids were found without tool_result"):
        await create(client(fake), history)


async def test_other_invalid_threads_rejected(fake):
    c = client(fake)
    orphan = [user("go"), {"role": "assistant", "content": "hm"},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}]}]
    with pytest.raises(anthropic.BadRequestError, match="unexpected tool_use_id found in tool_result blocks"):
        await create(c, orphan)
    with pytest.raises(anthropic.BadRequestError, match="first message must use the \"user\" role"):
        await create(c, [{"role": "assistant", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError, match="at least one message"):
        await create(c, [])
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        # The SDK requires max_tokens itself, so go around messages.create to prove the fake checks it.
        await c.post("/v1/messages", cast_to=Message, body={"model": MODEL, "messages": [user("hi")]})


async def test_consecutive_same_role_messages_allowed(fake):
    fake.reply("merged")
    history = [
        user("go"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_a", "name": "t", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "ok"}]},
        user("also, hurry"),
    ]
    assert (await create(client(fake), history)).content[0].text == "merged"
