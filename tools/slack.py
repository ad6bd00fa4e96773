"""Slack connector: list channels, read a channel or a thread, search, post.

Reading is automatic (effect `read`); posting is a `send`, so by default it becomes
a draft the owner approves on a card. Which token does what:

- Reading (channels, history, threads) uses SLACK_USER_TOKEN when it is set, so the
  agent sees what the owner sees; otherwise the bot token (the bot reads the
  channels it was invited to).
- Searching needs SLACK_USER_TOKEN: Slack lets only user tokens search.
- Posting is as the owner when SLACK_USER_TOKEN is set (unless the model asks to
  post as the bot), otherwise as the Dispatch bot. The identity is fixed when the
  draft is made and shown on the card; if the token is gone by the time the owner
  approves, nothing is posted.

`prepare` runs when the draft is made: it resolves the channel ("#general",
"general", an id, or a message link) to its id and name, and a thread to its root
message, with who wrote it and how it starts, so the card reads "#general, in
reply to Ann's 'Kickoff notes…'" and approving posts exactly there.

Exactly once. The post goes out through a client without slack_sdk's
connection-error retry (a reset after Slack took the post would post it twice);
only a 429 is retried, after Retry-After, because Slack did not take that one.
A refusal from Slack or a connection that could not be made means nothing was
posted (the draft ends `failed`); a connection that broke or timed out after the
request went out, or a 5xx, means it may have been posted (`unknown`: the owner
is asked to look before posting again). Content read from Slack is untrusted: it
can ask for anything, and the gate still stands between it and every post.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from store.config import Settings
from tools.registry import (
    Effect,
    Hidden,
    ToolContext,
    ToolError,
    ToolOutcomeUnknown,
    tool,
)

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

# slack_sdk and aiohttp are imported where they are used: a Dispatch without Slack never
# loads them (about 13 MB and 0.1 s at start).

CONNECTOR = "slack"
MAX_POST = 40_000  # Slack cuts a message's text there
MAX_LIST_PAGES = 50
MESSAGE_CHARS = 1500
NOT_SET_UP = ("Slack is not set up: set SLACK_BOT_TOKEN (and SLACK_APP_TOKEN) as the README section "
              "\u201cSlack\u201d describes.")
_PERMALINK = re.compile(r"https?://[^/\s]+/archives/([CGD][A-Z0-9]+)/p(\d{10})(\d{6})")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
_TS = re.compile(r"\d{9,11}\.\d{1,6}")
_ERRORS = {
    "channel_not_found": "There is no such channel, or Dispatch can't see it.",
    "not_in_channel": "The Dispatch bot is not a member of that channel; invite it there (/invite @Dispatch).",
    "is_archived": "That channel is archived.",
    "thread_not_found": "There is no such thread in that channel.",
    "msg_too_long": "The message is too long for Slack; split it.",
    "restricted_action": "The workspace does not allow that post.",
    "ratelimited": "Slack is rate-limiting Dispatch; try again in a minute.",
    "invalid_auth": "Slack refused the token; check the Slack tokens in .env.",
    "not_authed": "Slack refused the token; check the Slack tokens in .env.",
    "token_revoked": "The Slack token was revoked; install the app again and update .env.",
    "account_inactive": "The Slack token belongs to a deactivated account or app.",
}


def ready(settings: Settings) -> bool:
    """Offered to the model only when Slack is set up (see tools.registry.add_module)."""
    return bool(settings.slack_token)


def can_search(settings: Settings) -> bool:
    """Slack lets only user tokens search: without SLACK_USER_TOKEN slack_search could
    only fail, so it is not offered (reading and posting work with the bot token)."""
    return bool(settings.slack_user)


# Clients and errors ----------------------------------------------------------------------


def _token(settings: Settings, who: str) -> str:
    if not settings.slack_token:
        raise ToolError(NOT_SET_UP)
    if who == "owner":
        if not settings.slack_user:
            raise ToolError("That needs SLACK_USER_TOKEN (Slack lets only user tokens search, and posting as the "
                            "owner needs the owner's token); see the README section \u201cSlack\u201d.")
        return settings.slack_user
    if who == "reader":
        return settings.slack_user or settings.slack_token
    return settings.slack_token


def _client(settings: Settings, who: str, *, sending: bool = False) -> AsyncWebClient:
    """A Web API client; for a send, retrying only what Slack surely did not take (429)."""
    from slack_sdk.http_retry.builtin_async_handlers import (
        AsyncConnectionErrorRetryHandler, AsyncRateLimitErrorRetryHandler,
    )
    from slack_sdk.web.async_client import AsyncWebClient

    handlers: list[Any] = [AsyncRateLimitErrorRetryHandler(max_retry_count=3)]
    if not sending:
        handlers.append(AsyncConnectionErrorRetryHandler(max_retry_count=2))
    return AsyncWebClient(token=_token(settings, who), base_url=settings.slack_api_url, timeout=30,
                          retry_handlers=handlers)


def _failed(exc: Exception, what: str) -> ToolError:
    """A readable ToolError for a failed read (or a failed draft-time check)."""
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        if error == "missing_scope":
            needed = exc.response.get("needed") or "another"
            return ToolError(f"Slack says the app lacks the {needed} scope for {what}; add it (see "
                             "slack-app-manifest.yaml) and reinstall the app.")
        return ToolError(_ERRORS.get(error, f"Slack answered {error} to {what}."))
    return ToolError(f"Could not reach Slack for {what} ({type(exc).__name__}); try again later.")


async def _api(call: Any, what: str, **kwargs: Any) -> Any:
    import aiohttp
    from slack_sdk.errors import SlackApiError

    try:
        return await call(**kwargs)
    except (TimeoutError, SlackApiError, aiohttp.ClientError) as exc:
        raise _failed(exc, what) from None


# Channels, names, text -------------------------------------------------------------------


async def _all_channels(client: AsyncWebClient) -> list[dict[str, Any]]:
    out, cursor = [], None
    for _ in range(MAX_LIST_PAGES):
        resp = await _api(client.conversations_list, "listing channels", types="public_channel,private_channel",
                          exclude_archived=True, limit=200, cursor=cursor)
        out.extend(resp.get("channels") or [])
        cursor = (resp.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    return out


async def resolve_channel(client: AsyncWebClient, ref: str) -> dict[str, Any]:
    """A channel from "#general", "general", "C0123ABCD", "<#C0123ABCD|general>" or a message link."""
    ref = ref.strip()
    link = _PERMALINK.search(ref)
    mention = re.fullmatch(r"<#([CGD][A-Z0-9]+)(?:\|[^>]*)?>", ref)
    cid = link.group(1) if link else mention.group(1) if mention else ref if _CHANNEL_ID.fullmatch(ref) else ""
    if cid:
        return (await _api(client.conversations_info, f"looking up channel {cid}", channel=cid))["channel"]
    name = ref.lstrip("#").lower()
    if not name:
        raise ToolError("Say which channel, e.g. #general.")
    for ch in await _all_channels(client):
        if str(ch.get("name", "")).lower() == name:
            return ch
    raise ToolError(f"There is no channel #{name} that Dispatch can see. slack_channels lists them.")


class _Names:
    """User ids -> names, looked up once per tool call."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.cache: dict[str, str] = {}

    async def of(self, user: str) -> str:
        import aiohttp
        from slack_sdk.errors import SlackApiError

        if user not in self.cache:
            try:
                info = (await self.client.users_info(user=user))["user"]
                self.cache[user] = str(info.get("real_name") or info.get("name") or user)
            except (TimeoutError, SlackApiError, aiohttp.ClientError, KeyError, TypeError):
                self.cache[user] = user
        return self.cache[user]

    async def author(self, msg: dict[str, Any]) -> str:
        if msg.get("user"):
            return await self.of(str(msg["user"]))
        profile = msg.get("bot_profile") or {}
        return str(msg.get("username") or profile.get("name") or "a bot")

    async def readable(self, text: str) -> str:
        """Slack's wire text for reading: mentions as names, links and escapes undone."""
        for user in set(re.findall(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>", text)):
            text = re.sub(rf"<@{user}(?:\|[^>]*)?>", f"@{await self.of(user)}", text)
        text = re.sub(r"<#[CGD][A-Z0-9]+\|([^>]+)>", r"#\1", text)
        text = re.sub(r"<!(here|channel|everyone)(?:\|[^>]*)?>", r"@\1", text)
        text = re.sub(r"<(?:mailto:)?([^|<>]+)\|([^<>]+)>", lambda m: m.group(2) if m.group(2) in m.group(1)
                      else f"{m.group(2)} ({m.group(1)})", text)
        text = re.sub(r"<([^<>|]+)>", r"\1", text)
        return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _when(ts: str, settings: Settings) -> str:
    try:
        return datetime.fromtimestamp(float(ts), UTC).astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError):
        return ts


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split()) if n < 200 else text
    return text if len(text) <= n else text[: n - 1] + "…"


