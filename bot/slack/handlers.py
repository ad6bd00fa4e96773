"""Slack listeners: the guard, messages and commands (buttons and the edit form: bot.slack.cards).

Small module-level functions, as in bolt's examples; bot.slack.app builds the AsyncApp
from them. The core and the front end reach them through bolt's context: the
first middleware puts `front` (a bot.slack.SlackFrontEnd, with `.core`) there.

Acking. Slack wants an answer within 3 s or it redelivers. Events are acked by
bolt before their listener runs; button listeners call `ack()` first; the guard
answers at once and does its slow part (the refusal reply) in the background.
Everything slow — the task, a send after Approve — happens after the ack. A
redelivered event (after a reconnect, or a slow ack) is dropped by its event_id.

Who. A global middleware — the guard — runs before every listener: only DMs
from an owner's Slack user id (paired with `pair CODE`, or listed in
DISPATCH_SLACK_OWNERS) and that owner's button presses go on; the app's own
messages, edits, deletions and other bots are dropped silently; anyone else gets
one polite refusal (a press: "not for you", each time, only they see it), and
every refusal is logged. Pairing is DM text, not a slash command: slash
commands need extra app configuration (and a request URL in HTTP mode), and
Slack's client eats any message that starts with "/" — so `pair CODE` (and
`/pair CODE`, if it gets through) both work.

Commands are whole DM messages: `status`, `pending`, `cancel`, `log`, `usage`,
`settings`, `help` (a longer message that starts with one of these words is a
task: "cancel my 3pm" goes to the agent).

Decisions. Approve runs the core's approve (the core redraws every copy of the
card, on every app). Reject rejects at once and asks in the card's thread what
to change; a reply there is the reason, and the agent revises. Edit opens a form
(`views_open`) that starts from the current text; when Slack won't open it (the
3 s trigger expired, or the text is longer than a form holds) it asks for the
new text as a thread reply instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError

from agent.api import Who
from bot.inbox import download_with_retry, inbox_path
from bot.slack.cards import PLATFORM, policy_blocks
from bot.slack.format import code_text, escape, plain_text


log = logging.getLogger("dispatch.slack")
# `SlackFrontEnd` (bot.slack.app) is named in annotations only: importing it here would make
# the app and its listeners import each other.

MAX_DOWNLOAD = 100 * 1024 * 1024  # larger documents are refused by the file tools anyway
COMMANDS = [
    ("status", "what is running, queued, waiting for approval"),
    ("pending", "drafts waiting for your approval"),
    ("cancel", "stop the running task"),
    ("log", "recent actions: tools, files sent, sends, refusals"),
    ("usage", "tokens and cost"),
    ("settings", "policies: what runs, what asks, what is off"),
    ("help", "this message"),
]
HELP = (
    "*Dispatch* works on your desktop while you're away.\n\n"
    "Send a task in plain words — “find last week's campaign numbers and send me a summary”. "
    "Files you send here are saved on the desktop and handed to the task.\n\n"
    "Anything that would leave the desktop (an email, a Slack post) comes back as a draft with "
    "*Approve* / *Reject* / *Edit* buttons; nothing is sent unless you approve.\n\n"
    "Commands (send the word alone):\n" + "\n".join(f"• `{c}` — {d}" for c, d in COMMANDS)
    + "\n• `pair CODE` — pair this account (the code comes from `dispatch pair`)"
)
_PAIR = re.compile(r"\s*/?pair\b[:\s]*(.*)", re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"[A-Za-z0-9]{4}-?[A-Za-z0-9]{4}")
_KEPT_SUBTYPES = {None, "file_share", "thread_broadcast"}  # edits, deletions, joins, bots: dropped


# The guard ---------------------------------------------------------------------------


def _done() -> BoltResponse:
    """"Handled, nothing more": acks the envelope (Socket Mode) or answers 200 (HTTP)."""
    return BoltResponse(status=200, body="")


async def guard(body: dict[str, Any], context: Any, next: Callable[[], Awaitable[Any]]) -> Any:
    """Owner only, DMs only; before every listener. Returns at once (Slack's 3 s)."""
    front: SlackFrontEnd = context["front"]
    core = front.core
    kind = body.get("type")
    event: dict[str, Any] = body.get("event") or {}
    if kind == "event_callback":
        if not _owner_dm_message(event, context.get("bot_user_id") or front.bot_user_id):
            return _done()  # our own messages, edits, bots, channels: not a word, not a log line
        if front.seen(str(body.get("event_id") or event.get("client_msg_id") or "")):
            return _done()  # Slack redelivered an event we already have
        user, channel, what = str(event.get("user")), str(event.get("channel")), "message"
    elif kind in ("block_actions", "view_submission"):
        user = str((body.get("user") or {}).get("id", ""))
        channel = str((body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id") or "")
        what = "button press" if kind == "block_actions" else "form"
        press = (body.get("actions") or [{}])[0]
        if kind == "block_actions" and front.seen(f"press:{user}:{press.get('action_id')}:{press.get('action_ts')}"):
            return _done()  # the same press again (a replayed signed request, a redelivery): once only
    else:
        return _done()  # view_closed, shortcuts, slash commands: Dispatch uses none of them
    pairing = kind == "event_callback" and pair_code(event) is not None  # the same parse on_message routes by
    who = core.api.identify(PLATFORM, user, pairing=pairing, what=what,
                            team=str(body.get("team_id") or (body.get("team") or {}).get("id") or ""))
    if who.who != Who.STRANGER:
        return await next()  # the owner; or a stranger's `pair CODE`, which on_message hands to pairing alone
    if who.reply and kind == "block_actions" and channel:
        front.spawn(front.client.chat_postEphemeral(channel=channel, user=user, text=who.reply))
    elif who.reply and kind == "event_callback":
        front.spawn(front.channel.post(channel, who.reply))
    return _done()


def pair_code(event: dict[str, Any]) -> str | None:
    """The code of a `pair CODE` message (`/pair` too: Slack's client may let it through),
    or None when the message is not a pairing command. "pair programming tips" from the
    owner is a task; from a stranger it is a (wrong) pairing attempt and goes no further."""
    m = _PAIR.fullmatch(plain_text(str(event.get("text") or "")).strip())
    return m.group(1).strip() if m else None


def _owner_dm_message(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """A message a person typed in a DM with the app (not ours, not a bot's, not an edit)."""
    return (event.get("type") == "message" and event.get("channel_type") == "im"
            and event.get("subtype") in _KEPT_SUBTYPES and not event.get("bot_id")
            and bool(event.get("user")) and event.get("user") != bot_user_id)


# Messages ------------------------------------------------------------------------------


async def on_message(event: dict[str, Any], context: Any) -> None:
    front: SlackFrontEnd = context["front"]
    api = front.core.api
    channel, user = str(event["channel"]), str(event["user"])
    text = plain_text(str(event.get("text") or "")).strip()
    code = pair_code(event)
    if code is not None and (not api.is_owner(PLATFORM, user) or not code or _CODE.fullmatch(code)):
        reply = api.pair(PLATFORM, user, await display_name(front, user), code, how="`pair CODE`")
        if reply.ok:
            front.channel.owner_dm = channel
        if reply.text:
            await front.channel.post(channel, escape(reply.text))
        return
    if not api.is_owner(PLATFORM, user):
        return  # the guard let a pairing attempt through; anything else from a stranger stops here
    front.channel.owner_dm = channel  # where the owner is reachable (Channel.default_origin)
    thread = event.get("thread_ts")
    if thread and thread != event.get("ts"):
        reply = await api.reply(PLATFORM, {"channel": channel, "ts": str(thread)}, f"{PLATFORM}:{user}", text,
                                f"{PLATFORM}:{channel}")
        if reply is not None:
            if reply.text:
                await front.channel.post(channel, escape(reply.text), thread_ts=str(thread))
            return
    word = text.lower().lstrip("/!").rstrip(".!?")
    command = COMMAND_HANDLERS.get(word)
    if command is not None and not event.get("files"):
        await command(front, channel)
        return
    files = await download_files(front, event) if event.get("files") else []
    text = plain_text(str(event.get("text") or "")).strip()  # a voice clip's words were added to it
    if (event.get("files") and not files and not text) or not (text or files):
        return  # nothing could be saved (the owner was told why), or nothing was said
    if not text:
        text = "I sent you " + ("a file: " if len(files) == 1 else "files: ") + ", ".join(Path(f).name for f in files)
    await api.submit(text, f"{PLATFORM}:{channel}", files)


# Commands -------------------------------------------------------------------------------


async def cmd_help(front: SlackFrontEnd, channel: str) -> None:
    await front.channel.post(channel, HELP)


async def cmd_status(front: SlackFrontEnd, channel: str) -> None:
    await front.channel.post(channel, escape(front.core.api.status()))


async def cmd_cancel(front: SlackFrontEnd, channel: str) -> None:
    await front.channel.post(channel, escape(await front.core.api.cancel()))


async def cmd_pending(front: SlackFrontEnd, channel: str) -> None:
    """The list, and fresh cards for the newest few so their buttons are at hand."""
    await front.channel.post(channel, escape(front.core.api.pending_text()))
    await front.core.api.reshow(f"{PLATFORM}:{channel}")


async def cmd_log(front: SlackFrontEnd, channel: str) -> None:
    await front.channel.post(channel, f"```{code_text(front.core.api.log(25)[-3800:])}```")


async def cmd_usage(front: SlackFrontEnd, channel: str) -> None:
    await front.channel.post(channel, escape(front.core.api.usage()))


async def cmd_settings(front: SlackFrontEnd, channel: str) -> None:
    await front.channel.post(channel, "Policies: tap Switch to change a connector", blocks=policy_blocks(front.core.api))


COMMAND_HANDLERS: dict[str, Callable[[Any, str], Awaitable[None]]] = {
    "help": cmd_help, "start": cmd_help, "status": cmd_status, "cancel": cmd_cancel, "pending": cmd_pending,
    "log": cmd_log, "usage": cmd_usage, "settings": cmd_settings,
}


async def on_error(error: Exception, body: dict[str, Any], context: Any) -> None:
    """One error handler: log it; tell the owner briefly when it was their DM."""
    log.error("error while handling a Slack request", exc_info=error)
    event = body.get("event") or {}
    front = context.get("front")
    if front is not None and event.get("channel_type") == "im" and event.get("channel"):
        front.spawn(front.channel.post(str(event["channel"]), "Something went wrong handling that; it is in the log."))


# Helpers -------------------------------------------------------------------------------------


async def display_name(front: SlackFrontEnd, user: str) -> str:
    try:
        info = (await front.client.users_info(user=user))["user"]
        return str(info.get("real_name") or info.get("name") or user)
    except (SlackApiError, KeyError, TypeError):
        return user

async def download_files(front: SlackFrontEnd, event: dict[str, Any]) -> list[str]:
    """Files the owner sent, saved to the inbox; each problem told in one line."""
    saved, inbox = [], front.core.settings.home / "inbox"
    channel = str(event["channel"])
    for f in event.get("files") or []:
        name = str(f.get("name") or f.get("title") or f"file-{f.get('id', '')}")
        size = int(f.get("size") or 0)
        url = str(f.get("url_private_download") or f.get("url_private") or "")
        if size > MAX_DOWNLOAD:
            await front.channel.post(channel, escape(
                f"{name} is {size / 1024 / 1024:.0f} MB; Dispatch takes files up to 100 MB from Slack. "
                "Put it in a folder Dispatch can read (DISPATCH_ROOTS) and tell me where it is."))
            continue
        if not url or f.get("mode") in ("tombstone", "hidden_by_limit") or not _slack_host(front, url):
            await front.channel.post(channel, escape(f"I can't download {name} from Slack."))
            continue
        path = inbox_path(inbox, name)
        problem = await download_with_retry(lambda target, u=url: _download(front, u, target), path, name,
                                            where="Slack")
        if problem:
            await front.channel.post(channel, escape(problem))
            continue
        front.core.api.received(path, "Slack")
        if str(f.get("mimetype") or "").startswith(("audio/", "video/")) or f.get("subtype") == "slack_audio":
            heard = await front.core.api.hear(path)  # a voice clip: what was said is the request
            await front.channel.post(channel, escape(f"\U0001f3a4 Heard: {heard.text}" if heard.ok else heard.text))
            if not heard.ok:
                continue
            event["text"] = ((event.get("text") or "") + "\n" + heard.text).strip()
            continue
        saved.append(str(path))
    return saved

def _slack_host(front: SlackFrontEnd, url: str) -> bool:
    """The bot token goes only to Slack (or to the API server Dispatch is pointed at)."""
    host = (urlparse(url).hostname or "").lower()
    api = (urlparse(front.core.settings.slack_api_url).hostname or "").lower()
    return host == api or host == "slack.com" or host.endswith(".slack.com")

async def _download(front: SlackFrontEnd, url: str, path: Path) -> None:
    headers = {"Authorization": f"Bearer {front.core.settings.slack_token}"}
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, headers=headers) as resp:
        if resp.status >= 500 or resp.status == 429:
            resp.raise_for_status()  # a ClientResponseError, which download_with_retry tries again
        if resp.status != 200 or resp.content_type == "text/html":  # Slack's login page: no files:read
            raise ValueError(f"Slack answered {resp.status}; does the app have the files:read scope?")
        written = 0
        with open(path, "wb") as fh:
            async for chunk in resp.content.iter_chunked(1 << 16):
                written += len(chunk)
                if written > MAX_DOWNLOAD:
                    raise ValueError("it is over 100 MB")
                fh.write(chunk)
