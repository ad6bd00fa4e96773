"""The fake Slack itself behaves like Slack where the tests depend on it, checked with the
plain slack_sdk clients (no Dispatch code)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.conftest import until
from tests.fakes.slack_api import GENERAL, OWNER_DM, FakeSlack, sign

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# `sl_fake` (the fake Slack, started) is in conftest.py.


def client(sl_fake: FakeSlack, token: str | None = None, **kw: Any) -> AsyncWebClient:
    return AsyncWebClient(token=token or sl_fake.bot_token, base_url=sl_fake.api_url, **kw)


async def test_tokens_are_checked_like_slack(sl_fake):
    assert (await client(sl_fake).auth_test())["user_id"] == "U0BOT"
    with pytest.raises(SlackApiError) as exc:
        await client(sl_fake, "xoxb-nope").auth_test()
    assert exc.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as exc:
        await client(sl_fake).apps_connections_open(app_token=sl_fake.bot_token)
    assert exc.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as exc:
        await client(sl_fake).search_messages(query="x")
    assert exc.value.response["error"] == "not_allowed_token_type"


async def test_a_429_carries_retry_after_and_the_sdk_waits_it_out(sl_fake):
    sl_fake.fail_next("chat.postMessage", status=429, retry_after=1)
    c = client(sl_fake, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    started = time.monotonic()
    await c.chat_postMessage(channel=GENERAL, text="hi")
    assert time.monotonic() - started >= 1.0
    assert [x.status for x in sl_fake.calls_to("chat.postMessage")] == [429, 200]


async def test_blocks_are_validated(sl_fake):
    with pytest.raises(SlackApiError) as exc:
        await client(sl_fake).chat_postMessage(channel=OWNER_DM, text="x", blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}])
    assert exc.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError):
        await client(sl_fake).chat_postMessage(channel=OWNER_DM, text="x", blocks=[{"type": "actions", "elements": [
            {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "1"}},
            {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "2"}}]}])


async def test_files_upload_v2_goes_through_all_three_steps(sl_fake):
    resp = await client(sl_fake).files_upload_v2(channel=OWNER_DM, content=b"a,b\n", filename="x.csv",
                                                 initial_comment="here")
    assert resp["file"]["name"] == "x.csv"
    assert [c.method for c in sl_fake.calls] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    upload = sl_fake.uploads[-1]
    assert (upload.channel, upload.filename, upload.content, upload.initial_comment) == (OWNER_DM, "x.csv",
                                                                                         b"a,b\n", "here")


async def test_socket_mode_hello_envelopes_acks_and_single_use_tickets(sl_fake):
    received: list[SocketModeRequest] = []

    async def listener(c: SocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        await c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    sm = SocketModeClient(app_token=sl_fake.app_token, web_client=client(sl_fake), ping_interval=0.2)
    sm.socket_mode_request_listeners.append(listener)
    try:
        await sm.connect()
        conn = await sl_fake.wait_for_connections(1)
        assert conn.sent[0]["type"] == "hello"
        envelope = sl_fake.send_dm("hi")
        await sl_fake.wait_for_ack(envelope)
        assert received[0].type == "events_api" and received[0].payload["event"]["text"] == "hi"
        await until(lambda: conn.pings >= 2, what="pings answered")
        assert sm.last_ping_pong_time is not None
        async with aiohttp.ClientSession() as session:  # the ticket was used
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(sm.wss_uri)
    finally:
        await sm.close()
    await until(lambda: not sl_fake.open_connections, what="closed")


async def test_an_unacked_event_is_redelivered_on_the_next_connection(sl_fake):
    sm = SocketModeClient(app_token=sl_fake.app_token, web_client=client(sl_fake), ping_interval=5)
    try:
        await sm.connect()
        await sl_fake.wait_for_connections(1)
        envelope = sl_fake.send_dm("hi")
        await until(lambda: any(e.get("envelope_id") == envelope for e in sl_fake.conns[0].sent))
        await sm.connect_to_new_endpoint(force=True)  # the first connection goes, unacked
        second = await sl_fake.wait_for_connections(2)
        await until(lambda: any(e.get("retry_attempt") == 1 for e in second.sent), what="redelivery")
    finally:
        await sm.close()


def test_sign_matches_slack_sdks_verifier():
    body, ts = b'{"type":"event_callback"}', int(time.time())
    headers = sign(body, "s3cret", ts)
    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not SignatureVerifier("other").is_valid(body, str(ts), headers["X-Slack-Signature"])


async def test_silence_stops_pongs_and_deliveries(sl_fake):
    sm = SocketModeClient(app_token=sl_fake.app_token, web_client=client(sl_fake), ping_interval=30)
    try:
        await sm.connect()
        conn = await sl_fake.wait_for_connections(1)
        sl_fake.go_silent()
        before = sm.last_ping_pong_time
        await sm.current_session.ping(b"sdk-ping-pong:1")
        envelope = sl_fake.send_dm("anyone?")
        await asyncio.sleep(0.3)
        assert sm.last_ping_pong_time == before and all(e.get("envelope_id") != envelope for e in conn.sent)
        sl_fake.resume()
        await until(lambda: any(e.get("envelope_id") == envelope for e in conn.sent), what="delivered after")
    finally:
        await sm.close()