async def _format(msgs: list[dict[str, Any]], names: _Names, settings: Settings) -> list[str]:
    lines = []
    for m in msgs:
        text = await names.readable(str(m.get("text") or ""))
        files = ", ".join(str(f.get("name") or "file") for f in m.get("files") or [])
        extra = f" [files: {files}]" if files else ""
        replies = f", {m['reply_count']} replies" if m.get("reply_count") else ""
        lines.append(f"[{_when(str(m.get('ts', '')), settings)}] {await names.author(m)}: "
                     f"{_clip(text, MESSAGE_CHARS)}{extra} (ts {m.get('ts')}{replies})")
    return lines


# Reading ---------------------------------------------------------------------------------


@tool(connector=CONNECTOR, effect=Effect.READ, untrusted=True)
async def slack_channels(ctx: ToolContext, query: str = "", limit: int = 100) -> str:
    """List the Slack channels Dispatch can see, with their ids, member counts and topics.

    Args:
        query: Only channels whose name, topic or purpose contains this (case-insensitive).
        limit: At most this many channels.
    """
    settings = ctx.settings
    channels = await _all_channels(_client(settings, "reader"))
    member = "you are" if settings.slack_user else "the bot is"
    q = query.strip().lower().lstrip("#")
    lines = []
    for ch in sorted(channels, key=lambda c: str(c.get("name", ""))):
        topic = str((ch.get("topic") or {}).get("value") or (ch.get("purpose") or {}).get("value") or "")
        if q and q not in str(ch.get("name", "")).lower() and q not in topic.lower():
            continue
        flags = ["private" if ch.get("is_private") else "public"]
        if ch.get("is_member"):
            flags.append(f"{member} a member")
        count = f", {ch['num_members']} members" if ch.get("num_members") is not None else ""
        lines.append(f"#{ch.get('name')} ({ch.get('id')}; {', '.join(flags)}{count})"
                     + (f" — {_clip(topic, 120)}" if topic else ""))
    if not lines:
        return "No channel matches." if q else "Dispatch can't see any channel."
    more = f"\n(and {len(lines) - limit} more; narrow it with query)" if len(lines) > limit else ""
    return "\n".join(lines[: max(1, limit)]) + more


@tool(connector=CONNECTOR, effect=Effect.READ, untrusted=True)
async def slack_read(ctx: ToolContext, channel: str, thread_ts: str = "", limit: int = 30) -> str:
    """Read the recent messages of a Slack channel, or one thread (oldest first). Each
    line ends with the message's ts, which names its thread for slack_read and slack_post.

    Args:
        channel: The channel: "#general", its id, or a link to a message in it.
        thread_ts: Read this thread (the ts of its first message, or a link) instead of the channel.
        limit: At most this many messages (1-200).
    """
    settings = ctx.settings
    client = _client(settings, "reader")
    ch = await resolve_channel(client, channel)
    link = _PERMALINK.search(thread_ts or "") or (_PERMALINK.search(channel) if not thread_ts else None)
    thread = f"{link.group(2)}.{link.group(3)}" if link else thread_ts.strip()
    if thread and not _TS.fullmatch(thread):
        raise ToolError(f"{thread!r} is not a message ts (like 1714567890.123456) or a message link.")
    limit = min(max(limit, 1), 200)
    names = _Names(client)
    if thread:
        resp = await _api(client.conversations_replies, "reading the thread", channel=ch["id"], ts=thread,
                          limit=limit)
        msgs = list(resp.get("messages") or [])[:limit]
        head = f"Thread {thread} in #{ch.get('name')} ({len(msgs)} messages, oldest first):"
    else:
        resp = await _api(client.conversations_history, f"reading #{ch.get('name')}", channel=ch["id"], limit=limit)
        msgs = list(reversed(resp.get("messages") or []))
        head = f"The last {len(msgs)} messages in #{ch.get('name')} ({ch['id']}), oldest first:"
    if not msgs:
        return f"#{ch.get('name')} has no messages Dispatch can read."
    return "\n".join([head, *await _format(msgs, names, settings)])


@tool(connector=CONNECTOR, effect=Effect.READ, ready=can_search, untrusted=True)
async def slack_search(ctx: ToolContext, query: str, limit: int = 20) -> str:
    """Search Slack messages the owner can see (Slack's search syntax: from:@ann, in:#general,
    before:2024-05-01, "exact phrase"). Needs SLACK_USER_TOKEN.

    Args:
        query: What to search for.
        limit: At most this many messages (1-100).
    """
    settings = ctx.settings
    client = _client(settings, "owner")
    resp = await _api(client.search_messages, "searching", query=query, count=min(max(limit, 1), 100),
                      sort="timestamp", sort_dir="desc")
    matches = (resp.get("messages") or {}).get("matches") or []
    if not matches:
        return f"No Slack message matches {query!r}."
    names = _Names(client)
    lines = [f"{len(matches)} message(s) matching {query!r}, newest first:"]
    for m in matches:
        ch = m.get("channel") or {}
        where = f"#{ch.get('name')}" if ch.get("name") and not ch.get("is_im") else "a direct message"
        text = await names.readable(str(m.get("text") or ""))
        who = m.get("username") or (await names.of(str(m["user"])) if m.get("user") else "someone")
        lines.append(f"[{_when(str(m.get('ts', '')), settings)}] {where} ({ch.get('id')}) {who}: "
                     f"{_clip(text, 600)} (ts {m.get('ts')})")
    return "\n".join(lines)


# Posting -----------------------------------------------------------------------------------


def _post_preview(args: dict[str, Any]) -> str:
    lines = [f"Slack post to {args.get('destination') or '#' + str(args.get('channel_name') or args.get('channel'))}"]
    if args.get("thread_ts"):
        lines.append(f"In the thread of {args.get('parent') or args['thread_ts']}")
    who = "you" if args.get("identity") == "owner" else "the Dispatch bot"
    lines.append(f"As: {who}" + (f" (@{args['author']})" if args.get("author") else ""))
    return "\n".join(lines) + "\n\n" + str(args.get("text", ""))


async def _prepare_post(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    """Fix where, in which thread, and as whom, while the owner can still see it on the card."""
    settings = ctx.settings
    text = str(args.get("text") or "")
    if not text.strip():
        raise ToolError("The post has no text.")
    if len(text) > MAX_POST:
        raise ToolError(f"The post is {len(text):,} characters; Slack takes at most {MAX_POST:,}. Split it.")
    identity = "owner" if settings.slack_user and not args.get("as_bot") else "bot"
    client = _client(settings, identity)
    ch = await resolve_channel(client, str(args["channel"]))
    name = str(ch.get("name") or ch["id"])
    if ch.get("is_archived"):
        raise ToolError(f"#{name} is archived; nothing can be posted there.")
    if identity == "bot" and ch.get("is_private") and not ch.get("is_member"):
        raise ToolError(f"The Dispatch bot is not in the private channel #{name}; invite it (/invite @Dispatch)"
                        + ("" if settings.slack_user else " or set SLACK_USER_TOKEN to post as the owner") + ".")
    link = _PERMALINK.search(str(args.get("thread_ts") or "")) or _PERMALINK.search(str(args["channel"]))
    thread = f"{link.group(2)}.{link.group(3)}" if link else str(args.get("thread_ts") or "").strip()
    parent = ""
    if thread:
        if not _TS.fullmatch(thread):
            raise ToolError(f"{thread!r} is not a message ts (like 1714567890.123456) or a message link.")
        first = await _message(client, ch["id"], thread, name)
        root = str(first.get("thread_ts") or first.get("ts"))
        if root != thread:  # a reply inside a thread: post in that same thread, under its first message
            thread, first = root, await _message(client, ch["id"], root, name)
        names = _Names(client)
        said = _clip(await names.readable(str(first.get("text") or "")), 100)
        parent = f"{await names.author(first)}'s message ({_when(thread, settings)}): \u201c{said}\u201d"
    me = await _api(client.auth_test, "checking the Slack token")
    # Who receives it, by name: a DM's "channel" is only an id (D0…) that says nothing on a card.
    destination = f"#{name}"
    if ch.get("is_im") and ch.get("user"):
        destination = f"a direct message to {await _Names(client).of(str(ch['user']))} ({ch['user']})"
    elif ch.get("is_mpim"):
        destination = f"a group direct message ({name})"
    return {**args, "thread_ts": thread, "channel_id": ch["id"], "channel_name": name, "destination": destination,
            "parent": parent, "identity": identity, "author": str(me.get("user") or "")}


async def _message(client: AsyncWebClient, channel: str, ts: str, name: str) -> dict[str, Any]:
    try:
        resp = await _api(client.conversations_replies, "finding the thread", channel=channel, ts=ts, limit=1)
    except ToolError as exc:
        if "no such thread" not in str(exc):
            raise
        resp = {}
    first = (resp.get("messages") or [None])[0]
    if not first:
        raise ToolError(f"There is no message {ts} in #{name} to reply to.")
    return first


_Str = Annotated[str, Hidden]


@tool(connector=CONNECTOR, effect=Effect.SEND, preview=_post_preview, edit_field="text", prepare=_prepare_post)
async def slack_post(
    ctx: ToolContext, channel: str, text: str, thread_ts: str = "", as_bot: bool = False,
    channel_id: _Str = "", channel_name: _Str = "", parent: _Str = "", identity: _Str = "", author: _Str = "",
    destination: _Str = "",
) -> str:
    """Post a message to a Slack channel, or reply in a thread. It goes out as the owner
    when Slack is set up with the owner's token (otherwise as the Dispatch bot). By default
    it becomes a draft that the owner approves before anything is posted.

    Write Slack's formatting: *bold*, _italic_, `code`, <https://example.com|a link>,
    mentions as <@U012AB3CD> (ids from slack_read).

    Args:
        channel: The channel: "#general", its id, or a link to a message in it.
        text: The message.
        thread_ts: Reply in this thread: the ts of a message in it (from slack_read or slack_search), or a link.
        as_bot: Post as the Dispatch bot even when the owner's token is set.
    """
    settings = ctx.settings
    if not channel_id or identity not in ("owner", "bot"):
        raise ToolError("This post was never prepared as a draft, so it was not posted.")
    if identity == "owner" and not settings.slack_user:
        raise ToolError("This draft was to be posted as the owner, but SLACK_USER_TOKEN is no longer set; "
                        "nothing was posted. Ask for a new draft.")
    import aiohttp
    from slack_sdk.errors import SlackApiError

    client = _client(settings, identity, sending=True)
    where = f"#{channel_name or channel_id}" + (" (in the thread)" if thread_ts else "")
    try:
        resp = await client.chat_postMessage(channel=channel_id, text=text, thread_ts=thread_ts or None)
    except SlackApiError as exc:
        status = exc.response.status_code
        if status >= 500:
            raise ToolOutcomeUnknown(f"Slack answered {status} while posting to {where}; it may or may not have "
                                     f"been posted. Look in {where} before posting again.") from None
        raise _failed(exc, f"posting to {where}") from None
    except aiohttp.ClientConnectorError as exc:  # no connection was made: nothing went out
        raise ToolError(f"Could not reach Slack ({type(exc).__name__}); nothing was posted.") from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ToolOutcomeUnknown(f"The connection to Slack broke while posting to {where} ({type(exc).__name__}); "
                                 f"it may or may not have been posted. Look in {where} before posting again.") from None
    who = "as the owner" if identity == "owner" else "as the Dispatch bot"
    return f"Posted to {where} {who} (ts {resp.get('ts')})."
